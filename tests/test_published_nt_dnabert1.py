"""Nucleotide Transformer v1 and DNABERT (v1) as published, in transformers 5's maintained classes.

Both families are architectures transformers maintains (``EsmForMaskedLM``, ``BertForMaskedLM``),
so dnalm has no native module for them; these tests pin that :mod:`dnalm.models.directory` (the
one reader of model directories) loads the published layouts there with no missing or
unexpected weights, and that they give the logits transformers 4.x gave on the same weights.
Fixtures: ``tests/data/published/{ntv1,dnabert1}/`` and their ``.reference.npz``; see
``tests/data/published/{ntv1,dnabert1}.md`` and ``build/{ntv1,dnabert1}.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertTokenizer,
    EsmForMaskedLM,
    EsmForSequenceClassification,
)

from dnalm.finetune.modeling import default_target_modules
from dnalm.models.directory import (
    inspect_model_dir,
    load_classifier_model,
    load_masked_lm,
    model_config,
    read_weights,
)

PUBLISHED = Path(__file__).parent / "data" / "published"
NTV1 = PUBLISHED / "ntv1"
DNABERT1 = PUBLISHED / "dnabert1"
TOLERANCE = 1e-4
N_SEQUENCES = 3


def _reference(name: str) -> dict[str, np.ndarray]:
    with np.load(PUBLISHED / f"{name}.reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def ntv1_ref() -> dict[str, np.ndarray]:
    return _reference("ntv1")


@pytest.fixture(scope="module")
def dnabert1_ref() -> dict[str, np.ndarray]:
    return _reference("dnabert1")


def _ids(ref: dict[str, np.ndarray], i: int) -> torch.Tensor:
    return torch.from_numpy(ref[f"input_ids_{i}"])[None]


def _sequence(ref: dict[str, np.ndarray], i: int) -> str:
    return str(ref["names"][i]).split("sequence=", 1)[1]


def _holds_exactly_the_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Every weight of the directory is in the model, unchanged, and the model has no other
    (nothing missing, unexpected or reshaped; no pretraining head left out)."""
    state, own = read_weights(path), model.state_dict()
    assert set(state) == set(own), sorted(set(state) ^ set(own))
    for key, value in state.items():
        assert torch.equal(own[key], value.to(own[key].dtype)), key


def _classifier(path: Path, num_labels: int) -> tuple[torch.nn.Module, set[str], set[str]]:
    """The directory's encoder with a new head: ``(model, new modules, checkpoint modules the
    classifier does not use)``, both as top-level names (``bert.pooler`` for BERT's pooler)."""
    model, config, missing = load_classifier_model(
        path, num_labels=num_labels, problem_type="single_label_classification")
    assert model.config.num_labels == config.num_labels == num_labels and not model.training

    def module(key: str) -> str:
        return key.rsplit(".", 2)[0] if key.startswith("bert.") else key.split(".")[0]

    unused = set(read_weights(path)) - set(model.state_dict())
    return model, {module(k) for k in missing}, {k.split(".")[0] for k in unused}


def _max_diffs(model: torch.nn.Module, ref: dict[str, np.ndarray]) -> dict[int, float]:
    diffs = {}
    for i in range(N_SEQUENCES):
        with torch.no_grad():
            out = model(_ids(ref, i), output_hidden_states=True)
        logits = out.logits[0, torch.from_numpy(ref[f"positions_{i}"])]
        diffs[i] = (logits - torch.from_numpy(ref[f"logits_{i}"])).abs().max().item()
        hidden = out.hidden_states[-1][0] - torch.from_numpy(ref[f"last_hidden_state_{i}"])
        assert hidden.abs().max().item() < TOLERANCE
    return diffs


def _lora_backward(model: torch.nn.Module, ids: torch.Tensor, head: list[str]) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    targets = default_target_modules(model, head)
    assert targets == ["query", "key", "value", "attention.output.dense"]
    peft_model = get_peft_model(model, LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=targets,
        modules_to_save=head))
    peft_model.train()
    out = peft_model(input_ids=ids, labels=torch.tensor([1]))
    out.loss.backward()
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 4 * model.config.num_hidden_layers
    assert all(p.grad is not None for p in lora)


# -- Nucleotide Transformer v1: EsmForMaskedLM ------------------------------------------------


def test_ntv1_fixture_layout() -> None:
    assert sorted(p.name for p in NTV1.iterdir()) == [
        "config.json", "pytorch_model.bin", "special_tokens_map.json", "tokenizer_config.json",
        "vocab.txt"]
    md = inspect_model_dir(NTV1)
    assert (md.family.name, md.layout) == ("ntv1", "transformers")
    raw = md.raw_config
    assert raw == json.loads((NTV1 / "config.json").read_text())
    assert raw["model_type"] == "esm" and raw["position_embedding_type"] == "absolute"
    assert raw["vocab_size"] == 4105 and raw["max_position_embeddings"] == 1002


