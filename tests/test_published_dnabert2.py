"""DNABERT-2 as published, loaded natively (no remote code) and checked against the authors' code.

The fixture ``tests/data/published/dnabert2/`` is a tiny random checkpoint written by the
authors' ``BertForMaskedLM.save_pretrained`` (transformers 4.28) and
``dnabert2.reference.npz`` holds what their code computed on it; see
``tests/data/published/dnabert2.md`` and ``build/dnabert2.py``. The directory is read only through
:mod:`dnalm.models.directory` (the one reader of model directories), which calls this family's
converters.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dnalm.errors import ConfigError, DnalmError, InputFormatError
from dnalm.models.directory import (
    inspect_model_dir,
    load_classifier_model,
    load_masked_lm,
    model_config,
    read_weights,
)
from dnalm.models.dnabert2 import (
    DnaBert2Config,
    DnaBert2ForMaskedLM,
    DnaBert2ForSequenceClassification,
    alibi_slopes,
    convert_published_config,
    convert_published_state_dict,
)

FIXTURE = Path(__file__).parent / "data" / "published" / "dnabert2"
REFERENCE = FIXTURE.parent / "dnabert2.reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def mlm() -> DnaBert2ForMaskedLM:
    model = load_masked_lm(FIXTURE)
    assert isinstance(model, DnaBert2ForMaskedLM)
    assert not model.training and model.dtype == torch.float32
    return model


def _classifier(path: Path = FIXTURE, num_labels: int = 2,
                problem_type: str = "single_label_classification"
                ) -> tuple[DnaBert2ForSequenceClassification, list[str]]:
    model, config, missing = load_classifier_model(path, num_labels=num_labels,
                                                   problem_type=problem_type)
    assert isinstance(model, DnaBert2ForSequenceClassification) and not model.training
    for c in (config, model.config):
        assert c.num_labels == num_labels and c.problem_type == problem_type
    return model, missing


def _ids(ref: dict[str, np.ndarray], name: str) -> torch.Tensor:
    return torch.from_numpy(ref[f"{name}.input_ids"])[None]


def _names(ref: dict[str, np.ndarray]) -> list[str]:
    return [str(n) for n in ref["names"]]


def test_fixture_is_the_published_layout() -> None:
    names = sorted(p.name for p in FIXTURE.iterdir())
    assert names == ["LICENSE", "config.json", "generation_config.json", "pytorch_model.bin",
                     "tokenizer.json", "tokenizer_config.json"]  # no .py modelling files
    md = inspect_model_dir(FIXTURE)
    assert (md.family.name, md.layout) == ("dnabert2", "published")
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) + REFERENCE.stat().st_size < 6e6


def test_logits_equal_the_authors(mlm: DnaBert2ForMaskedLM, ref: dict[str, np.ndarray]) -> None:
    report = {}
    for name in _names(ref):
        ids = _ids(ref, name)
        with torch.no_grad():
            out = mlm(input_ids=ids, attention_mask=torch.ones_like(ids),
                      output_hidden_states=True)
        positions = ref[f"{name}.logit_positions"]
        d_logit = np.abs(out.logits[0].numpy()[positions] - ref[f"{name}.logits"]).max()
        hidden = np.stack([h[0].numpy() for h in out.hidden_states])
        d_hidden = np.abs(hidden - ref[f"{name}.hidden_states"]).max()
        report[name] = (ids.shape[1], float(d_logit), float(d_hidden))
        assert d_logit < TOLERANCE, (name, d_logit)
        assert d_hidden < TOLERANCE, (name, d_hidden)
    print("\nDNABERT-2 max |dlogit|, |dhidden| per sequence:", report)


def test_sequences_longer_than_the_initial_alibi_table(mlm: DnaBert2ForMaskedLM,
                                                       ref: dict[str, np.ndarray]) -> None:
    """The authors' code rebuilds its ALiBi table for inputs longer than alibi_starting_size;
    the fixture has one sequence within it and longer ones (all matched above)."""
    start = mlm.config.alibi_starting_size
    lengths = [ref[f"{n}.input_ids"].size for n in _names(ref)]
    assert start == 16 and min(lengths) <= start < max(lengths) and max(lengths) > 10 * start
    assert mlm.config.max_position_embeddings is None  # ALiBi: no position limit


def test_alibi_slopes_equal_the_authors(ref: dict[str, np.ndarray]) -> None:
    for n in range(1, 17):  # powers of two and the rule for other head counts (12 published)
        mine = np.array(alibi_slopes(n), dtype=np.float32)
        np.testing.assert_array_equal(mine, ref[f"alibi_slopes.{n}"], err_msg=str(n))


def test_fixture_detects_a_wrong_alibi(mlm: DnaBert2ForMaskedLM,
                                       ref: dict[str, np.ndarray]) -> None:
    """The reference is sensitive to the bias: reversed head slopes move the logits a lot."""
    ids = _ids(ref, "s200")
    saved = mlm.bert.slopes
    try:
        mlm.bert.slopes = saved[::-1]
        with torch.no_grad():
            logits = mlm(input_ids=ids).logits[0].numpy()
    finally:
        mlm.bert.slopes = saved
    assert np.abs(logits - ref["s200.logits"]).max() > 1e-2


def test_head_is_reachable(mlm: DnaBert2ForMaskedLM, ref: dict[str, np.ndarray]) -> None:
    ids = _ids(ref, "s200")
    with torch.no_grad():
        hidden = mlm.base_model(input_ids=ids).last_hidden_state
        picked = mlm.cls(hidden[0, [3, 17]])
    np.testing.assert_allclose(picked.numpy(), ref["s200.logits"][[3, 17]], atol=TOLERANCE)


def test_padding_invariance(mlm: DnaBert2ForMaskedLM, ref: dict[str, np.ndarray]) -> None:
    ids = torch.from_numpy(ref["batch.input_ids"])
    mask = torch.from_numpy(ref["batch.attention_mask"])
    with torch.no_grad():
        batch = mlm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    keep = mask.bool().numpy()
    assert not keep.all()  # some rows are padded
    authors = ref["batch.last_hidden_state"]  # the authors' unpadded path on the same batch
    assert np.abs(batch.hidden_states[-1].numpy()[keep] - authors[keep]).max() < TOLERANCE
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        with torch.no_grad():
            alone = mlm(input_ids=ids[row : row + 1, :n]).logits[0]
        assert torch.abs(batch.logits[row, :n] - alone).max() < TOLERANCE


def test_hidden_states_and_inputs_embeds(mlm: DnaBert2ForMaskedLM,
                                         ref: dict[str, np.ndarray]) -> None:
    ids = _ids(ref, "s60")
    with torch.no_grad():
        out = mlm.base_model(input_ids=ids, output_hidden_states=True)
        embeds = mlm.get_input_embeddings()(ids)
        via_embeds = mlm(inputs_embeds=embeds).logits
        via_ids = mlm(input_ids=ids).logits
        as_tuple = mlm.base_model(input_ids=ids, return_dict=False)
    config = mlm.config
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (1, ids.shape[1], config.hidden_size) for h in out.hidden_states)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.pooler_output is None  # the MLM encoder has no pooler, as published
    assert torch.equal(as_tuple[0], out.last_hidden_state)
    assert torch.abs(via_embeds - via_ids).max() == 0
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight


def test_masked_lm_loss_ignores_minus_100(mlm: DnaBert2ForMaskedLM,
                                          ref: dict[str, np.ndarray]) -> None:
    ids = _ids(ref, "s60")
    labels = torch.full_like(ids, -100)
    labels[0, 4] = int(ids[0, 4])
    with torch.no_grad():
        out = mlm(input_ids=ids, labels=labels)
    expected = -torch.log_softmax(out.logits[0, 4], -1)[ids[0, 4]]
    assert torch.isclose(out.loss, expected, atol=1e-5)


def test_save_pretrained_reloads_through_auto(mlm: DnaBert2ForMaskedLM, tmp_path: Path,
                                              ref: dict[str, np.ndarray]) -> None:
    from transformers import AutoConfig, AutoModelForMaskedLM

    mlm.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "dnalm_dnabert2"
    again, info = AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(again, DnaBert2ForMaskedLM)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert again.config.max_position_embeddings is None
    ids = _ids(ref, "s500_n")
    with torch.no_grad():
        assert torch.equal(again.eval()(input_ids=ids).logits, mlm(input_ids=ids).logits)


def test_classifier_from_the_mlm_weights(ref: dict[str, np.ndarray]) -> None:
    """Encoder loaded, only pooler + classifier new; with the authors' head weights it gives
    the authors' BertForSequenceClassification logits."""
    num_labels = int(ref["cls_num_labels"])
    model, missing = _classifier(num_labels=num_labels)
    assert missing == ["bert.pooler.dense.bias", "bert.pooler.dense.weight",
                       "classifier.bias", "classifier.weight"]
    dropped = set(read_weights(FIXTURE)) - set(model.state_dict())
    assert dropped and all(k.startswith("cls.predictions.") for k in dropped)
    head = {k.removeprefix("cls_head."): torch.from_numpy(v) for k, v in ref.items()
            if k.startswith("cls_head.")}
    assert not model.load_state_dict(head, strict=False).unexpected_keys
    for name in _names(ref):
        with torch.no_grad():
            logits = model(input_ids=_ids(ref, name)).logits[0].numpy()
        assert np.abs(logits - ref[f"{name}.cls_logits"]).max() < TOLERANCE, name


