"""Sequence-classification models from masked-LM directories, and LoRA wrapping.

A pre-trained directory holds a masked-LM; ``AutoModelForSequenceClassification`` loads its
encoder and initialises what the checkpoint lacks: the classifier, and for BERT also the pooler
(MLM checkpoints have none). Those newly initialised modules are "the head": under LoRA they are
trained in full (peft ``modules_to_save``) next to the low-rank adapters, because a frozen random
pooler would be a fixed random projection in front of the classifier. The head is found from the
loader's list of missing weights, so it is right for any architecture without a table.

LoRA targets are chosen per architecture when the config leaves ``target_modules`` empty: the
attention projections, which is what LoRA adapts in its paper and in DNABERT-2's script, under
each family's own module names in transformers 5:

======================  ====================================================
BERT, ESM (NT), BigBird  ``query``, ``key``, ``value``, ``attention.output.dense``
ModernBERT               ``Wqkv`` (fused q/k/v), ``attn.Wo``
DNABERT-2 remote code    ``Wqkv``, ``attention.output.dense``
======================  ====================================================

DNABERT-2's own script targets ``query,value``, names its fused ``Wqkv`` model does not have (so
it adapts nothing but the head); choosing from the modules that exist avoids that silent failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnalm.errors import ConfigError
from dnalm.runtime import count_parameters

log = logging.getLogger(__name__)

#: Attention-projection names, in order of preference; the first group with a match wins for
#: q/k/v, and every output projection that exists is added.
QKV_CANDIDATES: tuple[tuple[str, ...], ...] = (("Wqkv",), ("query", "key", "value"),
                                               ("q_proj", "k_proj", "v_proj"))
OUTPUT_CANDIDATES: tuple[str, ...] = ("attention.output.dense", "attn.Wo", "o_proj")


@dataclass
class LoadedModel:
    """A classification model, the names of its newly initialised head modules, its config."""

    model: torch.nn.Module
    head_modules: list[str]
    config: Any


def _top_module(key: str, prefix: str) -> str:
    """The module a missing weight belongs to, cut to a child of the encoder or the model.

    ``bert.pooler.dense.weight`` → ``bert.pooler``; ``classifier.out_proj.bias`` → ``classifier``.
    """
    parts = key.split(".")[:-1]
    if parts and parts[0] == prefix:
        return ".".join(parts[:2])
    return parts[0] if parts else key


def head_module_names(model: torch.nn.Module, missing_keys: Iterable[str]) -> list[str]:
    """Modules that hold newly initialised weights, plus the classifier itself.

    The loader (:func:`dnalm.models.directory.load_classifier_model`) has already refused any
    missing encoder weight, so what is missing here is the new head.
    """
    prefix = getattr(model, "base_model_prefix", "")
    names = {_top_module(k, prefix) for k in missing_keys}
    children = dict(model.named_children())
    names |= {n for n in ("classifier", "score") if n in children}
    return sorted(names)


def load_classifier(model_dir: str | Path, *, num_labels: int, problem: str,
                    trust_remote_code: bool = False) -> LoadedModel:
    """Load ``model_dir`` as a sequence classifier (or regressor) in float32.

    Any directory :mod:`dnalm.models.directory` recognises: pipeline models, published
    DNABERT / DNABERT-2 / Nucleotide Transformer / GENA-LM layouts (natively, no remote code),
    fine-tuned full models. ``trust_remote_code`` only matters for a directory dnalm does not
    recognise.
    """
    from dnalm.models.directory import inspect_model_dir, load_classifier_model

    path = Path(model_dir)
    md = inspect_model_dir(path, trust_remote_code=trust_remote_code)
    problem_type = "regression" if problem == "regression" else "single_label_classification"
    if md.family.name == "rmt" and "RMTForMaskedLM" in (md.raw_config.get("architectures")
                                                         or []):
        # pretrained with memory: its encoder only makes sense with that memory
        log.info("model %s was pretrained with recurrent memory: fine-tuned as an RMT "
                 "classifier with its own segment settings", path)
        return load_rmt_classifier(path, num_labels=num_labels, problem=problem, rmt=None)
    model, config, missing = load_classifier_model(
        md, num_labels=num_labels, problem_type=problem_type,
        trust_remote_code=trust_remote_code)
    head = head_module_names(model, missing)
    log.info("model %s: %s, %d parameters, head (trained in full) %s", path,
             type(model).__name__, count_parameters(model), ", ".join(head))
    return LoadedModel(model=model, head_modules=head, config=config)


def module_parameters(model: torch.nn.Module, names: Sequence[str]) -> int:
    """Parameters of the named submodules."""
    modules = dict(model.named_modules())
    return sum(count_parameters(modules[n]) for n in names if n in modules)


def _linear_names(model: torch.nn.Module, exclude: Sequence[str]) -> list[str]:
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if any(name == e or name.startswith(e + ".") for e in exclude):
            continue
        out.append(name)
    return out


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def default_target_modules(model: torch.nn.Module, head_modules: Sequence[str]) -> list[str]:
    """The attention projections of ``model`` under their own names (see the module docstring)."""
    linears = _linear_names(model, head_modules)
    targets: list[str] = []
    for group in QKV_CANDIDATES:
        if all(any(_matches(n, t) for n in linears) for t in group):
            targets += group
            break
    targets += [t for t in OUTPUT_CANDIDATES if any(_matches(n, t) for n in linears)]
    if not targets:
        model_type = getattr(getattr(model, "config", None), "model_type", "?")
        raise ConfigError(f"cannot choose LoRA target modules for model type {model_type!r}; "
                          "set finetune.lora.target_modules (names of its Linear layers)")
    return targets


def adapted_linears(model: torch.nn.Module, targets: Sequence[str],
                    head_modules: Sequence[str]) -> dict[str, torch.nn.Linear]:
    """The Linear layers LoRA adapts: every non-head Linear whose name ends in a target."""
    modules = dict(model.named_modules())
    return {n: modules[n] for n in _linear_names(model, head_modules)
            if any(_matches(n, t) for t in targets)}


def check_targets(model: torch.nn.Module, targets: Sequence[str],
                  head_modules: Sequence[str]) -> None:
    """Every requested target must match a Linear layer (peft ignores partial mismatches)."""
    linears = _linear_names(model, head_modules)
    unmatched = [t for t in targets if not any(_matches(n, t) for n in linears)]
    if unmatched:
        examples = sorted({n.rsplit(".", 1)[-1] for n in linears})
        raise ConfigError(f"LoRA target module(s) {', '.join(unmatched)} match no Linear layer; "
                          f"this model has: {', '.join(examples)}")


def apply_lora(loaded: LoadedModel, *, r: int, alpha: float, dropout: float,
               target_modules: Sequence[str] | None, seed: int) -> tuple[Any, list[str]]:
    """Wrap the model with peft LoRA adapters; base weights frozen, head trained in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(target_modules) if target_modules else default_target_modules(
        loaded.model, loaded.head_modules)
    check_targets(loaded.model, targets, loaded.head_modules)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=int(r), lora_alpha=alpha,
                        lora_dropout=float(dropout), target_modules=targets, bias="none",
                        modules_to_save=list(loaded.head_modules))
    n_adapted = len(adapted_linears(loaded.model, targets, loaded.head_modules))
    torch.manual_seed(seed)  # LoRA A matrices are drawn at random
    peft_model = get_peft_model(loaded.model, config)
    log.info("LoRA r=%d alpha=%s dropout=%s on %d matrices (%s)", r, alpha, dropout, n_adapted,
             ", ".join(targets))
    return peft_model, targets


