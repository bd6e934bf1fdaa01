"""`python -m dnalm.results`: what the run wrote, and each learned number beside its yardstick."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dnalm.results import learned, main


def test_learned_numbers_come_with_their_yardsticks(tmp_path: Path, capsys) -> None:
    model = tmp_path / "results/models/demo"
    model.mkdir(parents=True)
    pd.DataFrame({"k": range(6), "nats_per_base": [1.39, 1.36, 1.35, 1.33, 1.32, 1.28]}
                 ).to_parquet(model / "markov.parquet")
    pd.DataFrame({"step": [10, 20], "val_loss_per_base": [1.40, 1.29]}
                 ).to_parquet(model / "metrics.parquet")
    (tmp_path / "results/finetune").mkdir(parents=True)
    pd.DataFrame({"task": ["t", "t", "t"], "model": ["kmer_baseline", "demo", "demo_full"],
                  "method": ["kmer_baseline", "lora", "full"], "mcc": [0.37, 0.0, 0.4],
                  "auroc": [0.73, 0.5, 0.78], "collapsed": [False, True, False]}
                 ).to_parquet(tmp_path / "results/finetune/summary.parquet")
    (tmp_path / "results/tracks/demo").mkdir(parents=True)
    (tmp_path / "results/tracks/demo/enh_tss.json").write_text(json.dumps(
        {"flank_bp": 1000, "enrichment": 1.25, "n_windows_near_tss": 30, "n_windows": 800}))
    lines = learned(tmp_path)
    assert lines[0].startswith("pretraining demo: validation 1.2900 nats/base, below the best "
                               "Markov chain of order <= 3 (1.3300)")
    assert "k-mer baseline MCC 0.370" in lines[1]
    assert "COLLAPSED" in lines[2] and "COLLAPSED" not in lines[3]
    assert "= 1.250 (1 = no enrichment" in lines[4]
    assert main(str(tmp_path)) == 0
    assert "beside their yardsticks" in capsys.readouterr().out
