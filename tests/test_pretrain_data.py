"""Streaming token shards: packing without padding, crops, shuffling, ranks, exact resume."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dnalm.errors import ConfigError
from dnalm.train.data import StreamConfig, TokenStream, list_shards
from dnalm.train.toydata import TOKEN_SCHEMA, write_token_shards

CLS, SEP, PAD = 2, 3, 0


@pytest.fixture(scope="module")
def rows() -> list[np.ndarray]:
    """300 rows of 1..300 tokens whose ids are all distinct (so every token is traceable)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=300)
    ids = np.arange(5, 5 + lengths.sum())
    return np.split(ids, np.cumsum(lengths)[:-1])


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, rows: list[np.ndarray]) -> Path:
    out = tmp_path_factory.mktemp("tokens") / "train"
    table_rows = [("c", i, i + 1, r.tolist()) for i, r in enumerate(rows)]
    write_token_shards(out, table_rows, rows_per_shard=70, row_group_size=16)
    return out


def _config(**changes) -> StreamConfig:
    base = dict(max_length=64, batch_size=4, cls_id=CLS, sep_id=SEP, pad_id=PAD,
                shuffle=False, repeat=False, shuffle_window=32, min_piece=1)
    return StreamConfig(**{**base, **changes})


def _sequences(stream: TokenStream) -> list[np.ndarray]:
    out = []
    while (seq := stream.next_sequence()) is not None:
        out.append(seq)
    return out


def test_packing_fills_sequences_and_keeps_every_token_in_order(
    shard_dir: Path, rows: list[np.ndarray]
) -> None:
    seqs = _sequences(TokenStream(list_shards([shard_dir]), _config()))
    assert all(len(s) == 64 for s in seqs[:-1])  # no padding except in the very last one
    assert all(s[0] == CLS for s in seqs)
    content = np.concatenate([s[s >= 5] for s in seqs])
    assert np.array_equal(content, np.concatenate(rows))
    batches = list(TokenStream(list_shards([shard_dir]), _config()))
    assert all(int(b["attention_mask"].sum()) == b["attention_mask"].numel() for b in batches[:-1])


def test_long_chunks_are_split_at_a_random_phase_or_cropped(shard_dir: Path) -> None:
    shards = list_shards([shard_dir])
    split = _sequences(TokenStream(shards, _config(packing=False)))
    assert max(len(s) for s in split) == 64
    assert all(s[0] == CLS and s[-1] == SEP for s in split)
    cropped = _sequences(TokenStream(shards, _config(packing=False, long_chunks="crop")))
    assert len(cropped) == 300  # one piece per row
    assert len(split) > len(cropped)
    for seq in cropped:
        body = seq[1:-1]
        assert np.array_equal(body, np.arange(body[0], body[0] + len(body)))  # contiguous
    batch = next(iter(TokenStream(shards, _config(packing=False))))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == PAD).all()


def test_shuffling_permutes_rows_within_each_epoch(shard_dir: Path, rows: list[np.ndarray]) -> None:
    config = _config(packing=False, shuffle=True, max_length=400, seed=3)
    epoch0 = [int(s[1]) for s in _sequences(TokenStream(list_shards([shard_dir]), config))]
    firsts = [int(r[0]) for r in rows]
    assert sorted(epoch0) == sorted(firsts)
    assert epoch0 != firsts
    repeat = TokenStream(list_shards([shard_dir]), _config(packing=False, shuffle=True,
                                                           max_length=400, seed=3, repeat=True))
    two_epochs = [int(repeat.next_sequence()[1]) for _ in range(600)]
    assert two_epochs[:300] == epoch0
    assert two_epochs[300:] != epoch0 and sorted(two_epochs[300:]) == sorted(firsts)


def test_ranks_see_disjoint_shares_of_the_data(shard_dir: Path, rows: list[np.ndarray]) -> None:
    seen = []
    for rank in range(2):
        config = _config(packing=False, shuffle=True, max_length=400, rank=rank, world_size=2)
        seen.append({int(s[1]) for s in _sequences(TokenStream(list_shards([shard_dir]), config))})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {int(r[0]) for r in rows}
    assert abs(len(seen[0]) - len(seen[1])) <= 10


def test_resumed_stream_yields_the_same_batches(shard_dir: Path) -> None:
    config = _config(shuffle=True, repeat=True, seed=11)
    shards = list_shards([shard_dir])
    stream = TokenStream(shards, config)
    for _ in range(170):  # an epoch is ~180 batches: the next 40 cross into epoch 1
        stream.next_batch()
    assert stream.epoch == 0
    buffer = io.BytesIO()
    torch.save(stream.state_dict(), buffer)
    expected = [stream.next_batch()["input_ids"] for _ in range(40)]
    resumed = TokenStream(shards, config)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    got = [resumed.next_batch()["input_ids"] for _ in range(40)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert stream.epoch >= 1


def test_memory_is_bounded_by_the_window_not_the_data(shard_dir: Path) -> None:
    stream = TokenStream(list_shards([shard_dir]), _config(shuffle=True, repeat=True))
    for _ in range(50):
        stream.next_batch()
        assert stream._shard is None or len(stream._shard._cache) <= 3  # row groups of 16 rows


def test_bad_shards_are_reported(tmp_path: Path, shard_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        list_shards([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no training token shards \(part-\*\.parquet\)"):
        list_shards([tmp_path / "empty"], what="training token")
    stream = TokenStream(list_shards([shard_dir]), _config(vocab_size=100))
    with pytest.raises(ConfigError, match="outside the tokenizer's vocabulary"):
        stream.next_batch()
    odd = tmp_path / "odd"
    odd.mkdir()
    pq.write_table(pa.table({"sequence": ["ACGT"]}), odd / "part-00000.parquet")
    with pytest.raises(ConfigError, match="no 'input_ids' column"):
        TokenStream(list_shards([odd]), _config()).next_batch()
    state = TokenStream(list_shards([shard_dir]), _config()).state_dict()
    with pytest.raises(ConfigError, match="token shards differ"):
        TokenStream(list_shards([shard_dir, odd]), _config()).load_state_dict(state)


def test_empty_shards_are_skipped_but_no_rows_at_all_is_an_error(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [("c", 0, 50, list(range(5, 55)))])
    pq.write_table(TOKEN_SCHEMA.empty_table(), tmp_path / "part-00001.parquet")  # empty split
    stream = TokenStream(list_shards([tmp_path]), _config(max_length=16, repeat=True))
    batches = [stream.next_batch() for _ in range(10)]
    assert all(b["input_ids"].shape == (4, 16) for b in batches) and stream.epoch >= 2
    (tmp_path / "part-00000.parquet").unlink()
    with pytest.raises(ConfigError, match="hold no rows for rank 0 of 1"):
        TokenStream(list_shards([tmp_path]), _config(repeat=True)).next_batch()