def test_lora_attaches_and_trains(ref: dict[str, np.ndarray]) -> None:
    from peft import LoraConfig, get_peft_model

    from dnalm.finetune.modeling import default_target_modules, head_module_names

    model, missing = _classifier(num_labels=2)
    head = head_module_names(model, missing)
    assert head == ["bert.pooler", "classifier"]
    targets = default_target_modules(model, head)
    assert targets == ["Wqkv", "attention.output.dense"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                  modules_to_save=head))
    peft_model.train()
    ids = torch.from_numpy(ref["batch.input_ids"])
    mask = torch.from_numpy(ref["batch.attention_mask"])
    out = peft_model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1]))
    out.loss.backward()
    lora = [(n, p) for n, p in peft_model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 2 * model.config.num_hidden_layers  # A and B of 2 targets per layer
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora if "lora_B" in n)


def _corrupt(tmp_path: Path, change) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, target)
    state = read_weights(target)
    change(state)
    torch.save(state, target / "pytorch_model.bin")
    return target


#: what each corruption is refused with: the error class and the message (one line, naming the
#: directory)
REFUSALS = {
    "renamed": (ConfigError, r"unknown weight 'bert\.encoder\.layer\.1\.mlp\.w_out\.weight'"),
    "removed": (InputFormatError,
                r"1 weight\(s\) missing \(first: bert\.encoder\.layer\.1\.mlp\.wo\.weight\)"),
    "untied": (ConfigError, r"decoder\.weight differs from the word embeddings"),
    "head_removed": (InputFormatError, r"missing \(first: cls\.predictions\.transform\.dense"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_corrupted_checkpoint_is_refused(tmp_path: Path, case: str) -> None:
    key = "bert.encoder.layer.1.mlp.wo.weight"

    def change(state: dict[str, torch.Tensor]) -> None:
        if case == "renamed":
            state["bert.encoder.layer.1.mlp.w_out.weight"] = state.pop(key)
        elif case == "removed":
            del state[key]
        elif case == "untied":
            state["cls.predictions.decoder.weight"] = state[
                "cls.predictions.decoder.weight"].clone() + 1.0
        else:
            del state["cls.predictions.transform.dense.weight"]

    path = _corrupt(tmp_path, change)
    error, message = REFUSALS[case]
    with pytest.raises(DnalmError, match=message) as info:
        load_masked_lm(path)
    assert type(info.value) is error
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
    if case == "head_removed":  # a classifier does not need the MLM head
        _, missing = _classifier(path)
        assert {k.rsplit(".", 1)[0] for k in missing} == {"bert.pooler.dense", "classifier"}
    else:  # the encoder itself is wrong: refused for a classifier too
        with pytest.raises(error, match=message):
            _classifier(path)


def test_state_dict_conversion_is_the_identity() -> None:
    state = read_weights(FIXTURE)
    out = convert_published_state_dict(state)
    assert set(out) == set(state) - {"cls.predictions.decoder.weight"}
    bare = {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
    assert set(convert_published_state_dict(bare)) == {k for k in state if k.startswith("bert.")}
    with pytest.raises(ConfigError, match="position_embeddings"):
        convert_published_state_dict({**state, "bert.embeddings.position_embeddings.weight":
                                      torch.zeros(1)})


def test_published_config_conversion() -> None:
    raw = inspect_model_dir(FIXTURE).raw_config
    assert "model_type" not in raw  # as published
    config = convert_published_config(raw)
    assert model_config(inspect_model_dir(FIXTURE)).to_dict() == config.to_dict()
    assert config.model_type == "dnalm_dnabert2"
    assert (config.hidden_size, config.num_attention_heads, config.alibi_starting_size) == (
        48, 12, 16)
    assert config.max_position_embeddings is None and config.pad_token_id is None
    with pytest.raises(ConfigError, match="flash_attention"):
        convert_published_config({**raw, "flash_attention": True})
    with pytest.raises(ConfigError, match="model_type"):
        convert_published_config({**raw, "model_type": "esm"})
    with pytest.raises(ConfigError, match="multiple"):
        DnaBert2Config(hidden_size=50, num_attention_heads=12)
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        DnaBert2Config(max_position_embeddings=0)


def test_checkpoint_with_a_pooler(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint saved from the authors' BertModel/classifier carries a pooler: the masked LM
    drops it (and says so), the classifier keeps it (then only ``classifier`` is new)."""
    hidden = 48

    def add_pooler(state: dict[str, torch.Tensor]) -> None:
        state["bert.pooler.dense.weight"] = torch.full((hidden, hidden), 0.01)
        state["bert.pooler.dense.bias"] = torch.zeros(hidden)

    path = _corrupt(tmp_path, add_pooler)
    with caplog.at_level(logging.INFO, logger="dnalm.models.directory"):
        mlm = load_masked_lm(path)
    assert "left out 2 weight(s) of pretraining heads a masked LM does not use (bert.pooler)" \
        in caplog.text
    assert set(read_weights(path)) - set(mlm.state_dict()) == {"bert.pooler.dense.bias",
                                                               "bert.pooler.dense.weight"}
    model, missing = _classifier(path)
    assert missing == ["classifier.bias", "classifier.weight"]
    assert torch.all(model.bert.pooler.dense.weight == 0.01)


def test_from_pretrained_with_a_converted_state_dict(ref: dict[str, np.ndarray]) -> None:
    """transformers' own loader on the converted weights (how dnalm's directory reader loads)
    ties the decoder and reports nothing missing."""
    config = convert_published_config(inspect_model_dir(FIXTURE).raw_config)
    state = convert_published_state_dict(read_weights(FIXTURE))
    model, info = DnaBert2ForMaskedLM.from_pretrained(None, config=config, state_dict=state,
                                                      output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids = _ids(ref, "s200")
    with torch.no_grad():
        logits = model.eval()(input_ids=ids).logits[0].numpy()
    assert np.abs(logits - ref["s200.logits"]).max() < TOLERANCE


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_all_padding_row_stays_finite(ref: dict[str, np.ndarray], dtype: torch.dtype) -> None:
    """Padded keys get the dtype's minimum, not -inf: a row with no real token (as an RMT row
    before its first segment) gives finite values instead of NaN."""
    model = load_masked_lm(FIXTURE, dtype=dtype)
    assert model.dtype == dtype and not model.training
    ids = torch.from_numpy(ref["batch.input_ids"])
    mask = torch.from_numpy(ref["batch.attention_mask"]).clone()
    mask[0] = 0
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all()


def test_published_tokenizer_gives_the_reference_ids(ref: dict[str, np.ndarray]) -> None:
    """Under transformers 5 the published tokenizer files give the ids the authors' tokenizer
    gave (no remote code: the config's auto_map must not be followed)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(FIXTURE), trust_remote_code=False)
    for name in _names(ref):
        assert tok(str(ref[f"{name}.sequence"]))["input_ids"] == ref[f"{name}.input_ids"].tolist()
    assert (tok.pad_token_id, tok.mask_token_id, tok.unk_token_id) == (3, 4, 0)
