"""Fine-tune a DNA language model on a labelled task, with LoRA or in full.

Why a plain PyTorch loop rather than ``transformers.Trainer``: the loop is ~60 lines, and owning
it makes the things this stage must guarantee explicit and testable: the best-dev-loss weights
are restored in memory (no checkpoint directories to clean up), base weights provably stay
untouched under LoRA, the same evaluation code produces ``predictions.parquet`` and the reloaded
adapter's predictions (so they match exactly), and time per epoch and peak memory are measured on
the training step itself. Trainer would add accelerate/report-to plumbing, checkpoint folders and
its own seeding rules for no gain at this scale.

Training: AdamW with linear warm-up and decay, gradient clipping at 1.0, bf16 autocast on CUDA
only (CPU runs in float32), dynamic padding per batch. After every epoch the dev loss is computed;
the weights with the lowest dev loss are kept and restored at the end, and training stops after
``patience`` epochs without improvement (DNABERT-2 also keeps the best checkpoint by dev loss).
Regression targets are standardised with the train mean and standard deviation for the loss and
mapped back for predictions.

A run directory (``results/finetune/{task}/{model}``) holds:

* ``adapter/`` (LoRA): peft ``save_pretrained`` output (``adapter_config.json``,
  ``adapter_model.safetensors`` with the LoRA matrices and the trained head), the tokenizer, and
  ``dnalm_finetune.json`` (base model path, labels, max length) for :func:`load_finetuned`;
* ``model/`` (full fine-tuning): the whole classifier as a Hugging Face directory;
* ``merged/`` (optional, LoRA): the adapters merged into the base weights, a plain HF directory;
* ``metrics.json``: test metrics, best dev loss (beside the loss before training and that of
  predicting the class prior), epochs, seconds per epoch, peak memory, trainable/total
  parameters, the label mapping, and the yardsticks of :mod:`dnalm.finetune.yardsticks`:
  ``chance`` (the majority class), bootstrap ``intervals`` of AUROC and MCC, and ``collapsed``
  with ``collapse_reason`` (near-constant test predictions, or a dev loss that never fell; a
  collapsed run is also a warning in the log saying what to change);
* ``predictions.parquet``: one row per test sequence: ``id``, ``label``, ``prediction``, per-class
  probabilities ``prob_<id>`` (or the predicted value for regression), ``truncated``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnalm.errors import ConfigError
from dnalm.finetune.encoding import Encoded, SequenceEncoder, pad_batch
from dnalm.finetune.metrics import primary_metric, task_metrics
from dnalm.finetune.modeling import (
    apply_lora,
    load_classifier,
    load_rmt_classifier,
    module_parameters,
)
from dnalm.finetune.report import (
    json_ready,
    peak_memory_mb,
    predictions_table,
    versions,
    write_json,
)
from dnalm.finetune.settings import FinetuneSettings, LoraSettings, RMTSettings
from dnalm.finetune.tasks import SPLITS, TaskData, load_task, task_spec_from_dir
from dnalm.finetune.yardsticks import chance_level, check_collapse, collapse_advice, intervals
from dnalm.io import atomic_dir, write_table
from dnalm.logs import progress
from dnalm.runtime import autocast, count_parameters, pick_device, seed_everything

log = logging.getLogger(__name__)

RUN_META = "dnalm_finetune.json"


# --------------------------------------------------------------------------------------------
# Small helpers


# --------------------------------------------------------------------------------------------
# The fine-tuner


class FineTuner:
    """One fine-tuning run: model + tokenizer + encoded splits, then :meth:`fit`, :meth:`evaluate`
    and :meth:`save_weights`.

    Built in steps so tests can inspect the model between them (e.g. snapshot the base weights
    before :meth:`fit` and compare after).
    """

    def __init__(self, task: TaskData, model_dir: str | Path, settings: FinetuneSettings,
                 *, model_name: str | None = None) -> None:
        self.task = task
        self.model_dir = Path(model_dir)
        self.model_name = model_name or self.model_dir.name
        self.settings = settings
        self.device = pick_device(settings.gpus)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        torch.set_num_threads(settings.threads)
        seed_everything(settings.seed)
        loaded = _load_model(self.model_dir, task.num_labels, task.problem, settings.rmt,
                             settings.trust_remote_code)
        self.head_modules = loaded.head_modules
        self.total_parameters = count_parameters(loaded.model)
        self.head_parameters = module_parameters(loaded.model, loaded.head_modules)
        self.encoder = SequenceEncoder.from_dir(
            self.model_dir, max_length=_input_budget(settings.max_length, loaded.config),
            model_config=loaded.config)
        self.target_modules: list[str] = []
        self.adapted_matrices = 0
        if settings.method == "lora":
            lora = settings.lora
            self.model, self.target_modules = apply_lora(
                loaded, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                target_modules=lora.target_modules, seed=settings.seed)
            self.adapted_matrices = self._count_lora_layers()
        else:
            self.model = loaded.model
            for p in self.model.parameters():
                p.requires_grad_(True)
        self.model.to(self.device)
        self.trainable_parameters = count_parameters(self.model, trainable=True)
        self.target_mean, self.target_std = self._target_scaling()
        self.encoded = {s: self._encode(s) for s in SPLITS}
        self.history: list[dict[str, Any]] = []
        self.epoch_seconds: list[float] = []
        #: CPU time (all threads) per epoch: a measure of work that load from other jobs on a
        #: shared machine inflates far less than wall time does
        self.epoch_cpu_seconds: list[float] = []
        self.best: dict[str, Any] = {}
        #: dev loss before any training (random head): a run whose best dev loss is not below
        #: it has learned nothing (see dnalm.finetune.yardsticks)
        self.initial_dev_loss: float | None = None

    # -- preparation ---------------------------------------------------------------------------

    def _count_lora_layers(self) -> int:
        """Number of weight matrices that received a LoRA adapter."""
        from peft.tuners.lora import LoraLayer

        return sum(isinstance(m, LoraLayer) for m in self.model.modules())

    def _target_scaling(self) -> tuple[float, float]:
        if self.task.problem != "regression":
            return 0.0, 1.0
        values = self.task.train["label"].to_numpy(dtype=np.float64)
        std = float(values.std())
        return float(values.mean()), std if std > 0 else 1.0

    def _encode(self, split: str) -> Encoded:
        frame = self.task.split(split)
        encoded = self.encoder.encode(frame["sequence"].tolist())
        n_cut = int(encoded.truncated.sum())
        if n_cut:
            log.warning("%s: %d of %d sequences are longer than %d tokens and were truncated",
                        split, n_cut, len(encoded), self.encoder.max_length)
        return encoded

    def _targets(self, split: str, rows: np.ndarray | slice) -> torch.Tensor:
        labels = self.task.split(split)["label"].to_numpy()[rows]
        if self.task.problem == "regression":
            scaled = (labels.astype(np.float64) - self.target_mean) / self.target_std
            return torch.as_tensor(scaled, dtype=torch.float32)
        return torch.as_tensor(labels.astype(np.int64))

    # -- training ------------------------------------------------------------------------------

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.task.problem == "regression":
            return torch.nn.functional.mse_loss(logits.squeeze(-1), targets)
        return torch.nn.functional.cross_entropy(logits, targets)

    def _forward(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, mask = pad_batch(rows, self.encoder.pad_id)
        with autocast(self.device):
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return out.logits.float()

    def _optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]  # biases and norms are not decayed
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.settings.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=self.settings.lr)
        warmup = int(steps * self.settings.warmup_ratio)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (steps - step) / max(1, steps - warmup))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def _train_epoch(self, optimizer: torch.optim.Optimizer, scheduler: Any,
                     generator: torch.Generator) -> float:
        self.model.train()
        encoded = self.encoded["train"]
        order = torch.randperm(len(encoded), generator=generator).numpy()
        total, batches = 0.0, 0
        starts = range(0, len(order), self.settings.batch_size)
        for start in progress(starts, desc="training batches", logger=log, unit="batch"):
            rows = order[start : start + self.settings.batch_size]
            logits = self._forward([encoded.ids[i] for i in rows])
            loss = self._loss(logits, self._targets("train", rows).to(self.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            batches += 1
        return total / max(1, batches)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()
                if p.requires_grad}

    def _restore(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in state:
                    param.copy_(state[name].to(param.device))

    def fit(self) -> list[dict[str, Any]]:
        """Train with early stopping on the dev loss; leaves the best-dev weights in the model."""
        s = self.settings
        steps = s.epochs * math.ceil(len(self.encoded["train"]) / s.batch_size)
        optimizer, scheduler = self._optimizer(steps)
        generator = torch.Generator().manual_seed(s.seed)
        best_loss, best_state, stale = math.inf, self._snapshot(), 0
        self.initial_dev_loss = self.evaluate("dev")[0]
        log.info("dev loss before training %.4f (predicting the training class frequencies "
                 "or mean: %s)", self.initial_dev_loss, _fmt(self.prior_dev_loss()))
        for epoch in range(1, s.epochs + 1):
            began, cpu_began = time.perf_counter(), time.process_time()
            train_loss = self._train_epoch(optimizer, scheduler, generator)
            self.epoch_seconds.append(time.perf_counter() - began)
            self.epoch_cpu_seconds.append(time.process_time() - cpu_began)
            dev_loss, dev_metrics, _ = self.evaluate("dev")
            improved = dev_loss < best_loss
            self.history.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev_loss,
                                 "seconds": self.epoch_seconds[-1], **{
                                     f"dev_{k}": v for k, v in dev_metrics.items()}})
            primary = primary_metric(self.task.problem)
            log.info("epoch %d/%d: train loss %.4f, dev loss %.4f%s, dev %s %s, %.1f s", epoch,
                     s.epochs, train_loss, dev_loss, " (best)" if improved else "", primary,
                     _fmt(dev_metrics.get(primary)), self.epoch_seconds[-1])
            if improved:
                best_loss, best_state, stale = dev_loss, self._snapshot(), 0
                self.best = {"epoch": epoch, "loss": dev_loss, **dev_metrics}
            else:
                stale += 1
                if s.patience and stale >= s.patience:
                    log.info("early stop: dev loss did not improve for %d epochs", stale)
                    break
        self._restore(best_state)
        return self.history

    # -- evaluation ----------------------------------------------------------------------------

    def prior_dev_loss(self) -> float | None:
        """Dev loss of the constant predictor fitted on train (class frequencies, or the mean).

        The loss a model reaches by learning the class prior alone: the yardstick for the dev
        losses in the log and ``metrics.json``.
        """
        dev = self.task.split("dev")["label"].to_numpy()
        if not len(dev):
            return None
        if self.task.problem == "regression":
            scaled = (dev.astype(np.float64) - self.target_mean) / self.target_std
            return float(np.mean(scaled**2))
        train = self.task.train["label"].to_numpy().astype(np.int64)
        freq = np.bincount(train, minlength=self.task.num_labels) / max(1, len(train))
        return float(-np.mean(np.log(np.clip(freq[dev.astype(np.int64)], 1e-12, None))))

    def outputs(self, encoded: Encoded, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities (n × classes) or predicted values (n) for encoded sequences."""
        return predict_outputs(self.model, encoded, pad_id=self.encoder.pad_id,
                               device=self.device, problem=self.task.problem,
                               batch_size=batch_size or eval_batch_size(self.settings),
                               target_mean=self.target_mean, target_std=self.target_std)

    def evaluate(self, split: str) -> tuple[float, dict[str, float | None], np.ndarray]:
        """Mean loss, metrics and outputs of one split with the current weights."""
        outputs = self.outputs(self.encoded[split])
        labels = self.task.split(split)["label"].to_numpy()
        if self.task.problem == "regression":
            scaled = (outputs - self.target_mean) / self.target_std
            target = (labels.astype(np.float64) - self.target_mean) / self.target_std
            loss = float(np.mean((scaled - target) ** 2))
        else:
            picked = outputs[np.arange(len(labels)), labels.astype(np.int64)]
            loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
        return loss, task_metrics(self.task.problem, labels, outputs), outputs

    # -- saving --------------------------------------------------------------------------------

    def run_meta(self) -> dict[str, Any]:
        """What :func:`load_finetuned` needs to rebuild the model and its inputs."""
        return {
            "base_model": str(self.model_dir.resolve()),
            "method": self.settings.method,
            "problem": self.task.problem,
            "num_labels": self.task.num_labels,
            "label_names": self.task.label_names,
            "max_length": self.encoder.max_length,
            "trust_remote_code": self.settings.trust_remote_code,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "eval_batch_size": eval_batch_size(self.settings),
            "rmt": _resolved_rmt(self.settings.rmt, self.model),
        }

    def save_weights(self, out_dir: Path) -> dict[str, str]:
        """Write adapter (LoRA) or model (full), and optionally merged weights, into out_dir."""
        written = {}
        meta = self.run_meta()
        weights_dir = out_dir / ("adapter" if self.settings.method == "lora" else "model")
        self.model.save_pretrained(str(weights_dir))
        self.encoder.save(weights_dir)
        write_json(weights_dir / RUN_META, meta)
        written[weights_dir.name] = str(weights_dir)
        if self.settings.merge and self.settings.method == "lora":
            merged = self.model.merge_and_unload()
            merged.save_pretrained(str(out_dir / "merged"))
            self.encoder.save(out_dir / "merged")
            write_json(out_dir / "merged" / RUN_META, {**meta, "method": "merged"})
            written["merged"] = str(out_dir / "merged")
        elif self.settings.merge:
            log.info("merge ignored: full fine-tuning has no adapter to merge")
        return written