def load_rmt_classifier(model_dir: str | Path, *, num_labels: int, problem: str,
                        rmt: Any, trust_remote_code: bool = False) -> LoadedModel:
    """``model_dir``'s encoder wrapped in a Recurrent Memory Transformer classifier.

    ``rmt`` is an :class:`~dnalm.finetune.settings.RMTSettings` (None: a memory-pretrained
    directory with its own settings). The head (trained in full under
    LoRA) is the classifier plus the learned initial memory; LoRA targets are found in the inner
    encoder under the same per-architecture names as for a plain classifier.
    """
    from dnalm.models.rmt import RMTForSequenceClassification, rmt_head_modules

    problem_type = "regression" if problem == "regression" else "single_label_classification"
    try:
        if rmt is None:
            model = RMTForSequenceClassification.from_rmt_masked_lm(
                model_dir, num_labels=num_labels, problem_type=problem_type, pooling="memory")
        else:
            model = RMTForSequenceClassification.from_encoder(
                model_dir, num_labels=num_labels, problem_type=problem_type,
                num_mem_tokens=rmt.num_mem_tokens, segment_length=rmt.segment_length,
                max_n_segments=rmt.max_n_segments, bptt_depth=rmt.bptt_depth,
                pooling=rmt.pooling, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot wrap the model in RMT: {first}", where=str(model_dir)) from exc
    head = rmt_head_modules()
    log.info("model %s: RMT over %s, %d memory tokens, %d x %d-token segments, %d parameters",
             model_dir, type(model.encoder).__name__, model.config.num_mem_tokens,
             model.config.max_n_segments, model.config.segment_length, count_parameters(model))
    return LoadedModel(model=model, head_modules=head, config=model.config)
