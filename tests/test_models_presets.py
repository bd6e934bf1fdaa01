"""Model presets: every preset builds, trains a step, round-trips through save/from_pretrained,
and bad inputs are refused with one clear ConfigError."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from dnalm.errors import ConfigError
from dnalm.models import (
    PRESETS,
    build_model,
    count_parameters,
    load_masked_lm,
    position_limit,
    preset_config,
    read_model_meta,
    save_model_dir,
)
from dnalm.train import toydata

# The tokenizer each preset is exercised with (kmer for dnabert's span masking).
TOKENIZER_FOR = {"dnabert": "kmer3", "dnabert2": "char", "nt": "nt_kmer3", "gena": "char"}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        "char": toydata.write_char_tokenizer(root / "char"),
        "kmer3": toydata.write_kmer_tokenizer(root / "kmer3", 3),
        "nt_kmer3": toydata.write_kmer_tokenizer(root / "nt_kmer3", 3, overlapping=False),
    }


def _batch(vocab: int, length: int, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3
    labels = torch.full_like(ids, -100)
    labels[:, 1::6] = ids[:, 1::6]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_builds_trains_and_round_trips(
    preset: str, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    tok_dir = tokenizers[TOKENIZER_FOR[preset]]
    # gena is checked at its real 4,096-token length; the others at a short one.
    length = 4096 if preset == "gena" else 64
    model = build_model(preset, "tiny", tok_dir, max_length=length, seed=0)
    assert type(model) is PRESETS[preset].model_class
    assert count_parameters(model) < 1_000_000
    vocab = len(AutoTokenizer.from_pretrained(str(tok_dir)))
    assert model.config.vocab_size == vocab
    assert model.config.pad_token_id == 0

    batch = _batch(vocab, length, batch=1 if preset == "gena" else 2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    if preset == "gena":  # no silent fallback to full attention at 4,096 tokens
        assert model.bert.attention_type == "block_sparse"

    save_model_dir(model, tok_dir, tmp_path / "m", {"preset": preset, "size": "tiny",
                                                     "max_length": length})
    loaded = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "m"))
    assert type(loaded) is type(model)
    model.eval()
    loaded.eval()
    probe = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**probe).logits, loaded(**probe).logits)
    assert AutoTokenizer.from_pretrained(str(tmp_path / "m")).mask_token_id == 4
    assert read_model_meta(tmp_path / "m")["preset"] == preset
    assert type(load_masked_lm(tmp_path / "m")) is type(model)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sizes_have_the_advertised_parameter_counts(preset: str, tmp_path: Path) -> None:
    # A 4,101-token 6-mer vocabulary, as the real presets would see; built on the meta device.
    overlapping = preset == "dnabert"
    tok = toydata.write_kmer_tokenizer(tmp_path / "k6", 6, overlapping=overlapping)
    counts = {}
    for size in ("tiny", "small", "base"):
        with torch.device("meta"):
            counts[size] = count_parameters(build_model(preset, size, tok))
    assert counts["tiny"] < 1_000_000
    assert 1_000_000 < counts["small"] < 20_000_000
    assert 80_000_000 < counts["base"] < 120_000_000


def test_esm_position_table_reserves_padding_rows(tokenizers: dict[str, Path]) -> None:
    config = preset_config("nt", "tiny", tokenizers["nt_kmer3"], max_length=100)
    assert config.max_position_embeddings == 101  # pad id 0 + 1
    assert position_limit(config) == 100


def test_short_gena_inputs_are_refused_not_silently_densified(
    tokenizers: dict[str, Path],
) -> None:
    with pytest.raises(ConfigError, match=r"block-sparse attention needs max_length > .* = 144"):
        build_model("gena", "tiny", tokenizers["char"], max_length=128)
    with pytest.raises(ConfigError, match="multiple of block_size 16"):
        build_model("gena", "tiny", tokenizers["char"], max_length=1000)


@pytest.mark.parametrize(
    ("preset", "tokenizer", "kwargs", "message"),
    [
        ("bert", "char", {}, "unknown model preset 'bert'; choose one of dnabert, dnabert2"),
        ("nt", "char", {"size": "huge"}, "unknown model size 'huge'"),
        ("nt", "kmer3", {}, "does not accept a 'kmer' tokenizer.*span masking"),
        ("dnabert", "char", {}, "preset 'dnabert' does not accept a 'char' tokenizer"),
        ("dnabert", "kmer3", {"max_length": 1024}, "above the dnabert preset's limit of 512"),
        ("nt", "char", {"max_length": 4}, "too short"),
        ("dnabert2", "char", {"overrides": {"hiden_size": 8}}, "unknown ModernBertConfig over"),
        ("dnabert2", "char", {"overrides": {"vocab_size": 5}}, "tokenizer has 10 tokens"),
        ("nt", "char", {"overrides": {"pad_token_id": 3}}, "read from the tokenizer"),
        ("nt", "char", {"overrides": {"hidden_size": 65}}, "not a multiple of num_attention"),
        ("nt", "char", {"overrides": {"hidden_size": "x"}}, "invalid nt config"),
    ],
)
def test_bad_inputs_raise_one_line_config_errors(
    tokenizers: dict[str, Path],
    preset: str,
    tokenizer: str,
    kwargs: dict,
    message: str,
) -> None:
    size = kwargs.pop("size", "tiny")
    with pytest.raises(ConfigError, match=message) as info:
        build_model(preset, size, tokenizers[tokenizer], **kwargs)
    assert "\n" not in str(info.value)


def test_tokenizer_directory_problems(tokenizers: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no dnalm_tokenizer\.json"):
        build_model("nt", "tiny", tmp_path)
    broken = toydata.write_char_tokenizer(tmp_path / "broken")
    (broken / "dnalm_tokenizer.json").write_text(json.dumps({"kind": "char", "vocab_size": 12}))
    with pytest.raises(ConfigError, match="vocab_size=12 but the tokenizer has 10"):
        build_model("nt", "tiny", broken)
    (broken / "dnalm_tokenizer.json").write_text(json.dumps({"kind": "words", "vocab_size": 10}))
    with pytest.raises(ConfigError, match="tokenizer kind 'words'"):
        build_model("nt", "tiny", broken)
    # a pretrained tokenizer whose vocabulary is not k-mers: nothing tells the span length
    no_k = toydata.write_char_tokenizer(tmp_path / "nok")
    (no_k / "dnalm_tokenizer.json").write_text(json.dumps({"kind": "pretrained", "k": None}))
    with pytest.raises(ConfigError, match=r"masks spans of k tokens but .* has no k"):
        build_model("dnabert", "tiny", no_k)


def test_build_model_is_seeded_and_leaves_global_rng_alone(tokenizers: dict[str, Path]) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("nt", "tiny", tokenizers["char"], seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_model("nt", "tiny", tokenizers["char"], seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_no_transformers_warnings_about_token_ids(
    tokenizers: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Every id the configs carry comes from the tokenizer (defaults would be out of range)."""
    with caplog.at_level(logging.WARNING):
        for preset in PRESETS:
            tok = tokenizers[TOKENIZER_FOR[preset]]
            preset_config(preset, "tiny", tok, max_length=256 if preset == "gena" else 64)
    assert "must be `None` or an integer within the vocabulary" not in caplog.text