def _load_model(model_dir: Path, num_labels: int, problem: str, rmt: RMTSettings,
                trust_remote_code: bool) -> Any:
    """A plain sequence classifier, or the encoder wrapped in RMT when ``rmt.enabled``."""
    if rmt.enabled:
        return load_rmt_classifier(model_dir, num_labels=num_labels, problem=problem, rmt=rmt,
                                   trust_remote_code=trust_remote_code)
    return load_classifier(model_dir, num_labels=num_labels, problem=problem,
                           trust_remote_code=trust_remote_code)


def _input_budget(max_length: int, config: Any) -> int:
    """Tokens read per sequence: ``max_length``, or under RMT every segment plus [CLS]/[SEP]."""
    if getattr(config, "model_type", "") == "dnalm_rmt":
        return int(config.input_length)
    return max_length


def _resolved_rmt(rmt: RMTSettings, model: torch.nn.Module) -> dict[str, Any] | None:
    """The RMT block with ``segment_length`` resolved, as stored in the run metadata."""
    if not rmt.enabled:
        return None
    config = getattr(model, "config", None)
    length = getattr(config, "segment_length", None) if config is not None else None
    return {**asdict(rmt), "segment_length": length or rmt.segment_length}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def eval_batch_size(settings: FinetuneSettings) -> int:
    """Evaluation batch size: twice the training one (no gradients to keep)."""
    return settings.batch_size * 2


