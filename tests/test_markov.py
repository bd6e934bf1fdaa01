"""Markov baselines (nats per base) and the validation loss per base they are compared with."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dnalm.errors import ConfigError
from dnalm.models.presets import load_tokenizer_info
from dnalm.train import toydata
from dnalm.train.config import PretrainConfig
from dnalm.train.distributed import DistEnv
from dnalm.train.evaluation import bases_per_token, evaluate
from dnalm.train.markov import MARKOV_SCHEMA, _slices, markov_baselines, markov_table

TRAIN = ["ACGTTGCAacgtNNACGGTACCAGT", "TTTTACGATCGATCGGGCTA", "GATTACA", "AC", ""]
VALIDATION = ["acgTTGCANACGTAGCTAGGCAT", "CCCGATTTAGC", "GGNAT"]


def brute_force(train: list[str], validation: list[str], k: int, max_order: int) -> tuple:
    """-mean log p(base | k previous bases), add-one smoothing, one base at a time."""
    counts: Counter[tuple[str, str]] = Counter()
    contexts: Counter[str] = Counter()
    n_train = 0
    for seq in (s.upper() for s in train):
        for i in range(k, len(seq)):
            window = seq[i - k : i + 1]
            if all(c in "ACGT" for c in window):
                counts[window[:-1], window[-1]] += 1
                contexts[window[:-1]] += 1
                n_train += 1
    nats, n_val = 0.0, 0
    for seq in (s.upper() for s in validation):
        for i in range(max_order, len(seq)):
            if all(c in "ACGT" for c in seq[i - max_order : i + 1]):
                context = seq[i - k : i]
                nats -= math.log((counts[context, seq[i]] + 1) / (contexts[context] + 4))
                n_val += 1
    return nats / n_val, n_train, n_val


@pytest.mark.parametrize("k", [0, 1, 2])
def test_markov_equals_a_brute_force_computation(k: int) -> None:
    table = markov_table([TRAIN[:2], TRAIN[2:]], [VALIDATION], max_order=2).to_pylist()
    nats, n_train, n_val = brute_force(TRAIN, VALIDATION, k, max_order=2)
    row = table[k]
    assert row["k"] == k
    assert row["nats_per_base"] == pytest.approx(nats, rel=1e-12)
    assert row["bits_per_base"] == pytest.approx(nats / math.log(2), rel=1e-12)
    assert (row["n_train_bases"], row["n_val_bases"]) == (n_train, n_val)


def _markov_chain(n: int, seed: int = 0) -> tuple[str, float]:
    """A sequence of an order-1 chain and its entropy rate in nats per base."""
    transition = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1],
                           [0.25, 0.25, 0.25, 0.25], [0.4, 0.1, 0.1, 0.4]])
    uniform = np.random.default_rng(seed).random(n).tolist()
    cumulative = transition.cumsum(axis=1)[:, :3].tolist()
    state, out = 0, []
    for u in uniform:
        state = bisect.bisect(cumulative[state], u)
        out.append(state)
    eigvals, eigvecs = np.linalg.eig(transition.T)
    stationary = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1))])
    stationary /= stationary.sum()
    rate = -float((stationary[:, None] * transition * np.log(transition)).sum())
    return "".join("ACGT"[i] for i in out), rate


def test_order_one_chain_is_fitted_to_its_entropy_rate(tmp_path: Path) -> None:
    seq, rate = _markov_chain(240_000)
    for split, part in {"train": seq[:200_000], "validation": seq[200_000:]}.items():
        (tmp_path / "g/chunks" / split).mkdir(parents=True)
        chunks = [part[i : i + 1000] for i in range(0, len(part), 1000)]
        pq.write_table(pa.table({"sequence": chunks}),
                       tmp_path / "g/chunks" / split / "part-00000.parquet")
    rows = markov_baselines([tmp_path / "g/chunks"]).to_pylist()
    assert [r["k"] for r in rows] == [0, 1, 2, 3, 4, 5]
    nats = [r["nats_per_base"] for r in rows]
    assert nats[1] < nats[0] - 0.1
    assert nats[1] == pytest.approx(rate, abs=0.01)
    assert all(v == pytest.approx(rate, abs=0.02) for v in nats[2:])  # nothing more to learn
    assert rows[0]["n_val_bases"] == 40 * (1000 - 5)


def test_markov_without_validation_bases_is_a_one_line_error(tmp_path: Path) -> None:
    for split, chunks in {"train": ["ACGT" * 10], "validation": ["NNNN"]}.items():
        (tmp_path / split).mkdir()
        pq.write_table(pa.table({"sequence": chunks}), tmp_path / split / "part-00000.parquet")
    with pytest.raises(ConfigError, match="no ACGT bases"):
        markov_baselines([tmp_path])
    with pytest.raises(ConfigError, match="does not exist"):
        markov_baselines([tmp_path / "missing"])
    assert markov_table([], [], max_order=1).schema == MARKOV_SCHEMA


def _token_shard(path: Path, rows: list[tuple[list[int], list[int], list[int]]],
                 row_group_size: int = 64) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: [list(r[i]) for r in rows]
                      for i, name in enumerate(("input_ids", "token_starts", "token_ends"))},
                     schema=pa.schema([(n, pa.list_(pa.int32())) for n in
                                       ("input_ids", "token_starts", "token_ends")]))
    pq.write_table(table, path / "part-00000.parquet", row_group_size=row_group_size)
    return path / "part-00000.parquet"


def test_bases_per_token_tiling_and_overlapping_kmers(tmp_path: Path) -> None:
    # tiling (BPE-like): each token stands for its span
    tiling = _token_shard(tmp_path / "bpe", [([5, 6, 7], [0, 2, 3], [2, 3, 6]), ([7], [0], [3])])
    table = bases_per_token([tiling], 10)
    assert table[[5, 6, 7]].tolist() == [2.0, 1.0, 3.0]
    assert table[9] == pytest.approx(9 / 4)  # never seen: the mean over all tokens
    # overlapping 3-mers of ACGTA then TACG: a chunk's first k-mer adds 3 bases, the others 1
    kmers = _token_shard(tmp_path / "kmer", [([5, 6, 7], [0, 1, 2], [3, 4, 5]),
                                             ([8, 5], [0, 1], [3, 4])])
    table = bases_per_token([kmers], 10)
    assert table[[5, 6, 7, 8]].tolist() == [2.0, 1.0, 1.0, 3.0]
    # reading stops after the row group that reaches max_tokens
    capped = _token_shard(tmp_path / "capped", [([5], [0], [1]), ([5], [0], [2])],
                          row_group_size=1)
    assert bases_per_token([capped], 10, max_tokens=1)[5] == 1.0
    assert bases_per_token([capped], 10)[5] == 1.5


class _ConstantLoss(torch.nn.Module):
    """Stands in for a masked LM whose loss is 2 nats per masked token."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> object:
        return type("Output", (), {"loss": torch.tensor(2.0)})()


