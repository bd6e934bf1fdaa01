"""Shared output writers: ``metrics.json`` helpers and the ``predictions.parquet`` table.

Fine-tuned models and the k-mer baseline write the same layout so that the summary (and anyone
comparing two runs) reads one format.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dnalm.finetune.tasks import TaskData


def versions() -> dict[str, str]:
    """Versions of the packages that decide a result (recorded in every metrics.json)."""
    out = {"python": platform.python_version()}
    for package in ("dnalm", "torch", "transformers", "peft", "tokenizers", "scikit-learn"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def _vm_hwm_kib() -> float | None:
    """This process's resident-memory high-water mark (``VmHWM``), in KiB, where /proc has it."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory_mb(cuda_device: Any = None) -> dict[str, float | None]:
    """Peak resident memory of this process and, given a CUDA device, peak allocated GPU MiB.

    ``VmHWM`` is used rather than ``getrusage().ru_maxrss`` because Linux carries the parent's
    high-water mark over ``fork`` + ``exec`` into ``ru_maxrss``, so a job started by Snakemake
    would report at least Snakemake's own memory. Either is the process-lifetime peak, so one run
    per process (as Snakemake jobs are) measures that run; the benchmark starts a fresh process
    per configuration for that reason.
    """
    kib = _vm_hwm_kib()
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = None
    if cuda_device is not None and getattr(cuda_device, "type", "") == "cuda":
        import torch

        cuda = round(torch.cuda.max_memory_allocated(cuda_device) / 2**20, 1)
    return {"peak_rss_mb": round(kib / 1024, 1), "peak_cuda_mb": cuda}


def json_ready(value: Any) -> Any:
    """Numpy scalars and tuples → plain JSON values; NaN/inf → None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON (numpy values converted)."""
    Path(path).write_text(json.dumps(json_ready(data), indent=2) + "\n")


def predictions_table(task: TaskData, outputs: np.ndarray,
                      extra: Mapping[str, np.ndarray] | None = None) -> pa.Table:
    """``predictions.parquet`` for the test split.

    Columns: ``id``, ``label`` (class id or value), ``prediction`` (argmax class id or value),
    for classification ``label_name``, ``prediction_name`` and ``prob_<class id>``, then
    ``extra`` columns (e.g. ``n_tokens``, ``truncated``).
    """
    test = task.test
    frame = pd.DataFrame({"id": test["id"].astype(str).to_numpy(),
                          "label": test["label"].to_numpy()})
    if task.problem == "classification":
        frame["prediction"] = outputs.argmax(axis=1).astype(np.int64)
        names = np.array(task.label_names, dtype=object)
        frame["label_name"] = names[frame["label"].to_numpy(dtype=np.int64)]
        frame["prediction_name"] = names[frame["prediction"].to_numpy()]
        for c in range(outputs.shape[1]):
            frame[f"prob_{c}"] = outputs[:, c]
    else:
        frame["prediction"] = np.asarray(outputs, dtype=np.float64).reshape(-1)
    for name, values in (extra or {}).items():
        frame[name] = values
    return pa.Table.from_pandas(frame, preserve_index=False)
