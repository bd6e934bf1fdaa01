"""Training metrics: per-segment Parquet logs, their concatenation and the loss-curve plot.

One row per logged step with the training loss (mean over the masked tokens of the steps since the
previous row), learning rate, gradient norm, throughput (non-padding tokens per second, all
processes together) and, on GPUs with a known peak, model FLOPs utilisation. Rows carrying a
validation result have ``val_loss``/``val_perplexity`` set (the perplexity of masked-token
prediction, ``exp(val_loss)``) and ``val_loss_per_base``, the same loss in nats per base
(comparable across tokenizers and with the Markov baselines, :mod:`dnalm.train.markov`); a row at
step 0 holds the untrained model's validation loss.
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
        ("val_loss_per_base", pa.float64()),
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


def plot_loss_curve(
    table: pa.Table,
    path: str | Path,
    *,
    title: str = "",
    markov: pa.Table | None = None,
) -> None:
    """Loss against step (left), validation nats per base beside the Markov baselines (middle,
    when either is known) and throughput (right), as a PNG.

    ``markov`` is a table of :func:`dnalm.train.markov.markov_baselines`; each order is drawn as a
    horizontal line, so the model's curve can be read against them on the same scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = table.to_pydict()
    per_base = [
        (s, v)
        for s, v in zip(data["step"], data.get("val_loss_per_base", [None] * len(data["step"])),
                        strict=True)
        if _finite(v)
    ]
    levels = _markov_levels(markov)
    panels = 3 if per_base or levels else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), constrained_layout=True)
    ax_loss, ax_speed = axes[0], axes[-1]
    train = [(s, v) for s, v in zip(data["step"], data["loss"], strict=True) if _finite(v)]
    val = [(s, v) for s, v in zip(data["step"], data["val_loss"], strict=True) if _finite(v)]
    if train:
        ax_loss.plot(*zip(*train, strict=True), label="training loss", lw=1)
    if val:
        ax_loss.plot(*zip(*val, strict=True), "o-", label="validation loss", ms=4)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("masked-LM cross-entropy (nats per token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if panels == 3:
        _plot_per_base(axes[1], per_base, levels)
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


def _markov_levels(markov: pa.Table | None) -> list[tuple[int, float]]:
    if markov is None:
        return []
    rows = zip(markov.column("k").to_pylist(), markov.column("nats_per_base").to_pylist(),
               strict=True)
    return [(int(k), float(v)) for k, v in rows if _finite(v)]


def _plot_per_base(ax: Any, per_base: list[tuple[int, float]],
                   levels: list[tuple[int, float]]) -> None:
    """Validation nats/base against step, with one dashed line per Markov order."""
    import matplotlib.pyplot as plt

    if per_base:
        last = per_base[-1][1]
        ax.plot(*zip(*per_base, strict=True), "o-", color="C1", ms=4,
                label=f"validation ({last:.3f} at the end)")
    colours = plt.get_cmap("viridis")
    for i, (k, level) in enumerate(levels):
        ax.axhline(level, ls="--", lw=1, color=colours(0.85 * i / max(1, len(levels) - 1)),
                   label=f"Markov order {k}: {level:.3f}")
    values = [v for _, v in per_base] + [v for _, v in levels]
    if levels and any(s > 0 for s, _ in per_base):
        # the untrained model's first point (about log(vocabulary) per token) would squash the
        # baselines into one line: show from just above the worst baseline down
        top = max(max(v for _, v in levels), *(v for s, v in per_base if s > 0))
        low = min(values)
        pad = 0.15 * max(top - low, 0.02)
        ax.set_ylim(low - pad, top + 3 * pad)
    ax.set_xlabel("step")
    ax.set_ylabel("validation cross-entropy (nats per base)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
