"""GENA-LM under transformers 5: native pre-LayerNorm BERT and transformers' BigBird.

The fixtures (``tests/data/published/gena_bert/`` and ``gena_bigbird/``) are tiny random
checkpoints written by the authors' code under transformers 4.28, with reference logits in
``gena_{bert,bigbird}.reference.npz`` (see ``tests/data/published/gena_*.md``). Logits are
stored at a fixed set of vocabulary columns (``cols``) plus the full-vocabulary log-sum-exp at
every position, which any wrong column would move. The directories are read only through
:mod:`dnalm.models.directory` (the one reader of model directories), which calls this family's
converters; tests of a converter option the reader does not offer build the model from
``model_config`` + the converters + ``read_weights`` directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, BigBirdConfig, BigBirdForMaskedLM

from dnalm.errors import ConfigError, DnalmError, InputFormatError
from dnalm.finetune.modeling import default_target_modules, head_module_names
from dnalm.models import gena
from dnalm.models.directory import (
    inspect_model_dir,
    load_classifier_model,
    load_masked_lm,
    model_config,
    read_weights,
)

DATA = Path(__file__).parent / "data" / "published"
BERT_DIR = DATA / "gena_bert"
BIGBIRD_DIR = DATA / "gena_bigbird"
TOL = 1e-4


@pytest.fixture(scope="module")
def bert_ref() -> dict[str, np.ndarray]:
    with np.load(DATA / "gena_bert.reference.npz") as ref:
        return dict(ref)


@pytest.fixture(scope="module")
def bigbird_ref() -> dict[str, np.ndarray]:
    with np.load(DATA / "gena_bigbird.reference.npz") as ref:
        return dict(ref)


@pytest.fixture(scope="module")
def mlm() -> gena.GenaBertForMaskedLM:
    model = load_masked_lm(BERT_DIR)
    assert isinstance(model, gena.GenaBertForMaskedLM)
    assert not model.training and model.dtype == torch.float32
    return model


#: what a classifier on a published (masked-LM) GENA BERT directory initialises new
NEW_HEAD = ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias",
            "classifier.weight"]


def _classifier(num_labels: int, path: Path = BERT_DIR
                ) -> tuple[gena.GenaBertForSequenceClassification, list[str]]:
    model, config, missing = load_classifier_model(
        path, num_labels=num_labels, problem_type="single_label_classification")
    assert isinstance(model, gena.GenaBertForSequenceClassification) and not model.training
    assert model.config.num_labels == config.num_labels == num_labels
    return model, missing


def _plain_bigbird(config: BigBirdConfig | None = None) -> BigBirdForMaskedLM:
    """transformers' BigBird on the converted published weights (strict), without the hooks
    that ``load_masked_lm`` applies."""
    config = config or model_config(inspect_model_dir(BIGBIRD_DIR))
    model = BigBirdForMaskedLM(config)
    state = gena.convert_bigbird_state_dict(read_weights(BIGBIRD_DIR))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


def _ids(ref: dict[str, np.ndarray], name: str) -> torch.Tensor:
    return torch.from_numpy(ref[f"{name}_input_ids"])[None]


def _diffs(logits: torch.Tensor, ref: dict[str, np.ndarray], key: str) -> tuple[float, float]:
    """max |logit diff| at the stored columns, and of the full-vocabulary log-sum-exp."""
    sub = logits[:, ref["cols"]].numpy()
    lse = torch.logsumexp(logits.double(), dim=-1).float().numpy()
    return (float(np.abs(sub - ref[f"{key}_logits"]).max()),
            float(np.abs(lse - ref[f"{key}_lse"]).max()))


# -- GENA-LM BERT ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s200", "s500_n", "s1000"])
def test_masked_lm_matches_authors(mlm, bert_ref, name: str) -> None:
    with torch.no_grad():
        out = mlm(input_ids=_ids(bert_ref, name), output_hidden_states=True)
    d_logit, d_lse = _diffs(out.logits[0], bert_ref, name)
    d_hidden = float(np.abs(out.hidden_states[-1][0].numpy()
                            - bert_ref[f"{name}_last_hidden"]).max())
    assert max(d_logit, d_lse, d_hidden) < TOL, (d_logit, d_lse, d_hidden)


def test_published_layout_is_recognised_and_tied(mlm) -> None:
    md = inspect_model_dir(BERT_DIR)
    assert (md.family.name, md.layout) == ("gena_bert", "published")
    md = inspect_model_dir(BIGBIRD_DIR)
    assert (md.family.name, md.layout) == ("gena_bigbird", "published")
    assert mlm.config.model_type == "dnalm_gena_bert"
    assert mlm.config.pre_layer_norm and not mlm.config.last_layer_norm
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight
    assert mlm.cls.predictions.decoder.bias is mlm.cls.predictions.bias
    assert isinstance(mlm.base_model, gena.GenaBertModel)


def test_last_layer_norm_matches_authors(bert_ref) -> None:
    """``last_layer_norm: true`` (bert-large-t2t, base-lastln-t2t) on the fixture's weights."""
    raw = dict(inspect_model_dir(BERT_DIR).raw_config)
    del raw["last_layer_norm"]  # GENA's default: last_layer_norm = pre_layer_norm
    config = gena.convert_published_config(raw)
    assert config.last_layer_norm is True
    model = gena.GenaBertForMaskedLM(config)
    state = gena.convert_published_state_dict(read_weights(BERT_DIR))
    state["bert.encoder.last_layer_ln.weight"] = torch.from_numpy(bert_ref["lastln_weight"])
    state["bert.encoder.last_layer_ln.bias"] = torch.from_numpy(bert_ref["lastln_bias"])
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    with torch.no_grad():
        out = model(input_ids=_ids(bert_ref, "s500_n"), output_hidden_states=True)
    d_logit, d_lse = _diffs(out.logits[0], bert_ref, "lastln_s500_n")
    assert max(d_logit, d_lse) < TOL
    assert torch.equal(out.hidden_states[-1], model.bert(_ids(bert_ref, "s500_n"))[0])