def predict_outputs(model: torch.nn.Module, encoded: Encoded, *, pad_id: int,
                    device: torch.device, problem: str, batch_size: int,
                    target_mean: float = 0.0, target_std: float = 1.0) -> np.ndarray:
    """Run ``model`` over ``encoded`` in order: probabilities, or de-standardised values.

    Shared by training-time evaluation and :func:`load_finetuned` so that a reloaded adapter
    computes the very same batches and reproduces ``predictions.parquet`` bit for bit.
    """
    model.eval()
    chunks = []
    with torch.inference_mode():
        starts = range(0, len(encoded), batch_size)
        for start in progress(starts, desc="prediction batches", logger=log, unit="batch"):
            ids, mask = pad_batch(encoded.ids[start : start + batch_size], pad_id)
            with autocast(device):
                logits = model(input_ids=ids.to(device),
                               attention_mask=mask.to(device)).logits.float()
            if problem == "regression":
                chunks.append(logits.squeeze(-1).double().cpu().numpy() * target_std
                              + target_mean)
            else:
                chunks.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0,))


# --------------------------------------------------------------------------------------------
# Outputs


def _metrics_document(tuner: FineTuner, test_loss: float,
                      test_metrics: Mapping[str, Any]) -> dict[str, Any]:
    s = tuner.settings
    task = tuner.task
    lora: dict[str, Any] | None = None
    if s.method == "lora":
        lora = {**asdict(s.lora), "target_modules": tuner.target_modules,
                "adapted_matrices": tuner.adapted_matrices}
    return {
        "task": task.name,
        "model": tuner.model_name,
        "model_dir": str(tuner.model_dir),
        "method": s.method,
        "problem": task.problem,
        "primary_metric": primary_metric(task.problem),
        "test": {"loss": test_loss, "n": len(task.test), **test_metrics},
        "dev": {"best_epoch": tuner.best.get("epoch"), "best_loss": tuner.best.get("loss"),
                "initial_loss": tuner.initial_dev_loss, "prior_loss": tuner.prior_dev_loss(),
                **{k: v for k, v in tuner.best.items() if k not in ("epoch", "loss")}},
        "label_names": task.label_names,
        "label_mapping": task.label_mapping,
        "n_sequences": task.sizes(),
        "dev_source": task.dev_source,
        "sources": task.sources,
        "truncated": {sp: int(tuner.encoded[sp].truncated.sum()) for sp in SPLITS},
        "parameters": {
            "total": tuner.total_parameters,
            "base": tuner.total_parameters - tuner.head_parameters,
            "head": tuner.head_parameters,
            "trainable": tuner.trainable_parameters,
            "trainable_fraction": tuner.trainable_parameters / max(1, tuner.total_parameters),
        },
        "lora": lora,
        "head_modules": tuner.head_modules,
        "training": {
            "epochs_run": len(tuner.history), "max_epochs": s.epochs,
            "stopped_early": len(tuner.history) < s.epochs,
            "seconds_per_epoch": float(np.mean(tuner.epoch_seconds)) if tuner.epoch_seconds
            else None,
            "cpu_seconds_per_epoch": float(np.mean(tuner.epoch_cpu_seconds))
            if tuner.epoch_cpu_seconds else None,
            "train_seconds": float(np.sum(tuner.epoch_seconds)),
            "batch_size": s.batch_size, "learning_rate": s.lr, "weight_decay": s.weight_decay,
            "warmup_ratio": s.warmup_ratio, "max_length": tuner.encoder.max_length,
            "patience": s.patience, "seed": s.seed,
        },
        "history": tuner.history,
        "resources": {"device": str(tuner.device), "threads": s.threads,
                      **peak_memory_mb(tuner.device)},
        "versions": versions(),
    }