def test_validation_loss_per_base_divides_by_the_bases_of_the_masked_tokens(
    tmp_path: Path,
) -> None:
    tok = load_tokenizer_info(toydata.write_char_tokenizer(tmp_path / "tok"))
    # every content token stands for 4 bases (as a BPE token of 4 bases would)
    rows = [(list(np.random.default_rng(i).integers(5, 9, 50)), list(range(0, 200, 4)),
             list(range(4, 204, 4))) for i in range(8)]
    shard = _token_shard(tmp_path / "val", rows)
    config = PretrainConfig.from_dict({"preset": "nt", "size": "tiny", "max_length": 32,
                                       "batch_size": 4, "val_max_batches": 3})
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    result = evaluate(_ConstantLoss(), [shard], config, tok, env)
    assert result["val_loss"] == pytest.approx(2.0)
    assert result["val_loss_per_base"] == pytest.approx(0.5)
    assert result["val_bases"] == pytest.approx(4 * result["val_tokens"])


def test_long_chunks_are_counted_in_slices_with_the_same_result() -> None:
    sequences = pa.array(["ACGTTGCA" * 50, "GATTACA" * 30, "", "CCGGTA" * 40])
    slices = list(_slices(sequences, max_bases=300))
    assert [len(x) for x in slices] == [1, 2, 1]  # a row longer than the cap stays whole
    whole = markov_table([sequences], [VALIDATION], max_order=3)
    assert markov_table(slices, [VALIDATION], max_order=3).equals(whole)