def test_classifier_matches_authors_and_reuses_encoder(mlm, bert_ref) -> None:
    clf, missing = _classifier(num_labels=3)
    assert missing == NEW_HEAD
    encoder = dict(mlm.bert.named_parameters())
    for name, param in clf.bert.named_parameters():
        if not name.startswith("pooler."):
            assert torch.equal(param, encoder[name]), name
    with torch.no_grad():  # the authors' pooler + classifier weights, then their logits
        for key in ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                    "classifier.bias"):
            clf.get_parameter(key).copy_(torch.from_numpy(bert_ref["cls_" + key.replace(".",
                                                                                       "_")]))
        logits = clf(input_ids=_ids(bert_ref, "s1000")).logits[0]
    assert float(np.abs(logits.numpy() - bert_ref["cls_s1000_logits"]).max()) < TOL


def test_padding_invariance(mlm, bert_ref) -> None:
    short, long = _ids(bert_ref, "s200")[0], _ids(bert_ref, "s1000")[0]
    batch = torch.full((2, len(long)), mlm.config.pad_token_id)
    batch[0] = long
    batch[1, : len(short)] = short
    mask = (torch.arange(len(long)) < torch.tensor([[len(long)], [len(short)]])).long()
    with torch.no_grad():
        both = mlm(input_ids=batch, attention_mask=mask).logits
        alone = mlm(input_ids=short[None]).logits
        first = mlm(input_ids=long[None]).logits
    assert torch.allclose(both[1, : len(short)], alone[0], atol=1e-5)
    assert torch.allclose(both[0], first[0], atol=1e-5)


def test_hidden_states_and_inputs_embeds(mlm, bert_ref) -> None:
    ids = _ids(bert_ref, "s500_n")
    with torch.no_grad():
        out = mlm(input_ids=ids, output_hidden_states=True)
        embeds = mlm.get_input_embeddings()(ids)
        via_embeds = mlm(inputs_embeds=embeds, output_hidden_states=True)
        base = mlm.base_model(input_ids=ids)
    states = out.hidden_states
    assert len(states) == mlm.config.num_hidden_layers + 1
    assert all(s.shape == (1, ids.shape[1], mlm.config.hidden_size) for s in states)
    assert torch.equal(states[0], mlm.bert.embeddings(input_ids=ids))
    assert torch.equal(states[-1], base.last_hidden_state)
    assert torch.allclose(via_embeds.logits, out.logits, atol=1e-6)
    assert torch.allclose(mlm.cls(base.last_hidden_state), out.logits, atol=1e-6)
    tuple_out = mlm(input_ids=ids, return_dict=False)
    assert isinstance(tuple_out, tuple) and torch.allclose(tuple_out[0], out.logits)


