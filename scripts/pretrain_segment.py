"""Snakemake adapter: train one pretraining segment (rule pretrain_segment)."""

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from dnalm.logs import run_script
from dnalm.train.config import PretrainConfig
from dnalm.train.pretrain import run_segment


def main(sm) -> None:
    name, segment = sm.wildcards.model, int(sm.wildcards.segment)
    settings = dict(sm.params.settings)
    settings["total_steps"] = sm.config["pretraining"]["models"][name].get("total_steps", 10_000)
    settings.setdefault("seed", sm.config["seed"])
    tokenizer = Path(sm.input.tokenizer).parent
    train = [Path(d) / "train" for d in sm.input.tokens]
    validation = [Path(d) / "validation" for d in sm.input.tokens]
    previous = sm.input.get("previous")
    gpus = int(sm.resources.get("gpu", 0))
    if gpus > 1:  # one process per GPU: the module relaunches itself under torchrun
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(settings, handle)
        cmd = [sys.executable, "-m", "dnalm.train.pretrain", "segment", "--config", handle.name,
               "--tokenizer", str(tokenizer), "--train", *map(str, train), "--validation",
               *map(str, validation), "--segment", str(segment), "--out", sm.output[0],
               "--threads", str(sm.threads), "--gpus", str(gpus)]
        if previous:
            cmd += ["--previous", previous]
        subprocess.run(cmd, check=True)
        return
    summary = run_segment(PretrainConfig.from_dict(settings), tokenizer_dir=tokenizer,
                          train_dirs=train, validation_dirs=validation, segment=segment,
                          previous_checkpoint=previous, out_dir=sm.output[0],
                          threads=sm.threads, gpus=gpus)
    logging.getLogger("dnalm").info("segment %d done: %s", segment, summary)


run_script(snakemake, main)
