"""Tokenizers: Hugging Face compatibility, exact tokens and offsets, shards mapped to the genome."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
from transformers import AutoTokenizer

from dnalm.chunks import SPLITS, ChunkConfig, SplitConfig, chunk_genome
from dnalm.errors import ConfigError, DnalmError, InputFormatError
from dnalm.fasta import prepare_genome
from dnalm.io import list_parts
from dnalm.tokenizers import (
    SPECIAL_TOKENS,
    TOKEN_SCHEMA,
    UNK_ID,
    build_tokenizer,
    kmer_text,
    load_tokenizer,
    tokenize_shards,
    tokenize_table,
    tokenizer_stats,
)
from tests.conftest import write_fasta

COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
KINDS = {
    "bpe": {"kind": "bpe", "vocab_size": 120, "sample_bp": 20_000, "max_piece_length": 400},
    "kmer3": {"kind": "kmer", "k": 3},
    "kmer4": {"kind": "kmer", "k": 4},
    "kmer5": {"kind": "kmer", "k": 5},
    "kmer6": {"kind": "kmer", "k": 6},
    "nt6": {"kind": "nt_kmer"},
    "nt3": {"kind": "nt_kmer", "k": 3},
    "char": {"kind": "char"},
}


def _random_dna(rng: random.Random, n: int, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> tuple[Path, Path]:
    """A small genome with soft-masked bases, an N run and a short contig; its chunk directory.

    Chunks have random lengths, 50% N allowed (so chunks hold N) and reverse-complement copies.
    """
    tmp = tmp_path_factory.mktemp("genome")
    rng = random.Random(7)
    first = (_random_dna(rng, 9000) + _random_dna(rng, 1500).lower() + "N" * 300
             + _random_dna(rng, 9000) + "NACGTN" + _random_dna(rng, 4000))
    records = {"chrA": first, "chrB": _random_dna(rng, 6000), "chrM": _random_dna(rng, 433)}
    fasta = tmp / "genome.fa.gz"
    prepare_genome(write_fasta(tmp / "src.fa", records), fasta, tmp / "stats.parquet",
                   genome_id="g1")
    chunks = tmp / "chunks"
    chunk_genome(fasta, chunks, genome_id="g1",
                 chunk_cfg=ChunkConfig(length=(150, 700), min_length=20, max_n_fraction=0.5,
                                       reverse_complement=True, shard_bp=5000),
                 split_cfg=SplitConfig(region_size=3000, seed=1), threads=1)
    return fasta, chunks


@pytest.fixture(scope="module")
def tokenizers(genome, tmp_path_factory) -> dict[str, Path]:
    """One built tokenizer directory per entry of KINDS."""
    tmp = tmp_path_factory.mktemp("tokenizers")
    train_parts = list_parts(genome[1] / "train")
    out = {}
    for name, spec in KINDS.items():
        build_tokenizer(spec, tmp / name, train_parts=train_parts, seed=3)
        out[name] = tmp / name
    return out


def _hf_ids(directory: Path, sequence: str, k: int | None = None) -> list[int]:
    hf = AutoTokenizer.from_pretrained(str(directory))
    text = kmer_text(sequence, k) if k else sequence
    return hf(text, add_special_tokens=False)["input_ids"]


# --- Hugging Face compatibility --------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_autotokenizer_loads_every_kind_with_fixed_specials(tokenizers, name: str) -> None:
    hf = AutoTokenizer.from_pretrained(str(tokenizers[name]))
    assert [hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id,
            hf.mask_token_id] == [0, 1, 2, 3, 4]
    assert hf.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    k = json.loads((tokenizers[name] / "dnalm_tokenizer.json").read_text())["k"]
    text = kmer_text("ACGTTGCA", k) if name.startswith("kmer") else "ACGTTGCA"
    ids = hf(text)["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and UNK_ID not in ids  # BERT-style [CLS] ... [SEP]
    config = json.loads((tokenizers[name] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    meta = json.loads((tokenizers[name] / "dnalm_tokenizer.json").read_text())
    assert meta["vocab_size"] == len(hf)


@pytest.mark.parametrize("name", ["bpe", "char", "nt6", "nt3"])
def test_decode_round_trip_is_upper_case(tokenizers, name: str) -> None:
    hf = AutoTokenizer.from_pretrained(str(tokenizers[name]))
    rng = random.Random(1)
    for sequence in ["acgtNNNNacgtACGT", _random_dna(rng, 2000, "ACGTNacgtn"), "N", "a"]:
        ids = hf(sequence)["input_ids"]
        assert hf.decode(ids, skip_special_tokens=True) == sequence.upper()
        assert UNK_ID not in ids


def test_kmer_decode_gives_back_the_kmer_text(tokenizers) -> None:
    hf = AutoTokenizer.from_pretrained(str(tokenizers["kmer3"]))
    ids = hf(kmer_text("acgTA", 3), add_special_tokens=False)["input_ids"]
    assert hf.decode(ids) == "ACG CGT GTA"


@pytest.mark.parametrize("name", list(KINDS))
def test_fast_path_ids_equal_hugging_face_ids(tokenizers, name: str) -> None:
    tok = load_tokenizer(tokenizers[name])
    rng = random.Random(name)
    sequences = [_random_dna(rng, rng.randint(0, 300), "ACGTNacgtnXR-") for _ in range(30)]
    sequences += ["", "A", "NNNNNNNN", "ACGTACGTNACG", "acgtAcgtCC", "ACGTéACGT*"]
    batch = tok.encode_batch(sequences)
    hf = AutoTokenizer.from_pretrained(str(tokenizers[name]))
    for row, sequence in enumerate(sequences):
        ids, starts, ends = batch.row(row)
        text = kmer_text(sequence, tok.k) if tok.kind == "kmer" else sequence
        encoding = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        assert ids.tolist() == encoding["input_ids"], sequence
        if tok.kind != "kmer":  # k-mer text offsets count the spaces
            assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [
                tuple(span) for span in encoding["offset_mapping"]]


# --- exact tokens and offsets ----------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_kmer_token_i_is_bases_i_to_i_plus_k(tokenizers, k: int) -> None:
    tok = load_tokenizer(tokenizers[f"kmer{k}"])
    sequences = ["ACGTTGCAAGTCNAGGTacgtTTTTGN", "ACGTACG"[: k - 1], "ACGTACG"[:k], "",
                 "NNNNNNNNNN", "GATTACA" * 5]
    batch = tok.encode_batch(sequences)
    for row, sequence in enumerate(sequences):
        ids, starts, ends = batch.row(row)
        assert len(ids) == max(0, len(sequence) - k + 1)  # windows never cross into the next row
        assert starts.tolist() == list(range(len(ids)))
        assert (ends - starts == k).all()
        for i, token in enumerate(tok.id_to_token(ids)):
            window = sequence[i : i + k].upper()
            assert token == (window if set(window) <= set("ACGT") else "[UNK]")


def _nt_reference(sequence: str, k: int) -> list[str]:
    """The NT rule written the obvious way: split on N, k-mers from the left, leftovers single."""
    tokens: list[str] = []
    for i, run in enumerate(sequence.upper().split("N")):
        if i:
            tokens.append("N")
        full = len(run) // k * k
        tokens += [run[j : j + k] for j in range(0, full, k)] + list(run[full:])
    return tokens


def test_nt_kmer_rule_worked_examples(tokenizers) -> None:
    tok = load_tokenizer(tokenizers["nt6"])
    examples = {
        "ACGTACGTNACG": ["ACGTAC", "G", "T", "N", "A", "C", "G"],
        "ACGTACGTACGTA": ["ACGTAC", "GTACGT", "A"],
        "NNACGTAC": ["N", "N", "ACGTAC"],
        "acgtacN": ["ACGTAC", "N"],
        "ACGTA": ["A", "C", "G", "T", "A"],
        "": [],
    }
    for sequence, expected in examples.items():
        ids, starts, ends = tok.encode(sequence).row(0)
        assert tok.id_to_token(ids) == expected
        assert _nt_reference(sequence, 6) == expected
        assert _hf_ids(tokenizers["nt6"], sequence) == ids.tolist()
        assert "".join(sequence[s:e] for s, e in zip(starts, ends, strict=True)).upper() == \
            "".join(expected)


@pytest.mark.parametrize("name", ["nt6", "nt3"])
def test_nt_kmer_matches_reference_rule_on_random_batches(tokenizers, name: str) -> None:
    tok = load_tokenizer(tokenizers[name])
    rng = random.Random(5)
    for _ in range(40):
        rows = [_random_dna(rng, rng.choice([0, 1, 5, 6, 7, 13, 40]), "ACGTACGTACGTNn")
                for _ in range(rng.randint(1, 6))]
        batch = tok.encode_batch(rows)
        for row, sequence in enumerate(rows):
            ids, starts, ends = batch.row(row)
            assert tok.id_to_token(ids) == _nt_reference(sequence, tok.k)
            assert starts.tolist() == [0, *ends.tolist()][: len(starts)]  # tokens tile the sequence
            assert (int(ends[-1]) if len(ends) else 0) == len(sequence)


def test_bpe_offsets_tile_the_sequence(tokenizers) -> None:
    tok = load_tokenizer(tokenizers["bpe"])
    rng = random.Random(2)
    sequences = [_random_dna(rng, n, "ACGTNacgt") for n in (0, 1, 17, 999, 5000)]
    batch = tok.encode_batch(sequences)
    for row, sequence in enumerate(sequences):
        ids, starts, ends = batch.row(row)
        assert starts.tolist() == [0, *ends.tolist()][: len(starts)]
        assert "".join(tok.id_to_token(ids)) == sequence.upper()
        assert "".join(sequence[s:e] for s, e in zip(starts, ends, strict=True)) == sequence


def test_bpe_falls_back_to_library_offsets_when_lengths_disagree(tokenizers) -> None:
    """If token lengths ever failed to add up (exotic input), offsets come from the library."""
    tok = load_tokenizer(tokenizers["bpe"])
    sequences = ["ACGTTGCANNACGT", "GATTACA"]
    expected = tok.encode_batch(sequences)
    tok._token_bases = tok._token_bases + 1  # break the length table on purpose
    fallback = tok.encode_batch(sequences)
    for name in ("ids", "starts", "ends", "row_offsets"):
        assert np.array_equal(getattr(fallback, name), getattr(expected, name))


def test_unknown_characters(tokenizers) -> None:
    char = load_tokenizer(tokenizers["char"])
    assert char.encode("ACxGT").ids.tolist() == [5, 6, UNK_ID, 7, 8]
    kmer = load_tokenizer(tokenizers["kmer3"])
    assert kmer.id_to_token(kmer.encode("AACXGTT").ids) == ["AAC", "[UNK]", "[UNK]", "[UNK]",
                                                           "GTT"]
    nt = load_tokenizer(tokenizers["nt3"])
    assert nt.id_to_token(nt.encode("ACGTX-ACG").ids) == ["ACG", "T", "[UNK]", "[UNK]", "ACG"]
    bpe = load_tokenizer(tokenizers["bpe"])
    ids, _, ends = bpe.encode("ACGT?é ACGT").row(0)
    assert ids.tolist().count(UNK_ID) == 3  # one [UNK] per unknown character, offsets intact
    assert ends[-1] == len("ACGT?é ACGT")
    for name in ("char", "nt6", "kmer4"):  # non-ASCII counts as one character, like HF
        tok = load_tokenizer(tokenizers[name])
        k = tok.k if tok.kind == "kmer" else None
        assert tok.encode("ACGTéACGT").ids.tolist() == _hf_ids(tokenizers[name], "ACGTéACGT", k)


@pytest.mark.parametrize("name", list(KINDS))
def test_empty_and_very_long_sequences(tokenizers, name: str) -> None:
    tok = load_tokenizer(tokenizers[name])
    long = _random_dna(random.Random(0), 200_000, "ACGTTGCAN")
    batch = tok.encode_batch(pa.array(["", long, ""]))
    assert [len(batch.row(i)[0]) for i in range(3)] == [0, batch.num_tokens, 0]
    _, starts, ends = batch.row(1)
    assert starts[0] == 0 and ends[-1] == len(long)  # no cropping, whatever the length
    table = tokenize_table(tok, pa.table({"genome": ["g"], "contig": ["c"], "start": [5],
                                          "end": [5], "strand": ["+"], "sequence": [""]}))
    assert table.schema == TOKEN_SCHEMA
    assert table.column("input_ids").to_pylist() == [[]]


def test_kmer_text() -> None:
    assert kmer_text("ACGTA", 3) == "ACG CGT GTA"
    assert kmer_text("acgt", 4) == "acgt"
    assert kmer_text("ACG", 4) == ""
    assert kmer_text("AéGTA", 3) == "AéG éGT GTA"
    with pytest.raises(InputFormatError, match="whitespace"):
        kmer_text("ACG TA", 3)


# --- shards ----------------------------------------------------------------------------------


def _token_text_on_genome(fasta: pysam.FastaFile, contig: str, strand: str, start: int,
                          end: int, s: int, e: int) -> str:
    """The bases a token covers, read from the genome with the documented formula."""
    if strand == "+":
        return fasta.fetch(contig, start + s, start + e)
    return fasta.fetch(contig, end - e, end - s)[::-1].translate(COMPLEMENT)


@pytest.mark.parametrize("name", ["bpe", "char", "nt6", "kmer5"])
def test_token_shards_map_back_to_the_genome(genome, tokenizers, tmp_path: Path,
                                             name: str) -> None:
    fasta_path, chunks = genome
    out = tmp_path / "tokens"
    totals = tokenize_shards(tokenizers[name], chunks, out, threads=2)
    tok = load_tokenizer(tokenizers[name])
    strands, checked = set(), 0
    with pysam.FastaFile(str(fasta_path)) as fasta:
        for split in SPLITS:
            chunk_parts = list_parts(chunks / split)
            assert [p.name for p in list_parts(out / split)] == [p.name for p in chunk_parts]
            for part in list_parts(out / split):
                table = pq.read_table(part)
                assert table.schema == TOKEN_SCHEMA
                for row in table.to_pylist():
                    strands.add(row["strand"])
                    tokens = tok.id_to_token(row["input_ids"])
                    for token, s, e in zip(tokens, row["token_starts"], row["token_ends"],
                                           strict=True):
                        bases = _token_text_on_genome(fasta, row["contig"], row["strand"],
                                                      row["start"], row["end"], s, e).upper()
                        assert token == bases or (token == "[UNK]" and "N" in bases)
                        checked += 1
    assert strands == {"+", "-"} and checked == sum(t["tokens"] for t in totals.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == totals and summary["kind"] == tok.kind


def test_token_shards_same_for_any_thread_count_and_empty_split(genome, tokenizers,
                                                                 tmp_path: Path) -> None:
    chunks = genome[1]
    one = tokenize_shards(tokenizers["nt6"], chunks, tmp_path / "one", threads=1)
    two = tokenize_shards(tokenizers["nt6"], chunks, tmp_path / "two", threads=2)
    assert one == two
    for split in SPLITS:
        for a, b in zip(list_parts(tmp_path / "one" / split), list_parts(tmp_path / "two" / split),
                        strict=True):
            assert pq.read_table(a).equals(pq.read_table(b))
    # a split without chunks still gets a (schema-only) shard
    bare = tmp_path / "bare"
    (bare / "train").mkdir(parents=True)
    pq.write_table(pq.read_table(list_parts(chunks / "train")[0]),
                   bare / "train" / "part-00003.parquet")
    (bare / "test").mkdir()
    tokenize_shards(tokenizers["char"], bare, tmp_path / "bare_tokens", threads=2)
    empty = pq.read_table(tmp_path / "bare_tokens" / "test" / "part-00000.parquet")
    assert empty.num_rows == 0 and empty.schema == TOKEN_SCHEMA
    assert (tmp_path / "bare_tokens" / "train" / "part-00003.parquet").exists()
    assert not (tmp_path / "bare_tokens" / "validation").exists()


def test_token_shards_bad_inputs(genome, tokenizers, tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no split directories"):
        tokenize_shards(tokenizers["char"], tmp_path, tmp_path / "out")
    with pytest.raises(InputFormatError, match="no tokenizer found"):
        tokenize_shards(tmp_path, genome[1], tmp_path / "out")
    (tmp_path / "bad" / "train").mkdir(parents=True)
    pq.write_table(pa.table({"sequence": ["ACGT"]}),
                   tmp_path / "bad" / "train" / "part-00000.parquet")
    with pytest.raises(InputFormatError, match="missing column"):
        tokenize_shards(tokenizers["char"], tmp_path / "bad", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written is left behind


# --- BPE training, pretrained, specs ---------------------------------------------------------


def test_bpe_sample_is_seeded_exact_and_spans_genomes(genome, tmp_path: Path) -> None:
    rng = random.Random(11)
    src = write_fasta(tmp_path / "other.fa", {"x": "ACGGT" * 2000 + _random_dna(rng, 5000)})
    prepare_genome(src, tmp_path / "other.fa.gz", tmp_path / "s.parquet", genome_id="g2")
    chunk_genome(tmp_path / "other.fa.gz", tmp_path / "other", genome_id="g2",
                 chunk_cfg=ChunkConfig(length=500), split_cfg=SplitConfig(region_size=3000))
    parts = list_parts(genome[1] / "train") + list_parts(tmp_path / "other" / "train")
    spec = {"kind": "bpe", "vocab_size": 60, "sample_bp": 12_345, "max_piece_length": 300}
    first = build_tokenizer(spec, tmp_path / "a", train_parts=parts, seed=1)
    build_tokenizer(spec, tmp_path / "b", train_parts=parts, seed=1)
    build_tokenizer(spec, tmp_path / "c", train_parts=parts, seed=2)
    assert first["training"]["sample_bases"] == 12_345
    assert first["training"]["train_parts"] == len(parts)
    assert first["vocab_size"] == 60

    def vocab(name: str) -> dict:
        return json.loads((tmp_path / name / "tokenizer.json").read_text())["model"]

    assert vocab("a") == vocab("b") and vocab("a") != vocab("c")
    all_bp = build_tokenizer({**spec, "sample_bp": 10**9}, tmp_path / "d", train_parts=parts)
    assert all_bp["training"]["sample_bases"] == all_bp["training"]["available_bases"]
    with pytest.raises(DnalmError, match="none were given"):
        build_tokenizer(spec, tmp_path / "e", train_parts=[])


def test_pretrained_tokenizer_directory_is_accepted(genome, tmp_path: Path) -> None:
    """A foreign HF tokenizer (own specials, whitespace pre-tokenizer, WordPiece) is re-saved."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "A": 4, "C": 5, "G": 6, "T": 7,
             "N": 8, "##A": 9, "##C": 10, "##G": 11, "##T": 12, "##N": 13, "AC": 14, "##GT": 15}
    raw = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(tmp_path / "src")
    meta = build_tokenizer({"kind": "pretrained", "path": str(tmp_path / "src")},
                           tmp_path / "pre")
    assert meta["special_tokens"] == {"<pad>": 0, "<unk>": 1} and meta["vocab_size"] == 16
    tok = load_tokenizer(tmp_path / "pre")
    assert tok.special_ids == {"pad": 0, "unk": 1, "cls": None, "sep": None, "mask": None,
                               "bos": 2, "eos": 3}
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "pre"))
    sequence = "ACGTACNTT"
    encoding = hf(sequence, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts, ends = tok.encode(sequence).row(0)
    assert ids.tolist() == encoding["input_ids"]
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [
        tuple(o) for o in encoding["offset_mapping"]]
    totals = tokenize_shards(tmp_path / "pre", genome[1], tmp_path / "tokens", threads=1)
    assert totals["train"]["tokens"] > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "wordpiece"}, "unknown tokenizer kind 'wordpiece'"),
        ({"kind": "kmer", "k": 7}, "k must be between 3 and 6, not 7"),
        ({"kind": "kmer"}, "needs k"),
        ({"kind": "nt_kmer", "k": 1}, "k must be between 2 and 8"),
        ({"kind": "bpe", "vocab_size": True}, "vocab_size must be an integer"),
        ({"kind": "bpe", "vocab_size": 8}, "vocab_size must be between"),
        ({"kind": "bpe", "vocab_sise": 4096}, "unknown key"),
        ({"kind": "char", "k": 3}, "unknown key"),
        ({"kind": "pretrained"}, "needs path"),
        ({"kind": "pretrained", "path": "/nonexistent/dnabert2"}, "not a directory"),
        ("bpe", "must be a mapping"),
    ],
)
def test_bad_specs_raise_config_errors(tmp_path: Path, spec, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_tokenizer(spec, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_pretrained_directory_without_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer found"):
        build_tokenizer({"kind": "pretrained", "path": str(tmp_path / "empty")}, tmp_path / "t")


def test_model_max_length_is_written(tmp_path: Path) -> None:
    build_tokenizer({"kind": "char", "model_max_length": 512}, tmp_path / "t")
    assert AutoTokenizer.from_pretrained(str(tmp_path / "t")).model_max_length == 512


# --- statistics ------------------------------------------------------------------------------


def test_tokenizer_stats(genome, tokenizers, tmp_path: Path) -> None:
    parts = list_parts(genome[1] / "validation")
    results = {}
    for name in ("bpe", "char", "kmer6", "nt6"):
        stats = tokenizer_stats(tokenizers[name], parts, tmp_path / f"{name}.parquet",
                                tmp_path / f"{name}.png")
        row = pq.read_table(tmp_path / f"{name}.parquet").to_pylist()
        assert len(row) == 1 and row[0]["tokens"] == stats["tokens"] > 0
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 0 < stats["vocab_usage"] <= 1
        assert stats["longest_token_lengths"] == sorted(stats["longest_token_lengths"],
                                                        reverse=True)
        assert sum(stats["token_length_counts"]) == stats["tokens"]
        results[name] = stats
    bases = results["char"]["bases"]
    forward = [row["sequence"] for p in parts for row in pq.read_table(p).to_pylist()
               if row["strand"] == "+"]
    assert bases == sum(map(len, forward)) and results["char"]["sequences"] == len(forward)
    assert results["char"]["mean_token_length_bp"] == 1.0 == results["char"]["tokens_per_bp"]
    assert results["kmer6"]["mean_token_length_bp"] == 6.0
    assert results["bpe"]["mean_token_length_bp"] == pytest.approx(results["bpe"]["bp_per_token"])
    assert results["bpe"]["tokens_per_bp"] < 1
    assert len(results["bpe"]["longest_tokens"]) == 20
    assert np.isclose(results["nt6"]["tokens_per_bp"], results["nt6"]["tokens"] / bases)
