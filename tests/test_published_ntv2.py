"""Nucleotide Transformer v2 as published, loaded natively (no remote code), against the authors.

The fixture ``tests/data/published/ntv2/`` is a tiny random checkpoint written by the authors'
``EsmForMaskedLM.save_pretrained`` (their modeling_esm.py under transformers 4.32), and
``ntv2.reference.npz`` holds the ids their ``EsmTokenizer`` produced and what their model
computed; see ``tests/data/published/ntv2.md`` and ``build/ntv2.py``. The directory is read only
through :mod:`dnalm.models.directory` (the one reader of model directories), which calls this
family's converters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from dnalm.errors import ConfigError, DnalmError, InputFormatError
from dnalm.finetune.modeling import default_target_modules
from dnalm.models.directory import (
    inspect_model_dir,
    load_classifier_model,
    load_masked_lm,
    model_config,
    read_weights,
)
from dnalm.models.ntv2 import (
    INV_FREQ_KEY,
    NTv2Config,
    NTv2ForMaskedLM,
    NTv2ForSequenceClassification,
    NTv2Model,
    convert_published_config,
    convert_published_state_dict,
)

FIXTURE = Path(__file__).parent / "data" / "published" / "ntv2"
REFERENCE = FIXTURE.parent / "ntv2.reference.npz"
TOLERANCE = 1e-4
N_SEQUENCES = 3


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def mlm() -> NTv2ForMaskedLM:
    model = load_masked_lm(FIXTURE)
    assert isinstance(model, NTv2ForMaskedLM)
    assert not model.training and model.dtype == torch.float32
    return model


def _classifier(num_labels: int, problem_type: str = "single_label_classification",
                path: Path = FIXTURE) -> NTv2ForSequenceClassification:
    """The published encoder with a new classifier head (the only weights it may miss)."""
    model, config, missing = load_classifier_model(path, num_labels=num_labels,
                                                   problem_type=problem_type)
    assert isinstance(model, NTv2ForSequenceClassification) and not model.training
    assert model.config.num_labels == config.num_labels == num_labels
    assert {k.split(".")[0] for k in missing} == {"classifier"}
    return model


def _ids(ref: dict[str, np.ndarray], i: int) -> torch.Tensor:
    return torch.from_numpy(ref[f"input_ids_{i}"])[None]


def _sequence(ref: dict[str, np.ndarray], i: int) -> str:
    return str(ref["names"][i]).split("sequence=", 1)[1]


def _padded(ref: dict[str, np.ndarray], rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = [ref[f"input_ids_{i}"] for i in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), 1, dtype=torch.long)  # <pad> = 1
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.from_numpy(s)
        mask[r, : len(s)] = 1
    return ids, mask


def test_fixture_is_the_published_layout() -> None:
    names = sorted(p.name for p in FIXTURE.iterdir())
    assert names == ["config.json", "pytorch_model.bin", "special_tokens_map.json",
                     "tokenizer_config.json", "vocab.txt"]  # no .py modelling files
    md = inspect_model_dir(FIXTURE)
    assert (md.family.name, md.layout) == ("ntv2", "published")
    raw = md.raw_config
    assert "model_type" not in raw and "auto_map" in raw and raw["add_bias_fnn"] is False


def test_reference_ids_are_what_the_fixture_tokenizer_gives(ref) -> None:
    """The published tokenizer files under transformers 5 give the authors' ids (6-mers from
    the left, single nucleotides after an N and at the end, ``<cls>`` first, no ``<eos>``)."""
    tokenizer = AutoTokenizer.from_pretrained(str(FIXTURE), local_files_only=True)
    assert type(tokenizer).__name__ == "EsmTokenizer"
    for i in range(N_SEQUENCES):
        assert tokenizer(_sequence(ref, i))["input_ids"] == ref[f"input_ids_{i}"].tolist()
    with_n = ref["input_ids_1"].tolist()
    assert with_n.count(tokenizer.convert_tokens_to_ids("N")) == 1
    assert len(_sequence(ref, 0)) % 6 != 0


def test_config_conversion() -> None:
    raw = inspect_model_dir(FIXTURE).raw_config
    config = convert_published_config(raw)
    assert model_config(inspect_model_dir(FIXTURE)).to_dict() == config.to_dict()
    assert isinstance(config, NTv2Config) and config.model_type == "dnalm_ntv2"
    assert config.max_position_embeddings == 2048  # published 2050 minus pad_token_id + 1
    assert (config.pad_token_id, config.mask_token_id, config.vocab_size) == (1, 2, 4107)
    assert config.eos_token_id is None  # not EsmConfig's 2, which is <mask> for NT
    assert not config.tie_word_embeddings and not config.add_bias_fnn
    assert config.intermediate_size == 64 and config.position_embedding_type == "rotary"
    again = convert_published_config(config.to_dict())  # a native dict is taken as it is
    assert again.max_position_embeddings == 2048


@pytest.mark.parametrize(("change", "field"), [
    ({"position_embedding_type": "absolute"}, "position_embedding_type"),
    ({"hidden_size": 33}, "hidden_size"),
    ({"hidden_size": "32"}, "hidden_size"),
    ({"is_folding_model": True}, "is_folding_model"),
    ({"mask_token_id": 9999}, "mask_token_id"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"model_type": "bert"}, "model_type"),
])
def test_config_conversion_refuses(change, field) -> None:
    raw = {**inspect_model_dir(FIXTURE).raw_config, **change}
    with pytest.raises(ConfigError, match=field) as info:
        convert_published_config(raw)
    assert "\n" not in str(info.value)


def test_reference_logits(mlm, ref) -> None:
    """Max |Δlogit| against the authors' code, per sequence (SDPA attention)."""
    diffs = {}
    for i in range(N_SEQUENCES):
        with torch.no_grad():
            out = mlm(_ids(ref, i), output_hidden_states=True)
        logits = out.logits[0, torch.from_numpy(ref[f"positions_{i}"])]
        diffs[i] = (logits - torch.from_numpy(ref[f"logits_{i}"])).abs().max().item()
        hidden = (out.hidden_states[-1][0] - torch.from_numpy(ref[f"last_hidden_state_{i}"]))
        assert hidden.abs().max().item() < TOLERANCE
    print("ntv2 max |dlogit| per sequence:", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_reference_logits_eager_attention(ref) -> None:
    model = load_masked_lm(FIXTURE)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        logits = model(_ids(ref, 2)).logits[0, torch.from_numpy(ref["positions_2"])]
    assert (logits - torch.from_numpy(ref["logits_2"])).abs().max().item() < 1e-5


def test_head_runs_on_the_base_model_output(mlm, ref) -> None:
    ids = _ids(ref, 0)
    with torch.no_grad():
        hidden = mlm.base_model(ids).last_hidden_state
        assert mlm.base_model is mlm.esm
        torch.testing.assert_close(mlm.lm_head(hidden[:, 5:7]), mlm(ids).logits[:, 5:7])
    assert mlm.get_output_embeddings() is mlm.lm_head.decoder
    assert mlm.lm_head.decoder.weight is not mlm.get_input_embeddings().weight  # untied


def test_padding_invariance(mlm, ref) -> None:
    ids, mask = _padded(ref, [0, 1])
    with torch.no_grad():
        batch = mlm(ids, attention_mask=mask).logits
        alone = mlm(_ids(ref, 0)).logits
    n = len(ref["input_ids_0"])
    torch.testing.assert_close(batch[0, :n], alone[0], atol=2e-5, rtol=0)


def test_hidden_states_and_inputs_embeds(mlm, ref) -> None:
    ids, mask = _padded(ref, [0, 1])
    with torch.no_grad():
        out = mlm(ids, attention_mask=mask, output_hidden_states=True)
        embeds = mlm.get_input_embeddings()(ids)
        via_embeds = mlm(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
        base = mlm.esm(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == mlm.config.num_hidden_layers + 1
    assert all(h.shape == (2, ids.shape[1], 32) for h in out.hidden_states)
    torch.testing.assert_close(out.hidden_states[-1], base.last_hidden_state)
    # the first entry is the embedding output (padded rows zeroed, as the authors' code does)
    torch.testing.assert_close(out.hidden_states[0], embeds * mask[..., None])
    torch.testing.assert_close(via_embeds.logits, out.logits, atol=0, rtol=0)
    for a, b in zip(via_embeds.hidden_states, out.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    as_tuple = mlm(ids, attention_mask=mask, return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.logits)
    with pytest.raises(ValueError, match="output_attentions"):
        mlm(ids, output_attentions=True)


def test_masked_lm_loss(mlm, ref) -> None:
    ids = _ids(ref, 0)
    labels = torch.full_like(ids, -100)
    labels[0, 4] = ids[0, 4]
    out = mlm(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[0, 4:5], ids[0, 4:5])
    torch.testing.assert_close(out.loss, expected)


def test_save_pretrained_round_trip(mlm, ref, tmp_path) -> None:
    mlm.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dnalm_ntv2"
    assert isinstance(AutoConfig.from_pretrained(tmp_path), NTv2Config)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert isinstance(again, NTv2ForMaskedLM)
    ids = _ids(ref, 1)
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, mlm(ids).logits, atol=0, rtol=0)
    assert isinstance(AutoModel.from_pretrained(tmp_path), NTv2Model)
    classifier, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=2, output_loading_info=True)
    assert isinstance(classifier, NTv2ForSequenceClassification)
    assert {k.split(".")[0] for k in info["missing_keys"]} == {"classifier"}


def test_classifier_matches_the_authors_head(mlm, ref) -> None:
    """The authors' EsmForSequenceClassification, same encoder and a seeded head, gave
    ``cls_logits``; the native classifier with that head gives the same."""
    model = _classifier(num_labels=3)
    assert model.esm.state_dict().keys() == mlm.esm.state_dict().keys()
    for key, value in mlm.esm.state_dict().items():
        assert torch.equal(model.esm.state_dict()[key], value), key
    head = {k.removeprefix("classifier."): torch.from_numpy(v) for k, v in ref.items()
            if k.startswith("classifier.")}
    model.classifier.load_state_dict(head)
    for i in range(N_SEQUENCES):
        with torch.no_grad():
            logits = model(_ids(ref, i)).logits[0]
        assert (logits - torch.from_numpy(ref[f"cls_logits_{i}"])).abs().max() < TOLERANCE


def test_classifier_lora_backward(ref) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    model = _classifier(num_labels=2)
    targets = default_target_modules(model, ["classifier"])
    assert targets == ["query", "key", "value", "attention.output.dense"]
    peft_model = get_peft_model(model, LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=targets,
        modules_to_save=["classifier"]))
    peft_model.train()
    ids, mask = _padded(ref, [0, 1])
    out = peft_model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 4 * model.config.num_hidden_layers
    assert all(p.grad is not None for p in lora)


def test_regression_loss(ref) -> None:
    model = _classifier(num_labels=1, problem_type="regression")
    out = model(_ids(ref, 0), labels=torch.tensor([0.5]))
    assert model.config.problem_type == "regression" and out.loss.ndim == 0
    model.config.problem_type = None  # inferred from one label and float targets
    again = model(_ids(ref, 0), labels=torch.tensor([0.5]))
    assert model.config.problem_type == "regression" and torch.equal(again.loss, out.loss)


def _corrupt(tmp_path: Path, edit) -> Path:
    target = tmp_path / "ntv2"
    shutil.copytree(FIXTURE, target)
    state = read_weights(target)
    edit(state)
    torch.save(state, target / "pytorch_model.bin")
    return target


def _refused(path: Path, error: type[DnalmError], message: str, *, classifier: bool = True
             ) -> None:
    """Loading ``path`` raises ``error`` in one line naming the directory and ``message``
    (as a masked LM, and as a classifier unless the defect is in the MLM head)."""
    loads = [load_masked_lm]
    if classifier:
        loads.append(lambda p: load_classifier_model(
            p, num_labels=2, problem_type="single_label_classification"))
    for load in loads:
        with pytest.raises(DnalmError, match=message) as info:
            load(path)
        assert type(info.value) is error
        assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")


def test_corrupted_checkpoints_are_refused(tmp_path) -> None:
    key = "esm.encoder.layer.1.intermediate.dense.weight"

    def rename(state):
        state[key.replace("intermediate", "intermediat")] = state.pop(key)

    _refused(_corrupt(tmp_path / "a", rename), ConfigError,
             r"unknown weight 'esm\.encoder\.layer\.1\.intermediat\.dense\.weight'")
    _refused(_corrupt(tmp_path / "b", lambda s: s.pop(key)), InputFormatError,
             rf"1 weight\(s\) missing \(first: {key}\)")
    path = _corrupt(tmp_path / "c", lambda s: s.pop("lm_head.bias"))
    _refused(path, InputFormatError, r"1 weight\(s\) missing \(first: lm_head\.bias\)",
             classifier=False)
    _classifier(num_labels=2, path=path)  # a classifier does not use the MLM head

    def reshape(state):
        state[key] = state[key][:, :16]

    _refused(_corrupt(tmp_path / "d", reshape), InputFormatError,
             rf"wrong shape \(first: {key}: \(128, 16\) in the checkpoint, \(128, 32\)")


def test_state_dict_conversion() -> None:
    state = read_weights(FIXTURE)
    converted = convert_published_state_dict(state)
    dropped = set(state) - set(converted)
    assert dropped == {"esm.embeddings.position_embeddings.weight",
                       "esm.contact_head.regression.weight", "esm.contact_head.regression.bias",
                       "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq",
                       "esm.encoder.layer.1.attention.self.rotary_embeddings.inv_freq"}
    assert set(converted) - set(state) == {INV_FREQ_KEY}
    assert all(converted[k] is state[k] for k in converted if k != INV_FREQ_KEY)
    with pytest.raises(ConfigError, match=r"unknown weight 'esm\.pooler\.dense\.weight'"):
        convert_published_state_dict({**state, "esm.pooler.dense.weight": torch.zeros(1)})
    other = {**state, "esm.encoder.layer.1.attention.self.rotary_embeddings.inv_freq":
             torch.zeros(8)}
    with pytest.raises(ConfigError, match="inv_freq"):
        convert_published_state_dict(other)
