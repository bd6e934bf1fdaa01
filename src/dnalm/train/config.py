"""Pretraining configuration: one flat, validated dataclass that a Snakemake rule fills from YAML.

All keys have defaults except ``preset``. :meth:`PretrainConfig.from_dict` rejects unknown keys
(a typo would otherwise silently train with a default) and :meth:`PretrainConfig.validate`
rejects values that would only fail hours later. A segment checkpoint stores the resolved config;
resuming with a config that differs in anything but :data:`RESUMABLE_KEYS` is refused, because the
continued run would no longer be the run that was started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dnalm.errors import ConfigError
from dnalm.models.presets import PRESETS, SIZES
from dnalm.models.rmt import SPECIAL_PER_SEGMENT
from dnalm.train.data import LONG_CHUNK_POLICIES

SCHEDULES = ("linear", "constant")
#: Defaults of the ``rmt`` block (see :class:`dnalm.models.rmt.RMTForMaskedLM`).
RMT_DEFAULTS = {"num_mem_tokens": 10, "segments": 2, "bptt_depth": -1}
PRECISIONS = ("auto", "bf16", "fp32")

#: Keys that may change between segments without invalidating the finished ones. ``total_steps``
#: is here so a run can be extended: new segments are appended, old ones reused (with the
#: ``linear`` schedule the learning rate then follows the new length from the next segment on).
RESUMABLE_KEYS = frozenset(
    {
        "total_steps",
        "log_every",
        "val_max_batches",
        "val_batch_size",
        "validate_at_start",
        "compile",
        "probe_memory",
        "deterministic",
    }
)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run (model, data, optimisation, segmentation).

    ``batch_size`` is sequences per micro-batch per process; the effective batch is
    ``batch_size * grad_accum * world_size`` sequences of ``max_length`` tokens.
    """

    preset: str
    size: str = "tiny"
    max_length: int | None = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    attn_implementation: str | None = None
    #: Recurrent memory (GENA-LM's RMT) during pretraining: ``{num_mem_tokens, segments,
    #: bptt_depth}``. Rows then hold ``segments`` model windows; empty: no memory.
    rmt: Mapping[str, Any] = field(default_factory=dict)
    # optimisation
    batch_size: int = 32
    grad_accum: int = 1
    total_steps: int = 10_000
    segment_steps: int = 2_000
    learning_rate: float = 4e-4
    warmup_steps: int = 500
    schedule: str = "linear"
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    # masking
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    span_masking: bool | None = None
    # data
    packing: bool = True
    long_chunks: str = "split"
    shuffle_window: int = 8192
    # evaluation and logging
    log_every: int = 50
    val_max_batches: int = 100
    val_batch_size: int | None = None
    validate_at_start: bool = True
    # runtime
    seed: int = 42
    precision: str = "auto"
    compile: bool = False
    probe_memory: bool = True
    #: deterministic GPU kernels (slower): on CUDA some backward kernels accumulate with atomics,
    #: so two identical runs, or a segmented and an uncut one, differ in the last bits
    deterministic: bool = False

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainConfig:
        """Build from a mapping (YAML section); unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown pretraining option(s): {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(known))}"
            )
        if "preset" not in values:
            raise ConfigError("pretraining config needs a 'preset'")
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        config = cls(**{key: _coerce(key, value, types[key]) for key, value in values.items()})
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/torch.save friendly)."""
        out = dataclasses.asdict(self)
        out["model_overrides"] = dict(self.model_overrides)
        out["rmt"] = dict(self.rmt)
        return out

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work; cheap, no I/O."""
        if self.preset not in PRESETS:
            raise ConfigError(
                f"unknown model preset {self.preset!r}; choose one of {', '.join(sorted(PRESETS))}"
            )
        if self.size not in SIZES:
            raise ConfigError(f"unknown model size {self.size!r}; choose one of {', '.join(SIZES)}")
        positive = ("batch_size", "grad_accum", "total_steps", "segment_steps", "log_every")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "val_max_batches", "shuffle_window"):
            if int(getattr(self, key)) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.long_chunks not in LONG_CHUNK_POLICIES:
            raise ConfigError(f"long_chunks must be one of {', '.join(LONG_CHUNK_POLICIES)}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ConfigError("val_batch_size must be >= 1")
        if self.rmt:
            self.rmt_settings  # noqa: B018  (validates)

    @property
    def rmt_settings(self) -> dict[str, int] | None:
        """The ``rmt`` block with defaults filled in and checked (None: no memory)."""
        if not self.rmt:
            return None
        unknown = sorted(set(self.rmt) - set(RMT_DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown rmt option(s): {', '.join(unknown)}; valid: "
                              f"{', '.join(RMT_DEFAULTS)}")
        values = {**RMT_DEFAULTS, **self.rmt}
        try:
            values = {k: int(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"rmt options must be integers, got {dict(self.rmt)}") from None
        if values["num_mem_tokens"] < 1:
            raise ConfigError("rmt num_mem_tokens must be >= 1")
        if values["segments"] < 2:
            raise ConfigError("rmt segments must be >= 2 (one segment has nothing to remember)")
        if values["bptt_depth"] != -1 and values["bptt_depth"] < 1:
            raise ConfigError("rmt bptt_depth must be -1 (all segments) or >= 1")
        return values

    @property
    def row_length(self) -> int:
        """Tokens per training row: ``max_length``, or with memory ``segments`` windows of
        content (each window loses its memory slots and 3 special tokens) plus [CLS]/[SEP]."""
        length = int(self.max_length or 0)
        rmt = self.rmt_settings
        if rmt is None:
            return length
        return rmt["segments"] * (length - rmt["num_mem_tokens"] - SPECIAL_PER_SEGMENT) + 2

    @property
    def num_segments(self) -> int:
        """How many segments (Snakemake jobs) ``total_steps`` is cut into."""
        return -(-self.total_steps // self.segment_steps)

    def segment_range(self, segment: int) -> tuple[int, int]:
        """Steps ``[start, end)`` of ``segment``; ConfigError if it lies beyond ``total_steps``."""
        if segment < 0 or segment >= self.num_segments:
            raise ConfigError(
                f"segment {segment} does not exist: {self.total_steps} steps in segments of "
                f"{self.segment_steps} make {self.num_segments} segment(s)"
            )
        start = segment * self.segment_steps
        return start, min(start + self.segment_steps, self.total_steps)


def incompatible_keys(saved: Mapping[str, Any], current: PretrainConfig) -> list[str]:
    """Keys whose values differ between a checkpoint's config and ``current`` (and matter)."""
    now = current.to_dict()
    return sorted(
        key
        for key in set(saved) | set(now)
        if key not in RESUMABLE_KEYS and saved.get(key) != now.get(key)
    )


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Convert a YAML value to the field's type, or raise ConfigError naming the key.

    YAML 1.1 reads ``4e-4`` (no dot) as a string and ``1e4`` as a string too; numbers that are
    written as strings or floats with an integral value are accepted, anything else is refused.
    """
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in kinds:
        return None
    try:
        if "bool" in kinds:
            if isinstance(value, bool):
                return value
            raise TypeError
        if "int" in kinds:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if "float" in kinds:
            return float(value)
        if "str" in kinds:
            if isinstance(value, str):
                return value
            raise TypeError
    except (TypeError, ValueError):
        expected = " or ".join(k for k in kinds if k != "None")
        raise ConfigError(f"pretraining option {key} must be {expected}, got {value!r}") from None
    if annotation.startswith("Mapping") and not isinstance(value, Mapping):
        raise ConfigError(f"pretraining option {key} must be a mapping, got {value!r}")
    return value
