"""Pretraining in resumable jobs on the demo genome: the loss falls, jobs reproduce an uncut run,
raising total_steps appends jobs, and bad inputs fail at start-up."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForMaskedLM

from dnalm.cli import main
from dnalm.errors import ConfigError
from dnalm.fasta import read_all_sequences
from dnalm.train import toydata
from dnalm.train.config import PretrainConfig
from dnalm.train.pretrain import (
    evaluate_model_dir,
    existing_segments,
    finalize,
    run_segment,
)
from dnalm.train.toydata import encode_char, encode_kmers, random_chunks

DEMO = Path(__file__).resolve().parents[1] / "data/demo_chr20_hnf4a/chr20_42000001_44000000.fa.gz"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Char-tokenized shards of 300 kbp (train) and 40 kbp (validation) of the demo genome."""
    root = tmp_path_factory.mktemp("demo")
    seq = next(iter(read_all_sequences(DEMO).values()))
    paths = {"tok": toydata.write_char_tokenizer(root / "char"), "root": root}
    for split, (lo, hi) in {"train": (0, 300_000), "validation": (1_500_000, 1_540_000)}.items():
        rows = [("chr20", lo + a, lo + b, encode_char(seq[lo + a : lo + b]))
                for a, b in random_chunks(hi - lo, 70, 1000, seed=1)]
        paths[split] = root / "tokens" / split
        toydata.write_token_shards(paths[split], rows, rows_per_shard=150)
        # the same chunks as a chunk directory (sequence column), for the Markov baselines
        (root / "chunks" / split).mkdir(parents=True)
        sequences = [seq[lo + a : lo + b] for a, b in random_chunks(hi - lo, 70, 1000, seed=1)]
        pq.write_table(pa.table({"sequence": sequences}),
                       root / "chunks" / split / "part-00000.parquet")
    paths["chunks"] = root / "chunks"
    kmer_rows = [("chr20", 0, 500, encode_kmers(seq[:500], 3))]
    paths["kmer_train"] = root / "kmer_tokens"
    toydata.write_token_shards(paths["kmer_train"], kmer_rows)
    return paths


def _config(**changes) -> PretrainConfig:
    base = dict(preset="nt", size="tiny", max_length=64, batch_size=8, total_steps=6,
                steps_per_job=6, learning_rate=2e-3, warmup_steps=2, log_every=1,
                val_max_batches=2, seed=3)
    return PretrainConfig.from_dict({**base, **changes})


def _run(config: PretrainConfig, demo: dict[str, Path], out: Path, segment: int,
         previous: Path | None = None, **kwargs) -> dict:
    return run_segment(
        config,
        tokenizer_dir=kwargs.pop("tokenizer", demo["tok"]),
        train_dirs=[kwargs.pop("train", demo["train"])],
        validation_dirs=[demo["validation"]],
        segment=segment,
        previous_checkpoint=previous,
        out_dir=out / "segments" / str(segment),
        threads=1,
        gpus=0,
    )