def test_save_pretrained_round_trip(mlm, bert_ref, tmp_path: Path) -> None:
    mlm.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "dnalm_gena_bert"
    again = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert isinstance(again, gena.GenaBertForMaskedLM)
    again.eval()
    ids = _ids(bert_ref, "s200")
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, mlm(input_ids=ids).logits)
    native = json.loads((tmp_path / "config.json").read_text())
    assert gena.convert_published_config(native).last_layer_norm is False


def test_lora_attaches_and_trains(bert_ref) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    clf, missing = _classifier(num_labels=2)
    head = ["bert.pooler", "classifier"]
    assert head_module_names(clf, missing) == head
    targets = default_target_modules(clf, head)
    assert targets == ["query", "key", "value", "attention.output.dense"]
    peft_model = get_peft_model(clf, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                                target_modules=targets,
                                                modules_to_save=head))
    peft_model.train()
    ids = _ids(bert_ref, "s200").repeat(2, 1)
    out = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids),
                     labels=torch.tensor([0, 1]))
    out.loss.backward()
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 4 * clf.config.num_hidden_layers
    assert all(p.grad is not None for p in lora)


def _corrupt(tmp_path: Path, edit) -> Path:
    target = tmp_path / "corrupt"
    shutil.copytree(BERT_DIR, target)
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


def test_corrupted_checkpoints_are_refused(tmp_path: Path) -> None:
    key = "bert.encoder.layer.1.post_attention_ln.weight"

    def rename(state):  # the post-LayerNorm BERT name
        state["bert.encoder.layer.1.output.LayerNorm.weight"] = state.pop(key)

    _refused(_corrupt(tmp_path / "a", rename), ConfigError,
             r"unknown weight .*output\.LayerNorm")
    _refused(_corrupt(tmp_path / "b", lambda s: s.pop(key)), InputFormatError,
             r"1 weight\(s\) missing \(first: bert\.encoder\.layer\.1\.post_attention_ln"
             r"\.weight\)")

    def shuffle_positions(state):
        state["bert.embeddings.position_ids"] = state["bert.embeddings.position_ids"].flip(-1)

    _refused(_corrupt(tmp_path / "c", shuffle_positions), ConfigError, "position_ids")

    def untie(state):
        state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1

    path = _corrupt(tmp_path / "d", untie)
    _refused(path, InputFormatError, r"the config ties them \(first: cls\.predictions\.decoder"
             r"\.weight / bert\.embeddings\.word_embeddings\.weight\)", classifier=False)
    assert _classifier(num_labels=2, path=path)[1] == NEW_HEAD  # a classifier drops the head

    def untie_bias(state):
        state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"] + 1

    _refused(_corrupt(tmp_path / "e", untie_bias), InputFormatError,
             r"ties them \(first: cls\.predictions\.decoder\.bias / cls\.predictions\.bias\)",
             classifier=False)


