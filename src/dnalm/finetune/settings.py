"""Typed fine-tuning settings and their conversion from the ``finetune`` config section.

The JSON schema validates the section; :func:`finetune_settings` only turns the (validated) dict
into dataclasses, and re-checks the few values a schema cannot (a learning rate left to the
method's default), so that the Snakemake rule, the ``dnalm`` command and a Python caller all run
with the same defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dnalm.errors import ConfigError
from dnalm.model_settings import RMTSettings  # the finetune.rmt block (owned there: torch-free)

METHODS = ("lora", "full")

#: Learning rate when the config leaves it empty. LoRA trains few, freshly initialised weights
#: and tolerates (needs) a larger step than full fine-tuning, which would drift the whole
#: pre-trained encoder at that rate (DNABERT-2 used 3e-5 for full fine-tuning of a 117M model).
DEFAULT_LEARNING_RATE = {"lora": 5e-4, "full": 1e-4}


@dataclass(frozen=True)
class LoraSettings:
    """LoRA rank, scaling and dropout (DNABERT-2's script: r=8, alpha=32, dropout 0.05)."""

    r: int = 8
    alpha: float = 32.0
    dropout: float = 0.05
    #: Linear layer names (suffixes) to adapt; None picks the attention projections.
    target_modules: tuple[str, ...] | None = None


def rmt_settings(cfg: Mapping[str, Any] | RMTSettings | None) -> RMTSettings:
    """``RMTSettings`` from the ``finetune.rmt`` dict (None or {}: RMT off)."""
    if isinstance(cfg, RMTSettings):
        return cfg
    cfg = {k: v for k, v in dict(cfg or {}).items() if v is not None}
    unknown = sorted(set(cfg) - {f for f in RMTSettings.__dataclass_fields__})
    if unknown:
        raise ConfigError(f"unknown finetune.rmt key(s): {', '.join(unknown)}")
    return RMTSettings(**cfg)


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything that decides a fine-tuning run besides the task and the model."""

    method: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 512
    #: Epochs without a lower dev loss before stopping; 0 never stops early.
    patience: int = 3
    seed: int = 42
    threads: int = 1
    #: GPUs to use: None picks CUDA when available, 0 forces the CPU. One GPU at most is used.
    gpus: int | None = None
    trust_remote_code: bool = False
    merge: bool = False
    #: Recurrent Memory Transformer wrapping for inputs longer than the model's window.
    rmt: RMTSettings = field(default_factory=RMTSettings)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"fine-tuning method {self.method!r} is not one of "
                              f"{', '.join(METHODS)}")
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
                  "max_length": self.max_length >= 2, "patience": self.patience >= 0,
                  "threads": self.threads >= 1, "lora.r": self.lora.r >= 1,
                  "lora.dropout": 0 <= self.lora.dropout < 1,
                  "warmup_ratio": 0 <= self.warmup_ratio < 1,
                  "learning_rate": self.learning_rate is None or self.learning_rate > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"finetune setting(s) out of range: {', '.join(bad)}")

    @property
    def lr(self) -> float:
        """The learning rate in use (the method's default when none was set)."""
        return self.learning_rate or DEFAULT_LEARNING_RATE[self.method]

    def with_overrides(self, **changes: Any) -> FinetuneSettings:
        """A copy with some fields changed (``lora`` and ``rmt`` may be dicts)."""
        if isinstance(changes.get("lora"), Mapping):
            changes["lora"] = lora_settings(changes["lora"])
        if isinstance(changes.get("rmt"), Mapping):
            changes["rmt"] = rmt_settings(changes["rmt"])
        return replace(self, **changes)


def lora_settings(cfg: Mapping[str, Any] | None) -> LoraSettings:
    """``LoraSettings`` from the ``finetune.lora`` dict."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - {"r", "alpha", "dropout", "target_modules"})
    if unknown:
        raise ConfigError(f"unknown finetune.lora key(s): {', '.join(unknown)}")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    defaults = LoraSettings()
    return LoraSettings(
        r=int(cfg.get("r", defaults.r)),
        alpha=float(cfg.get("alpha", defaults.alpha)),
        dropout=float(cfg.get("dropout", defaults.dropout)),
        target_modules=tuple(targets) if targets else None,
    )


_SETTING_KEYS = ("method", "epochs", "batch_size", "learning_rate", "weight_decay",
                 "warmup_ratio", "max_length", "patience", "merge")


def finetune_settings(section: Mapping[str, Any], *, seed: int = 42, threads: int = 1,
                      gpus: int | None = None,
                      trust_remote_code: bool = False) -> FinetuneSettings:
    """``FinetuneSettings`` from the ``finetune`` config section (tasks/models keys ignored)."""
    values: dict[str, Any] = {k: section[k] for k in _SETTING_KEYS if section.get(k) is not None}
    return FinetuneSettings(lora=lora_settings(section.get("lora")),
                            rmt=rmt_settings(section.get("rmt")), seed=int(seed),
                            threads=int(threads), gpus=gpus,
                            trust_remote_code=bool(trust_remote_code), **values)


@dataclass(frozen=True)
class BaselineSettings:
    """The k-mer baseline's grid: k-mer sizes and inverse regularisation strengths."""

    k: tuple[int, ...] = (4, 5, 6)
    C: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    seed: int = 42
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if not self.k or any(not 1 <= k <= 8 for k in self.k):
            raise ConfigError(f"baseline k must be between 1 and 8, got {list(self.k)}")
        if not self.C or any(c <= 0 for c in self.C):
            raise ConfigError(f"baseline C values must be positive, got {list(self.C)}")


@dataclass(frozen=True)
class TrackSettings:
    """A genome-wide track of a fine-tuned run (a ``tracks.<name>`` entry).

    Windows of ``window_bp`` every ``stride_bp`` bases over the genome, cut into ``regions``
    jobs; the value is the probability of class ``class_index`` (or the regression value);
    windows with more than ``max_n_fraction`` N get none.
    """

    window_bp: int
    stride_bp: int
    regions: int = 2
    class_index: int = 1
    batch_size: int = 64
    max_n_fraction: float = 0.5

    def __post_init__(self) -> None:
        checks = {"window_bp": self.window_bp >= 1, "stride_bp": self.stride_bp >= 1,
                  "regions": self.regions >= 1, "class_index": self.class_index >= 0,
                  "batch_size": self.batch_size >= 1,
                  "max_n_fraction": 0 <= self.max_n_fraction <= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"track setting(s) out of range: {', '.join(bad)}")


#: ``tracks.<name>`` keys that wire the workflow (which genome, task and run), not the track.
TRACK_WORKFLOW_KEYS = ("genome", "task", "run", "tss_bed")


def track_settings(spec: Mapping[str, Any], *, name: str) -> TrackSettings:
    """``TrackSettings`` from a ``tracks.<name>`` entry."""
    from dnalm.config import settings_from

    return settings_from(TrackSettings, spec, where=f"tracks.{name}", ignore=TRACK_WORKFLOW_KEYS)


PREDICT_LONG_POLICIES = ("mean", "truncate")


@dataclass(frozen=True)
class PredictSettings:
    """How a fine-tuned run predicts the user's sequences (the ``predictions`` section).

    ``long``: inputs longer than the run's own input are averaged over windows (``mean``) or
    cut to the first window (``truncate``, counted). ``batch_size`` None: the run's own
    evaluation batch size.
    """

    long: str = "mean"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.long not in PREDICT_LONG_POLICIES:
            raise ConfigError(f"long-input policy {self.long!r} is not one of "
                              f"{', '.join(PREDICT_LONG_POLICIES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def predict_settings(section: Mapping[str, Any]) -> PredictSettings:
    """``PredictSettings`` from the ``predictions`` section (inputs and runs wire the workflow)."""
    from dnalm.config import settings_from

    return settings_from(PredictSettings, section, where="predictions",
                         ignore=("inputs", "runs"))


EFFECT_WINDOWS = ("centred", "tiled")
#: ``effects`` keys that wire the workflow (which runs, variant and saturation sets).
EFFECT_WORKFLOW_KEYS = ("runs", "variants", "saturation")


@dataclass(frozen=True)
class EffectSettings:
    """How a fine-tuned run scores variants (``effects`` section, :mod:`dnalm.finetune.effects`).

    ``class_index``: the class whose change in log-odds is ``score`` (and the VCF's
    ``DNALM_FT``); every class's changes are in the table. ``window_bp`` None: the run's own
    input, as its tokenizer reads the genome. ``windows``: ``centred`` on each variant, or
    ``tiled`` (nearby variants share a reference window; saturation always tiles).
    ``average_strands``: the mean of the forward and reverse-complement windows' outputs.
    ``map_max_bp``: mutation-map pictures draw regions up to this length. Region jobs follow
    the variant set's partition (``scoring.regions`` / ``variants_per_job``).
    """

    class_index: int = 1
    average_strands: bool = False
    window_bp: int | None = None
    windows: str = "centred"
    batch_size: int | None = None
    map_max_bp: int = 600

    def __post_init__(self) -> None:
        checks = {"class_index": self.class_index >= 0,
                  "window_bp": self.window_bp is None or self.window_bp >= 1,
                  "windows": self.windows in EFFECT_WINDOWS,
                  "batch_size": self.batch_size is None or self.batch_size >= 1,
                  "map_max_bp": self.map_max_bp >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"effects setting(s) out of range: {', '.join(bad)}")


def effect_settings(section: Mapping[str, Any] | None) -> EffectSettings:
    """``EffectSettings`` from the ``effects`` section."""
    from dnalm.config import settings_from

    return settings_from(EffectSettings, section, where="effects", ignore=EFFECT_WORKFLOW_KEYS)


def _as_tuple(value: Any, cast: type) -> tuple:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(cast(v) for v in value)
    return (cast(value),)


def baseline_settings(cfg: Mapping[str, Any] | None, *, seed: int = 42) -> BaselineSettings:
    """``BaselineSettings`` from the ``finetune.baseline`` dict (k and C: a value or a list)."""
    cfg = dict(cfg or {})
    defaults = BaselineSettings()
    return BaselineSettings(
        k=_as_tuple(cfg.get("k", defaults.k), int),
        C=_as_tuple(cfg.get("C", defaults.C), float),
        seed=int(seed),
        max_iter=int(cfg.get("max_iter", defaults.max_iter)),
    )