def _weights(segment_dir: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForMaskedLM.from_pretrained(str(segment_dir))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _losses(segment_dirs: list[Path]) -> list[tuple[int, float, float, float]]:
    rows = []
    for d in segment_dirs:
        table = pq.read_table(d / "metrics.parquet").to_pylist()
        rows += [(r["step"], r["loss"], r["learning_rate"], r["grad_norm"])
                 for r in table if r["loss"] is not None]
    return rows


def test_tiny_model_pretrains_on_the_demo_genome(demo: dict[str, Path], tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    config = _config(preset="dnabert2", total_steps=30, steps_per_job=30, learning_rate=3e-3,
                     log_every=10, val_max_batches=6)
    with caplog.at_level("INFO", logger="dnalm.train.pretrain"):
        summary = _run(config, demo, tmp_path, 0)
    progress = [r.getMessage() for r in caplog.records if "steps:" in r.getMessage()]
    assert progress[-1].startswith("job 0 steps: 30/30 step (100%")
    assert 1 <= len(progress) <= 10  # every 10 %, at most one line a second
    assert sum("step 20: loss" in r.getMessage() for r in caplog.records) == 1
    assert summary["end_step"] == 30 and summary["tokens"] == 30 * 8 * 64  # packed: no padding
    result = finalize(tmp_path, existing_segments(tmp_path), chunk_dirs=[demo["chunks"]])
    assert result["initial_val_loss"] == pytest.approx(math.log(10), abs=0.3)  # 10-token vocab
    assert result["final_val_loss"] < result["initial_val_loss"] - 0.5
    # one base per character token: nats per base equal nats per token
    assert result["final_val_loss_per_base"] == pytest.approx(result["final_val_loss"])
    markov = pq.read_table(tmp_path / "markov.parquet").to_pylist()
    assert result["markov"] == markov and [r["k"] for r in markov] == [0, 1, 2, 3, 4, 5]
    assert all(1.0 < r["nats_per_base"] < math.log(4) + 0.01 for r in markov)
    assert markov[0]["n_train_bases"] > 250_000 and markov[0]["n_val_bases"] > 30_000
    stored = pq.read_schema(tmp_path / "metrics.parquet").metadata[b"dnalm.markov"]
    assert json.loads(stored) == markov
    metrics = pq.read_table(tmp_path / "metrics.parquet").to_pylist()
    assert metrics[-1]["val_loss_per_base"] == pytest.approx(metrics[-1]["val_loss"])
    assert [r["step"] for r in metrics] == [0, 10, 20, 30]
    assert all(r["tokens_per_s"] > 0 for r in metrics[1:])
    assert metrics[-1]["val_perplexity"] == pytest.approx(math.exp(metrics[-1]["val_loss"]))
    assert (tmp_path / "loss_curve.png").stat().st_size > 10_000
    model = AutoModelForMaskedLM.from_pretrained(str(tmp_path))  # final HF directory
    assert model.config.model_type == "modernbert"
    assert not model.config.sparse_prediction  # training-only switch, not saved
    assert json.loads((tmp_path / "dnalm_model.json").read_text())["step"] == 30
    again = evaluate_model_dir(tmp_path, [demo["validation"]], batch_size=8, max_batches=6,
                               seed=3)
    assert again["val_loss"] == pytest.approx(result["final_val_loss"], rel=1e-5)


def test_two_segments_equal_one_uncut_run(demo: dict[str, Path], tmp_path: Path) -> None:
    # nt (ESM) has dropout, so this also checks that the torch RNG is carried across segments.
    uncut = tmp_path / "uncut"
    _run(_config(), demo, uncut, 0)
    cut = tmp_path / "cut"
    config = _config(steps_per_job=3)
    _run(config, demo, cut, 0)
    _run(config, demo, cut, 1, previous=cut / "segments/0")
    a, b = _weights(uncut / "segments/0"), _weights(cut / "segments/1")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses([uncut / "segments/0"]) == _losses(existing_segments(cut))
    assert len(_losses(existing_segments(cut))) == 6


def test_raising_total_steps_appends_a_segment(demo: dict[str, Path], tmp_path: Path) -> None:
    constant = {"schedule": "constant", "steps_per_job": 2}
    uncut = tmp_path / "uncut"
    _run(_config(total_steps=6, schedule="constant", steps_per_job=6), demo, uncut, 0)
    grown = tmp_path / "grown"
    first = _config(total_steps=3, **constant)  # segments [0, 2) and a short [2, 3)
    _run(first, demo, grown, 0)
    _run(first, demo, grown, 1, previous=grown / "segments/0")
    with pytest.raises(ConfigError, match="segment 2 does not exist"):
        _run(first, demo, grown, 2, previous=grown / "segments/1")
    # Raised to 6 steps: the finished segments are kept, segment 2 continues from step 3.
    summary = _run(_config(total_steps=6, **constant), demo, grown, 2,
                   previous=grown / "segments/1")
    assert (summary["start_step"], summary["end_step"]) == (3, 6)
    a, b = _weights(uncut / "segments/0"), _weights(grown / "segments/2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert finalize(grown, existing_segments(grown))["steps"] == 6


def test_resuming_with_a_different_run_is_refused(demo: dict[str, Path], tmp_path: Path) -> None:
    config = _config(total_steps=4, steps_per_job=1, val_max_batches=0)
    _run(config, demo, tmp_path, 0)
    first = tmp_path / "segments/0"
    with pytest.raises(ConfigError, match="differs from the checkpoint's in batch_size"):
        _run(config.replace(batch_size=4), demo, tmp_path, 1, previous=first)
    with pytest.raises(ConfigError, match="is segment 0, segment 2 needs segment 1"):
        _run(config, demo, tmp_path, 2, previous=first)
    with pytest.raises(ConfigError, match="ends at step 1 but segment 1 starts at step 2"):
        _run(config.replace(steps_per_job=2), demo, tmp_path, 1, previous=first)
    with pytest.raises(ConfigError, match="segment 1 needs the previous segment's checkpoint"):
        _run(config, demo, tmp_path, 1)
    with pytest.raises(ConfigError, match="not a finished segment"):
        _run(config, demo, tmp_path, 1, previous=tmp_path)
    with pytest.raises(ConfigError, match="segments do not form one run"):
        finalize(tmp_path / "final", [tmp_path / "segments/0", tmp_path / "segments/0"])


def test_a_checkpoint_written_before_the_renames_resumes(demo: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Checkpoints of runs started before the renames store ``segment_steps`` and, for no
    memory, ``rmt: {}``: the current settings resume them, and still refuse a different run."""
    from dnalm.train.checkpoint import TRAINER_STATE, load_trainer_state, save_trainer_state

    config = _config(total_steps=2, steps_per_job=1, val_max_batches=0)
    uncut = _run(config.replace(steps_per_job=2), demo, tmp_path / "uncut", 0)
    _run(config, demo, tmp_path, 0)
    first = tmp_path / "segments/0"
    state = load_trainer_state(first)
    old = {("segment_steps" if k == "steps_per_job" else k): v for k, v in state["config"].items()}
    old["rmt"] = {}
    assert "steps_per_job" not in old and old["segment_steps"] == 1
    save_trainer_state(first / TRAINER_STATE, {**state, "config": old})
    with pytest.raises(ConfigError, match="differs from the checkpoint's in learning_rate;"):
        _run(config.replace(learning_rate=1e-3), demo, tmp_path, 1, previous=first)
    resumed = _run(config, demo, tmp_path, 1, previous=first)
    assert (resumed["start_step"], resumed["end_step"]) == (1, 2)
    a, b = _weights(tmp_path / "uncut/segments/0"), _weights(tmp_path / "segments/1")
    assert uncut["end_step"] == 2 and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_fail_at_start_up(
    demo: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="unknown pretraining option"):
        _config(learnig_rate=1.0)
    with pytest.raises(ConfigError, match="unknown model preset 'bert'"):
        _config(preset="bert")
    with pytest.raises(ConfigError, match=r"option total_steps must be int, got 1\.5"):
        _config(total_steps=1.5)
    assert _config(learning_rate="4e-4").learning_rate == 4e-4  # YAML 1.1 reads 4e-4 as text
    with pytest.raises(ConfigError, match="above the nt preset's limit of 2048"):
        _run(_config(max_length=4096), demo, tmp_path, 0)
    with pytest.raises(ConfigError, match="does not accept a 'char' tokenizer"):
        _run(_config(preset="dnabert"), demo, tmp_path, 0)
    with pytest.raises(ConfigError, match="no training token shards"):
        _run(_config(), demo, tmp_path, 0, train=tmp_path)
    with pytest.raises(ConfigError, match="outside the tokenizer's vocabulary"):
        _run(_config(), demo, tmp_path, 0, train=demo["kmer_train"])

    class _TinyMemory:
        available = 1 << 20

    monkeypatch.setattr("dnalm.train.startup.psutil.virtual_memory", lambda: _TinyMemory)
    with pytest.raises(ConfigError, match=r"micro-batch of 8 x 64 tokens needs about .* GiB"):
        _run(_config(), demo, tmp_path, 0)
    assert not (tmp_path / "segments").exists()  # nothing half-written


def test_command_line_entry(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dnalm pretrain-segment` and `dnalm finalize-model` (what the rules' scripts run)."""
    config = tmp_path / "pretrain.yaml"
    config.write_text("pretrain:\n  preset: dnabert2\n  max_length: 64\n  batch_size: 2\n"
                      "  total_steps: 1\n  steps_per_job: 1\n  val_max_batches: 1\n")
    common = ["--tokenizer", str(demo["tok"]), "--train", str(demo["train"]),
              "--validation", str(demo["validation"]), "--segment", "0"]
    out = tmp_path / "m/segments/0"
    assert main(["pretrain-segment", "--config", str(config), *common, "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["end_step"] == 1
    assert main(["finalize-model", str(tmp_path / "m"), str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert (tmp_path / "m/loss_curve.png").is_file()
    bad = ["pretrain-segment", "--config", str(config), "--set", "preset=gpt", *common,
           "--out", str(tmp_path / "bad")]
    assert main(bad) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dnalm: error: unknown model preset 'gpt'") and "\n" not in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(
    not os.environ.get("DNALM_DDP_TESTS"),
    reason="starts torchrun three times (~1.5 min on 2 cores); set DNALM_DDP_TESTS=1",
)
def test_two_process_ddp_segments_equal_uncut(demo: dict[str, Path], tmp_path: Path) -> None:
    """CPU DistributedDataParallel (gloo) through the torchrun entry point, resumed per rank."""
    config = tmp_path / "ddp.yaml"
    config.write_text("preset: nt\nmax_length: 64\nbatch_size: 4\ntotal_steps: 4\n"
                      "log_every: 1\nval_max_batches: 2\nseed: 5\n")

    def launch(out: Path, segment: int, steps_per_job: int, previous: Path | None) -> None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=2", "-m", "dnalm", "pretrain-segment",
                   "--config", str(config), "--set", f"steps_per_job={steps_per_job}",
                   "--tokenizer", str(demo["tok"]), "--train", str(demo["train"]),
                   "--validation", str(demo["validation"]), "--segment", str(segment),
                   "--out", str(out / "segments" / str(segment)), "--threads", "2", "--gpus", "0"]
        if previous is not None:
            command += ["--previous", str(previous)]
        subprocess.run(command, check=True, capture_output=True, timeout=300)

    launch(tmp_path / "uncut", 0, 4, None)
    launch(tmp_path / "cut", 0, 2, None)
    launch(tmp_path / "cut", 1, 2, tmp_path / "cut/segments/0")
    info = json.loads((tmp_path / "cut/segments/1/segment.json").read_text())
    assert info["world_size"] == 2 and info["tokens"] == 2 * 4 * 64 * 2
    a, b = _weights(tmp_path / "uncut/segments/0"), _weights(tmp_path / "cut/segments/1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses([tmp_path / "uncut/segments/0"]) == _losses(existing_segments(tmp_path / "cut"))


@pytest.mark.skipif(
    not os.environ.get("DNALM_DDP_TESTS"),
    reason="starts torchrun (~1 min on 2 cores); set DNALM_DDP_TESTS=1",
)
def test_a_job_given_several_gpus_runs_one_process_each_under_torchrun(
        demo: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the rule's script and `dnalm pretrain-segment --gpus 2` do outside torchrun, here on
    CPU processes (gloo): the job restarts as two ranks of `dnalm pretrain-segment`, with the
    settings unchanged on their way through the temporary file."""
    from dnalm.train import launch
    from dnalm.train.checkpoint import load_trainer_state

    config = _config(batch_size=4, total_steps=2, steps_per_job=2, seed=5,
                     rmt={"num_mem_tokens": 4})
    monkeypatch.setattr(launch, "needs_torchrun", lambda gpus: gpus > 1)
    out = tmp_path / "job/segments/0"
    summary = launch.train_segment(config, tokenizer_dir=demo["tok"], train_dirs=[demo["train"]],
                                   validation_dirs=[demo["validation"]], segment=0,
                                   previous_checkpoint=None, out_dir=out, threads=2, gpus=2)
    assert summary["world_size"] == 2 and summary["end_step"] == 2
    assert summary == {**json.loads((out / "segment.json").read_text()), "out_dir": str(out)}
    assert load_trainer_state(out)["config"] == config.to_dict()


def test_gena_with_recurrent_memory_pretrains_in_resumable_segments(
        demo: dict[str, Path], tmp_path: Path) -> None:
    """GENA-LM's long-context recipe: BigBird block-sparse windows, each row three windows long
    with memory carried across them; segmented like any run, reloaded through the Auto classes."""
    from dnalm.models import RMTForMaskedLM

    config = _config(preset="gena", max_length=160, batch_size=4, total_steps=20,
                     steps_per_job=10, learning_rate=3e-3, log_every=5, val_max_batches=3,
                     rmt={"num_mem_tokens": 4, "max_n_segments": 3})
    assert config.row_length == 3 * (160 - 4 - 3) + 2
    first = _run(config, demo, tmp_path, 0)
    second = _run(config, demo, tmp_path, 1, previous=tmp_path / "segments/0")
    assert first["tokens"] == second["tokens"] == 10 * 4 * config.row_length
    result = finalize(tmp_path, existing_segments(tmp_path))
    assert result["final_val_loss"] < result["initial_val_loss"] - 0.3
    model = AutoModelForMaskedLM.from_pretrained(str(tmp_path))
    assert isinstance(model, RMTForMaskedLM)
    assert model.mlm.config.attention_type == "block_sparse"
    assert model.config.segment_size == 160 and model.config.max_n_segments == 3
    meta = json.loads((tmp_path / "dnalm_model.json").read_text())
    assert meta["rmt"] == {"num_mem_tokens": 4, "max_n_segments": 3, "bptt_depth": -1}
    again = evaluate_model_dir(tmp_path, [demo["validation"]], batch_size=4, max_batches=3,
                               seed=3)
    assert again["val_loss"] == pytest.approx(result["final_val_loss"], rel=1e-5)
    uncut = tmp_path / "uncut"  # memory init seeded: segments == uncut (deterministic: CPU same)
    _run(config.replace(steps_per_job=20, deterministic=True), demo, uncut, 0)
    a, b = _weights(uncut / "segments/0"), _weights(tmp_path / "segments/1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="rmt max_n_segments must be >= 2"):
        _config(rmt={"max_n_segments": 1})
    with pytest.raises(ConfigError, match="unknown rmt option"):
        _config(rmt={"memory": 4})