def test_state_dict_drops_only_known_unused_keys() -> None:
    state = read_weights(BERT_DIR)
    state["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    state["cls.seq_relationship.bias"] = torch.zeros(2)
    converted = gena.convert_published_state_dict(state)
    assert set(state) - set(converted) == {"bert.embeddings.position_ids",
                                           "cls.seq_relationship.weight",
                                           "cls.seq_relationship.bias"}


@pytest.mark.parametrize(("change", "field"), [
    ({"sparse_config_cls": "deepspeed.ops.sparse_attention:BigBirdSparsityConfig",
      "sparse_attention": {"block": 64}}, "sparse_config_cls"),
    ({"position_embedding_type": "rotary", "rotary_dim": 32}, "position_embedding_type"),
    ({"pre_layer_norm": False}, "pre_layer_norm"),
    ({"is_decoder": True}, "is_decoder"),
    ({"some_new_option": 1}, "some_new_option"),
    ({"model_type": "roberta"}, "model_type"),
    ({"hidden_size": 30}, "hidden_size"),
])
def test_config_refuses_what_is_not_implemented(change: dict, field: str) -> None:
    raw = {**inspect_model_dir(BERT_DIR).raw_config, **change}
    with pytest.raises(ConfigError, match=field) as err:
        gena.convert_published_config(raw)
    assert "\n" not in str(err.value)


# -- GENA-LM BigBird (transformers' BigBirdForMaskedLM) -----------------------------------------


def test_bigbird_loads_with_no_missing_or_unexpected_keys() -> None:
    raw_state = read_weights(BIGBIRD_DIR)
    state = gena.convert_bigbird_state_dict(raw_state)
    assert set(raw_state) - set(state) == {"cls.seq_relationship.weight",
                                           "cls.seq_relationship.bias",
                                           "bert.embeddings.position_ids"}
    config = gena.convert_bigbird_config(inspect_model_dir(BIGBIRD_DIR).raw_config)
    assert model_config(inspect_model_dir(BIGBIRD_DIR)).to_dict() == config.to_dict()
    model = BigBirdForMaskedLM(config)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = load_masked_lm(BIGBIRD_DIR)
    assert type(loaded) is BigBirdForMaskedLM and set(loaded.state_dict()) == set(state)
    state["bert.encoder.layer.0.attention.self.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="extra"):
        gena.convert_bigbird_state_dict(state)


def test_bigbird_matches_authors_short_and_long(bigbird_ref) -> None:
    """Short (35 tokens: full-attention fallback) then long (139 and 304 tokens, block-sparse)
    on one model: the hooks also undo transformers' sticky switch to full attention."""
    model = load_masked_lm(BIGBIRD_DIR)
    assert isinstance(model, BigBirdForMaskedLM) and not model.training
    for name in ("short", "long", "long2k"):
        with torch.no_grad():
            out = model(input_ids=_ids(bigbird_ref, name), output_hidden_states=True)
        d_logit, d_lse = _diffs(out.logits[0], bigbird_ref, name)
        # transformers 4.28 returns hidden states with BigBird's block padding; 5 cuts it
        hidden = bigbird_ref[f"{name}_last_hidden"][: out.logits.shape[1]]
        d_hidden = float(np.abs(out.hidden_states[-1][0].numpy() - hidden).max())
        assert max(d_logit, d_lse, d_hidden) < TOL, (name, d_logit, d_lse, d_hidden)
        expected = "original_full" if name == "short" else "block_sparse"
        assert model.bert.attention_type == expected


def test_bigbird_full_attention_equals_authors(bigbird_ref) -> None:
    config = model_config(inspect_model_dir(BIGBIRD_DIR))
    assert config.attention_type == "block_sparse"  # as published
    config.attention_type = "original_full"
    model = _plain_bigbird(config)
    assert model.bert.attention_type == "original_full"
    for name in ("long", "long2k"):
        with torch.no_grad():
            logits = model(input_ids=_ids(bigbird_ref, name)).logits[0]
        assert max(_diffs(logits, bigbird_ref, f"{name}_full")) < TOL


def test_bigbird_plain_eval_draws_no_random_blocks(bigbird_ref) -> None:
    """transformers 5's own eval mode: deterministic, but not the authors' (trained) blocks."""
    model = _plain_bigbird()
    assert model.bert.attention_type == "block_sparse"
    ids = _ids(bigbird_ref, "long")
    with torch.no_grad():
        first = model(input_ids=ids).logits[0]
        second = model(input_ids=ids).logits[0]
    assert torch.equal(first, second)
    assert _diffs(first, bigbird_ref, "long")[0] > 1e-2


def test_published_block_sparse_keeps_numpy_state(bigbird_ref) -> None:
    model = load_masked_lm(BIGBIRD_DIR)
    assert gena.use_published_block_sparse(model) is model  # idempotent
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    with torch.no_grad():
        model(input_ids=_ids(bigbird_ref, "long"))
    assert np.random.random() == expected
    assert not any(m.training for m in model.modules())
    with pytest.raises(ConfigError, match="BigBird"):
        gena.use_published_block_sparse(load_masked_lm(BERT_DIR))
