"""Training metrics: per-segment Parquet logs, their concatenation and the loss-curve plot.

One row per logged step with the training loss (mean over the masked tokens of the steps since the
previous row), learning rate, gradient norm, throughput (non-padding tokens per second, all
processes together) and, on GPUs with a known peak, model FLOPs utilisation. Rows carrying a
validation result have ``val_loss``/``val_perplexity`` set (the perplexity of masked-token
prediction, ``exp(val_loss)``); a row at step 0 holds the untrained model's validation loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dnalm.io import atomic_file, write_table

METRICS_SCHEMA = pa.schema(
    [
        ("segment", pa.int32()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("learning_rate", pa.float64()),
        ("grad_norm", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("tokens", pa.int64()),
        ("elapsed_s", pa.float64()),
        ("mfu", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_perplexity", pa.float64()),
    ]
)

#: Dense bf16 peak FLOP/s of common training GPUs, for MFU. Unknown devices get no MFU.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
}


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s for a CUDA device name, or None when unknown."""
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def flops_per_token(config: Any, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L H T`` (PaLM appendix B).

    ``N`` is the number of non-embedding parameters (estimated from the config shape), ``L``
    layers, ``H`` hidden size, ``T`` the attended context: the full sequence, or for BigBird
    block-sparse attention the ``(5 + 2 r) * block`` keys each query actually sees.
    """
    hidden = int(config.hidden_size)
    layers = int(config.num_hidden_layers)
    inter = int(config.intermediate_size)
    glu = 2 if config.model_type == "modernbert" else 1
    per_layer = 4 * hidden * hidden + (1 + glu) * hidden * inter
    context = seq_len
    if getattr(config, "attention_type", None) == "block_sparse":
        context = min(seq_len, (5 + 2 * int(config.num_random_blocks)) * int(config.block_size))
    return 6.0 * layers * per_layer + 12.0 * layers * hidden * context


def metrics_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with any subset of the schema's columns) as a table with the full schema."""
    columns = {
        name: [row.get(name) for row in rows] for name in METRICS_SCHEMA.names
    }
    return pa.table(columns, schema=METRICS_SCHEMA)


def write_metrics(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    write_table(metrics_table(rows), path)


def read_metrics(paths: Sequence[str | Path]) -> pa.Table:
    """Concatenate segment metrics in step order."""
    tables = [pq.read_table(p, schema=METRICS_SCHEMA) for p in paths]
    if not tables:
        return metrics_table([])
    table = pa.concat_tables(tables)
    return table.sort_by([("step", "ascending"), ("segment", "ascending")])


def plot_loss_curve(table: pa.Table, path: str | Path, *, title: str = "") -> None:
    """Training and validation loss against step (left) and throughput (right), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = table.to_pydict()
    fig, (ax_loss, ax_speed) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    train = [(s, v) for s, v in zip(data["step"], data["loss"], strict=True) if _finite(v)]
    val = [(s, v) for s, v in zip(data["step"], data["val_loss"], strict=True) if _finite(v)]
    if train:
        ax_loss.plot(*zip(*train, strict=True), label="training loss", lw=1)
    if val:
        ax_loss.plot(*zip(*val, strict=True), "o-", label="validation loss", ms=4)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("masked-LM cross-entropy (nats)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    speed = [
        (s, v) for s, v in zip(data["step"], data["tokens_per_s"], strict=True) if _finite(v)
    ]
    if speed:
        ax_speed.plot(*zip(*speed, strict=True), lw=1)
    ax_speed.set_xlabel("step")
    ax_speed.set_ylabel("tokens / s")
    ax_speed.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