def _yardsticks(tuner: FineTuner, outputs: np.ndarray) -> dict[str, Any]:
    """``chance``, ``intervals`` and the collapse flag of a run (:mod:`.yardsticks`)."""
    task = tuner.task
    labels = task.test["label"].to_numpy()
    spans = intervals(task.problem, labels, outputs, seed=tuner.settings.seed)
    collapse = check_collapse(task.problem, outputs, labels,
                              initial_dev_loss=tuner.initial_dev_loss,
                              best_dev_loss=tuner.best.get("loss"), trained=True,
                              label_names=task.label_names, mcc_interval=spans.get("mcc"))
    return {
        "chance": chance_level(task.problem, task.train["label"].to_numpy(), labels,
                               task.label_names),
        "intervals": spans,
        "collapsed": collapse.pop("collapsed"),
        "collapse_reason": collapse.pop("reason"),
        "collapse": collapse,
    }


# --------------------------------------------------------------------------------------------
# Public entry points


def finetune(
    task: TaskData | Mapping[str, Any],
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    method: str = "lora",
    lora: Mapping[str, Any] | LoraSettings | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float | None = None,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_length: int = 512,
    patience: int = 3,
    seed: int = 42,
    threads: int = 1,
    gpus: int | None = None,
    trust_remote_code: bool = False,
    merge: bool = False,
    genome_fasta: str | Path | None = None,
    rmt: Mapping[str, Any] | RMTSettings | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model_dir`` on ``task`` and write a run directory ``out_dir``; return metrics.

    ``task`` is a loaded :class:`TaskData` or a task spec dict (see :mod:`dnalm.finetune.tasks`;
    ``genome_fasta`` is the prepared genome of a ``bed`` task). ``lora`` holds ``r``, ``alpha``,
    ``dropout`` and ``target_modules`` (None: attention projections of the architecture).
    ``learning_rate`` None uses the method's default. ``gpus`` None uses CUDA when available.
    ``rmt`` (``enabled``, ``num_mem_tokens``, ``segment_length``, ``max_n_segments``,
    ``bptt_depth``, ``pooling``) wraps the model in a Recurrent Memory Transformer so that
    sequences longer than its window are classified whole (:mod:`dnalm.models.rmt`).
    The directory appears only when complete (see the module docstring for its content).
    """
    lora_cfg = lora if isinstance(lora, LoraSettings) else None
    settings = FinetuneSettings(
        method=method, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, warmup_ratio=warmup_ratio, max_length=max_length,
        patience=patience, seed=seed, threads=threads, gpus=gpus,
        trust_remote_code=trust_remote_code, merge=merge)
    rmt_cfg = rmt if isinstance(rmt, RMTSettings) else dict(rmt or {})
    settings = settings.with_overrides(lora=lora_cfg or dict(lora or {}), rmt=rmt_cfg)
    return run_finetune(task, model_dir, out_dir, settings, model_name=model_name,
                        genome_fasta=genome_fasta)


def run_finetune(task: TaskData | Mapping[str, Any], model_dir: str | Path,
                 out_dir: str | Path, settings: FinetuneSettings, *,
                 model_name: str | None = None,
                 genome_fasta: str | Path | None = None) -> dict[str, Any]:
    """:func:`finetune` with a ready :class:`FinetuneSettings` (what the workflow script calls)."""
    if not isinstance(task, TaskData):
        task = load_task(task, genome_fasta=genome_fasta, seed=settings.seed)
    tuner = FineTuner(task, model_dir, settings, model_name=model_name)
    tuner.fit()
    test_loss, test_metrics, outputs = tuner.evaluate("test")
    document = _metrics_document(tuner, test_loss, test_metrics)
    document.update(_yardsticks(tuner, outputs))
    primary = document["primary_metric"]
    log.info("test %s: %s (loss %.4f); trainable %d of %d parameters", primary,
             _fmt(test_metrics.get(primary)), test_loss, tuner.trainable_parameters,
             tuner.total_parameters)
    if document["collapsed"]:
        s = tuner.settings
        log.warning("%s/%s collapsed, not a result: %s (best dev loss %s; predicting the "
                    "class prior: %s); %s", task.name, tuner.model_name,
                    document["collapse_reason"], _fmt(tuner.best.get("loss")),
                    _fmt(tuner.prior_dev_loss()),
                    collapse_advice(tuner.history, method=s.method, learning_rate=s.lr,
                                    epochs=s.epochs))
    with atomic_dir(out_dir) as tmp:
        encoded = tuner.encoded["test"]
        extra = {"n_tokens": np.array([len(x) for x in encoded.ids], dtype=np.int32),
                 "truncated": encoded.truncated}
        write_table(predictions_table(task, outputs, extra), tmp / "predictions.parquet")
        document["outputs"] = {k: str(Path(out_dir) / Path(v).name)
                               for k, v in tuner.save_weights(tmp).items()}
        write_json(tmp / "metrics.json", document)
    return json_ready(document)


def finetune_from_paths(
    task_dir: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    problem: str = "classification",
    sequence_column: str = "sequence",
    label_column: str = "label",
    dev_fraction: float = 0.1,
    baseline_dir: str | Path | None = None,
    drop_invalid: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Fine-tune on a GUE-style folder (``train.csv``, ``dev.csv``, ``test.csv``) in one call.

    This is what ``dnalm finetune`` runs outside the workflow. Files may also be ``.tsv`` or
    ``.parquet``; without a dev file one is carved from train. ``options`` are the keyword
    arguments of :func:`finetune` (``method``, ``lora``, ``epochs``...); ``drop_invalid`` is
    the task option of that name (:mod:`dnalm.finetune.tasks`). With ``baseline_dir``
    the k-mer logistic-regression baseline is trained on the same splits and written there.
    """
    spec = task_spec_from_dir(task_dir, problem=problem, sequence_column=sequence_column,
                              label_column=label_column, dev_fraction=dev_fraction,
                              drop_invalid=drop_invalid)
    task = load_task(spec, seed=int(options.get("seed", 42)))
    metrics = finetune(task, model_dir, out_dir, **options)
    if baseline_dir is not None:
        from dnalm.finetune.baseline import kmer_baseline

        metrics["baseline"] = kmer_baseline(task, baseline_dir, seed=int(options.get("seed", 42)))
    return metrics


# --------------------------------------------------------------------------------------------
# Reloading


class FinetunedModel:
    """A saved run's model (adapter on its base, full model, or merged) ready to predict."""

    def __init__(self, model: torch.nn.Module, encoder: SequenceEncoder, meta: Mapping[str, Any],
                 device: torch.device) -> None:
        self.model = model
        self.encoder = encoder
        self.meta = dict(meta)
        self.device = device

    def predict(self, sequences: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Probabilities (n × classes) or values (n), computed as during fine-tuning."""
        return self._outputs(self.encoder.encode(list(sequences)), batch_size)

    def outputs(self, rows: Sequence[Sequence[int]], batch_size: int | None = None) -> np.ndarray:
        """Outputs for token-id rows (special tokens included), in row order; the rows run
        longest first, so that each batch pads little (predictions, variant effects)."""
        if not len(rows):
            return np.zeros((0,))
        order = np.argsort(-np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)),
                           kind="stable")
        ordered = Encoded([rows[i] for i in order], np.zeros(len(rows), dtype=bool))
        sorted_outputs = self._outputs(ordered, batch_size)
        result = np.empty_like(sorted_outputs)
        result[order] = sorted_outputs
        return result

    def _outputs(self, encoded: Encoded, batch_size: int | None) -> np.ndarray:
        return predict_outputs(
            self.model, encoded, pad_id=self.encoder.pad_id, device=self.device,
            problem=self.meta["problem"],
            batch_size=batch_size or int(self.meta.get("eval_batch_size", 64)),
            target_mean=float(self.meta.get("target_mean", 0.0)),
            target_std=float(self.meta.get("target_std", 1.0)))


def _weights_dir(run_dir: Path, which: str | None) -> Path:
    names = [which] if which else ["adapter", "model", "merged"]
    for name in names:
        if (run_dir / name / RUN_META).is_file():
            return run_dir / name
    if (run_dir / RUN_META).is_file():
        return run_dir
    raise ConfigError(f"no fine-tuned weights ({' or '.join(names)}/{RUN_META})",
                      where=str(run_dir))


def load_finetuned(run_dir: str | Path, *, which: str | None = None,
                   gpus: int | None = 0) -> FinetunedModel:
    """Reload a run directory's ``adapter/`` (on its base model), ``model/`` or ``merged/``."""
    from peft import PeftModel

    weights = _weights_dir(Path(run_dir), which)
    meta = json.loads((weights / RUN_META).read_text())
    device = pick_device(gpus)
    trust = bool(meta.get("trust_remote_code", False))
    is_adapter = (weights / "adapter_config.json").is_file()
    base_dir = meta["base_model"] if is_adapter else weights
    if is_adapter and meta.get("rmt"):
        loaded = load_rmt_classifier(base_dir, num_labels=int(meta["num_labels"]),
                                     problem=meta["problem"],
                                     rmt=RMTSettings(**meta["rmt"]), trust_remote_code=trust)
    else:  # a saved RMT model/ or merged/ loads through the registered Auto classes
        loaded = load_classifier(base_dir, num_labels=int(meta["num_labels"]),
                                 problem=meta["problem"], trust_remote_code=trust)
    model = loaded.model
    if is_adapter:
        model = PeftModel.from_pretrained(model, str(weights))
    model.to(device).eval()
    encoder = SequenceEncoder.from_dir(weights, max_length=int(meta["max_length"]),
                                       model_config=loaded.config)
    return FinetunedModel(model, encoder, meta, device)