def test_ntv1_loads_in_esm_for_masked_lm(ntv1_ref) -> None:
    model = load_masked_lm(NTV1)
    assert type(model) is EsmForMaskedLM and not model.training
    _holds_exactly_the_checkpoint(model, NTV1)
    diffs = _max_diffs(model, ntv1_ref)
    print("ntv1 max |dlogit| per sequence:", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    # untied decoder, as published; NT has no <eos> (EsmConfig's default eos id 2 is <mask>)
    assert model.lm_head.decoder.weight is not model.esm.embeddings.word_embeddings.weight


def test_ntv1_tokenizer_gives_the_reference_ids(ntv1_ref) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(NTV1), local_files_only=True)
    assert type(tokenizer).__name__ == "EsmTokenizer"
    for i in range(N_SEQUENCES):
        ids = tokenizer(_sequence(ntv1_ref, i))["input_ids"]
        assert ids == ntv1_ref[f"input_ids_{i}"].tolist()
    assert tokenizer.convert_ids_to_tokens([3, 4, 4099, 4100, 4104, 4105, 4106]) == [
        "<cls>", "AAAAAA", "GGGGGG", "A", "N", "<eos>", "<bos>"]  # InstaDeep's v1 order


def test_ntv1_classifier_and_lora(ntv1_ref) -> None:
    model, new, unused = _classifier(NTV1, num_labels=3)
    assert type(model) is EsmForSequenceClassification
    assert new == {"classifier"}
    assert unused == {"lm_head"}
    head = {k.removeprefix("classifier."): torch.from_numpy(v) for k, v in ntv1_ref.items()
            if k.startswith("classifier.")}
    model.classifier.load_state_dict(head)
    for i in range(N_SEQUENCES):
        with torch.no_grad():
            logits = model(_ids(ntv1_ref, i)).logits[0]
        assert (logits - torch.from_numpy(ntv1_ref[f"cls_logits_{i}"])).abs().max() < TOLERANCE
    _lora_backward(model, _ids(ntv1_ref, 0), ["classifier"])


# -- DNABERT (v1, 6-mer): BertForMaskedLM ------------------------------------------------------


def test_dnabert1_fixture_layout() -> None:
    assert sorted(p.name for p in DNABERT1.iterdir()) == [
        "config.json", "pytorch_model.bin", "special_tokens_map.json", "tokenizer_config.json",
        "vocab.txt"]
    md = inspect_model_dir(DNABERT1)
    assert (md.family.name, md.layout) == ("dnabert1", "published")
    raw = md.raw_config
    assert "model_type" not in raw and raw["architectures"] == ["BertForMaskedLM"]
    # without model_type the Auto classes cannot tell what it is: dnalm reads it as BERT
    with pytest.raises(ValueError, match="model_type"):
        AutoConfig.from_pretrained(DNABERT1)
    config = model_config(md)
    assert type(config) is BertConfig and config.model_type == "bert"
    values = config.to_dict()
    assert all(values[k] == v for k, v in raw.items() if k != "architectures")


def test_dnabert1_loads_in_bert_for_masked_lm(dnabert1_ref) -> None:
    model = load_masked_lm(DNABERT1)
    assert type(model) is BertForMaskedLM and not model.training
    _holds_exactly_the_checkpoint(model, DNABERT1)
    diffs = _max_diffs(model, dnabert1_ref)
    print("dnabert1 max |dlogit| per sequence:", diffs)
    assert max(diffs.values()) < TOLERANCE, diffs
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_dnabert1_ids_and_the_lower_case_trap(dnabert1_ref) -> None:
    """DNABERT's ids: overlapping 6-mers looked up upper-case, [CLS] ... [SEP]. The published
    ``do_lower_case: true`` (ignored by DNABERT's own DNATokenizer) makes transformers'
    BertTokenizer lower-case every k-mer into [UNK]."""
    vocab = (DNABERT1 / "vocab.txt").read_text().splitlines()
    index = {t: i for i, t in enumerate(vocab)}
    published = BertTokenizer.from_pretrained(str(DNABERT1))
    cased = BertTokenizer.from_pretrained(str(DNABERT1), do_lower_case=False)
    for i in range(N_SEQUENCES):
        seq = _sequence(dnabert1_ref, i)
        kmers = [seq[j : j + 6] for j in range(len(seq) - 5)]
        ids = [index["[CLS]"], *(index.get(k, index["[UNK]"]) for k in kmers), index["[SEP]"]]
        assert ids == dnabert1_ref[f"input_ids_{i}"].tolist()
        assert cased(" ".join(kmers))["input_ids"] == ids
        lowered = published(" ".join(kmers))["input_ids"]
        assert set(lowered[1:-1]) == {index["[UNK]"]}
    # the one N of sequence 1 is in 6 overlapping k-mers, each unknown
    assert _sequence(dnabert1_ref, 1).count("N") == 1
    assert dnabert1_ref["input_ids_1"].tolist().count(index["[UNK]"]) == 6


def test_dnabert1_classifier_and_lora(dnabert1_ref) -> None:
    model, new, unused = _classifier(DNABERT1, num_labels=3)
    assert type(model) is BertForSequenceClassification
    assert new == {"bert.pooler", "classifier"}  # MLM checkpoints have no pooler
    assert unused == {"cls"}
    for prefix, module in (("pooler.", model.bert.pooler), ("classifier.", model.classifier)):
        module.load_state_dict({k.removeprefix(prefix): torch.from_numpy(v)
                                for k, v in dnabert1_ref.items() if k.startswith(prefix)})
    for i in range(N_SEQUENCES):
        with torch.no_grad():
            logits = model(_ids(dnabert1_ref, i)).logits[0]
        expected = torch.from_numpy(dnabert1_ref[f"cls_logits_{i}"])
        assert (logits - expected).abs().max() < TOLERANCE
    _lora_backward(model, _ids(dnabert1_ref, 0), ["bert.pooler", "classifier"])
