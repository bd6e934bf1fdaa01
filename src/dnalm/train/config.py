"""Pretraining settings: one flat, validated dataclass per run, and the one function that reads a
run of the workflow config into it.

Torch-free on purpose: Snakemake reads these settings while it parses the workflow (the rules
count a run's jobs with :func:`pretrain_settings`), so importing this module must not import
torch. Each default is written once, in :class:`PretrainConfig` or :class:`PretrainMemory`; the
schema repeats it next to the key's description and ``tests/test_pretrain_settings.py`` checks
that the two agree.

All keys have defaults except ``preset``. :meth:`PretrainConfig.from_dict` rejects unknown keys
(a typo would otherwise silently train with a default), reads renamed keys under their current
name with one deprecation line, and :meth:`PretrainConfig.validate` rejects values that would
only fail hours later. A checkpoint stores the resolved config; resuming with a config that
differs in anything but :data:`RESUMABLE_KEYS` is refused (old and new spellings of a key count
as the same), because the continued run would no longer be the run that was started.

Words: a run of ``total_steps`` optimizer steps is trained as a chain of Snakemake *jobs* of
``steps_per_job`` steps; job ``n`` writes its checkpoint to ``results/models/{model}/segments/{n}``
(the directory name, the rule ``pretrain_segment`` and ``dnalm pretrain-segment`` keep the word
"segment" for it, so existing runs resume). In the ``rmt`` block a *segment* is one model window
of a recurrent-memory row.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnalm.errors import ConfigError
from dnalm.model_settings import PRESET_NAMES, SIZES, input_length, segment_length_for

log = logging.getLogger(__name__)

SCHEDULES = ("linear", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
#: What happens to a chunk longer than a row (see :mod:`dnalm.train.data`).
LONG_CHUNK_POLICIES = ("split", "crop")
#: The seed of a run that names none and is not given the workflow's: the default of the
#: config's top-level ``seed`` (the test of the settings checks the two agree).
DEFAULT_SEED = 42
#: Shortest model window in tokens ([CLS] and [SEP] included) that the presets build
#: (:func:`dnalm.models.presets.resolve_max_length` refuses shorter ones at job time).
MIN_MAX_LENGTH = 8
#: Keys of a ``pretraining.models`` entry that the workflow reads, not the training loop.
WORKFLOW_KEYS = ("tokenizer", "genomes")
#: Renamed keys, old -> current: the old name is still read, with one deprecation line.
RENAMED = {"segment_steps": "steps_per_job"}
RENAMED_RMT = {"segments": "max_n_segments"}

#: Keys that may change between jobs without invalidating the finished ones. ``total_steps``
#: is here so a run can be extended: new jobs are appended, old ones reused (with the
#: ``linear`` schedule the learning rate then follows the new length from the next job on).
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
class PretrainMemory:
    """The ``rmt`` block: recurrent memory (GENA-LM's RMT) during pretraining.

    A training row is ``max_n_segments`` model windows (segments); ``num_mem_tokens`` memory
    tokens carry what one window saw into the next, and gradients flow back through
    ``bptt_depth`` segments (-1: all of them). See :class:`dnalm.models.rmt.RMTForMaskedLM`.
    """

    num_mem_tokens: int = 10
    max_n_segments: int = 2
    bptt_depth: int = -1

    def __post_init__(self) -> None:
        if self.num_mem_tokens < 1:
            raise ConfigError("rmt num_mem_tokens must be >= 1")
        if self.max_n_segments < 2:
            raise ConfigError(
                "rmt max_n_segments must be >= 2 (one segment has nothing to remember)")
        if self.bptt_depth != -1 and self.bptt_depth < 1:
            raise ConfigError("rmt bptt_depth must be -1 (all segments) or >= 1")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainMemory:
        """From the (current-spelling) ``rmt`` mapping; unknown keys and non-integers raise."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(f"unknown rmt option(s): {', '.join(unknown)}; valid: "
                              f"{', '.join(valid)}")
        try:
            return cls(**{key: _integer(value) for key, value in values.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"rmt options must be integers, got {dict(values)}") from None


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run (model, data, optimisation, jobs).

    ``batch_size`` is sequences per micro-batch per process; the effective batch is
    ``batch_size * grad_accum * world_size`` sequences of :attr:`row_length` tokens.
    """

    preset: str
    size: str = "tiny"
    #: model window in tokens ([CLS]/[SEP] included); None: the preset's default for the size
    max_length: int | None = None
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    attn_implementation: str | None = None
    #: Recurrent memory: rows of ``rmt.max_n_segments`` model windows; None: no memory. A mapping
    #: given here is read by :meth:`PretrainMemory.from_dict` (``{}``: memory with its defaults).
    rmt: PretrainMemory | None = None
    # optimisation
    batch_size: int = 32
    grad_accum: int = 1
    total_steps: int = 10_000
    #: optimizer steps per Snakemake job (one checkpoint each, ``segments/{n}``)
    steps_per_job: int = 2_000
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
    #: None: the preset's choice (DNABERT masks spans of k tokens)
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
    #: None: the workflow's top-level seed (:func:`pretrain_settings`), else :data:`DEFAULT_SEED`
    seed: int | None = None
    precision: str = "auto"
    compile: bool = False
    probe_memory: bool = True
    #: deterministic GPU kernels (slower): on CUDA some backward kernels accumulate with atomics,
    #: so two identical runs, or a segmented and an uncut one, differ in the last bits
    deterministic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rmt, Mapping):
            object.__setattr__(self, "rmt", PretrainMemory.from_dict(self.rmt))
        if self.seed is None:
            object.__setattr__(self, "seed", DEFAULT_SEED)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "pretraining"
                  ) -> PretrainConfig:
        """Build from a mapping (YAML section); unknown keys raise ConfigError.

        Renamed keys (:data:`RENAMED`, :data:`RENAMED_RMT`) are read under their current name;
        ``where`` names the entry in the one deprecation line this logs for them.
        """
        values, renamed = current_spelling(values)
        _warn_renamed(where, renamed)
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
        return out

    def rule_params(self) -> dict[str, Any]:
        """What the Snakemake rule hands Snakemake as ``params``: every setting but
        ``total_steps``. Snakemake reruns a finished job whose params change, and raising
        ``total_steps`` must append jobs to a run, not redo the finished ones; the job itself
        reads ``total_steps`` through :func:`pretrain_settings`."""
        return {k: v for k, v in self.to_dict().items() if k != "total_steps"}

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work; cheap, no I/O, no torch."""
        if self.preset not in PRESET_NAMES:
            raise ConfigError(
                f"unknown model preset {self.preset!r}; choose one of "
                f"{', '.join(sorted(PRESET_NAMES))}"
            )
        if self.size not in SIZES:
            raise ConfigError(f"unknown model size {self.size!r}; choose one of {', '.join(SIZES)}")
        positive = ("batch_size", "grad_accum", "total_steps", "steps_per_job", "log_every")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "val_max_batches", "shuffle_window"):
            if int(getattr(self, key)) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        # what the job would refuse after hours of upstream work, refused while parsing
        if self.max_length is not None and int(self.max_length) < MIN_MAX_LENGTH:
            raise ConfigError(f"max_length must be >= {MIN_MAX_LENGTH} tokens ([CLS] and [SEP] "
                              f"included), got {self.max_length}")
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be between 0 and 1 (exclusive), got "
                              f"{self.mlm_probability}")
        if self.mask_replace_prob < 0 or self.random_replace_prob < 0 \
                or self.mask_replace_prob + self.random_replace_prob > 1:
            raise ConfigError("mask_replace_prob and random_replace_prob must be >= 0 and sum "
                              f"to at most 1, got {self.mask_replace_prob} and "
                              f"{self.random_replace_prob}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.long_chunks not in LONG_CHUNK_POLICIES:
            raise ConfigError(f"long_chunks must be one of {', '.join(LONG_CHUNK_POLICIES)}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ConfigError("val_batch_size must be >= 1")

    @property
    def preset_spec(self) -> Any:
        """The :class:`dnalm.models.presets.Preset` named by ``preset``: the one lookup of the
        preset for the training loop, its masking and its data (imports the model code, so it is
        for the job, not for parsing the workflow)."""
        from dnalm.models.presets import get_preset

        return get_preset(self.preset)

    @property
    def row_length(self) -> int:
        """Tokens per training row: ``max_length``, or with memory ``rmt.max_n_segments`` windows
        of content (each window loses its memory slots and 3 special tokens) plus [CLS]/[SEP]."""
        length = int(self.max_length or 0)
        if self.rmt is None:
            return length
        return input_length(segment_length_for(length, self.rmt.num_mem_tokens),
                            self.rmt.max_n_segments)

    @property
    def num_segments(self) -> int:
        """How many jobs (checkpoints ``segments/0..n-1``) ``total_steps`` is cut into."""
        return -(-self.total_steps // self.steps_per_job)

    def segment_range(self, segment: int) -> tuple[int, int]:
        """Steps ``[start, end)`` of job ``segment``; ConfigError if it lies beyond
        ``total_steps``."""
        if segment < 0 or segment >= self.num_segments:
            raise ConfigError(
                f"segment {segment} does not exist: {self.total_steps} steps at "
                f"{self.steps_per_job} steps per job make {self.num_segments} segment(s)"
            )
        start = segment * self.steps_per_job
        return start, min(start + self.steps_per_job, self.total_steps)


def pretrain_settings(config: Mapping[str, Any], name: str) -> PretrainConfig:
    """The resolved settings of pretraining run ``name`` of the workflow config ``config``.

    The one reader of a ``pretraining.models`` entry, for the rules (how many jobs), the rule's
    script and ``dnalm pretrain-segment --config config.yaml --model NAME``: workflow-only keys
    dropped, renamed keys read, defaults from :class:`PretrainConfig`, and the seed of the
    config's top level when the entry gives none.
    """
    try:
        entry = config["pretraining"]["models"][name]
    except (KeyError, TypeError):
        raise ConfigError(f"no pretraining run {name!r} under pretraining.models") from None
    values = {k: v for k, v in entry.items() if k not in WORKFLOW_KEYS}
    if values.get("seed") is None:
        values["seed"] = config.get("seed")
    return PretrainConfig.from_dict(values, where=f"pretraining.models.{name}")


def load_settings(path: str | Path | None, sets: Sequence[str] = (), *,
                  model: str | None = None) -> PretrainConfig:
    """Settings from a YAML/JSON file and ``key=value`` overrides (what the command line takes).

    The file is either one run's keys (optionally under a ``pretrain:`` key) or a workflow
    config, whose run ``model`` is then read by :func:`pretrain_settings`.
    """
    import yaml

    loaded: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
            raise ConfigError(f"cannot read pretraining settings: {reason}",
                              where=str(path)) from None
        if not isinstance(loaded, dict):
            raise ConfigError("pretraining settings must be a mapping", where=str(path))
    overrides = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    if "pretraining" in loaded:
        if model is None:
            raise ConfigError("a workflow config holds several runs: name one with --model",
                              where=str(path))
        entry = dict(pretrain_settings(loaded, model).to_dict(), **overrides)
        return PretrainConfig.from_dict(entry, where=f"pretraining.models.{model}")
    if model is not None:
        raise ConfigError("--model needs a workflow config (with a pretraining section)",
                          where=str(path))
    return PretrainConfig.from_dict({**dict(loaded.get("pretrain", loaded)), **overrides},
                                    where=str(path) if path is not None else "pretraining")


def current_spelling(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``values`` with renamed keys under their current names, and the old names that were used.

    Snakemake fills every key the schema gives a default, so a config that still says
    ``segment_steps: 150`` arrives with ``steps_per_job`` at its default as well: a current key
    at its default gives way to the old key; a current key set to another value than the old one
    is a contradiction.
    """
    out = dict(values)
    used = _rename(out, RENAMED, _defaults(PretrainConfig), "")
    if isinstance(out.get("rmt"), Mapping):
        rmt = dict(out["rmt"])
        used += _rename(rmt, RENAMED_RMT, _defaults(PretrainMemory), "rmt.")
        out["rmt"] = rmt
    return out, used


def incompatible_keys(saved: Mapping[str, Any], current: PretrainConfig) -> list[str]:
    """Keys whose values differ between a checkpoint's config and ``current`` (and matter).

    The checkpoint's config is first brought to the current spelling and form (renamed keys;
    an ``rmt`` block written before memory settings were resolved), so that a run started
    before a rename resumes.
    """
    then, _ = current_spelling(saved)
    rmt = then.get("rmt")
    then["rmt"] = dataclasses.asdict(PretrainMemory.from_dict(rmt)) if rmt else None
    now = current.to_dict()
    return sorted(
        key
        for key in set(then) | set(now)
        if key not in RESUMABLE_KEYS and then.get(key) != now.get(key)
    )


_WARNED: set[tuple[str, str]] = set()


def _warn_renamed(where: str, renamed: list[str]) -> None:
    """One deprecation line per entry and renamed key, however often the entry is read."""
    fresh = [r for r in renamed if (where, r) not in _WARNED]
    if fresh:
        _WARNED.update((where, r) for r in fresh)
        log.warning("%s: %s (the old names still work)", where, "; ".join(fresh))


def _rename(values: dict[str, Any], renamed: Mapping[str, str], defaults: Mapping[str, Any],
            prefix: str) -> list[str]:
    used = []
    for old, new in renamed.items():
        if old not in values:
            continue
        value = values.pop(old)
        if new in values and values[new] not in (value, defaults.get(new)):
            raise ConfigError(f"{prefix}{old} (the old name of {prefix}{new}) is {value!r} but "
                              f"{prefix}{new} is {values[new]!r}: give only {prefix}{new}")
        values[new] = value
        used.append(f"{prefix}{old} is now called {prefix}{new}")
    return used


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def _integer(value: Any) -> int:
    """An integer from YAML (``4``, ``4.0``, ``"4"``); bools and fractions are refused."""
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Convert a YAML value to the field's type, or raise ConfigError naming the key.

    YAML 1.1 reads ``4e-4`` (no dot) as a string and ``1e4`` as a string too; numbers that are
    written as strings or floats with an integral value are accepted, anything else is refused.
    """
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in kinds:
        return None
    if key == "rmt":
        if not isinstance(value, Mapping | PretrainMemory):
            raise ConfigError(f"pretraining option rmt must be a mapping, got {value!r}")
        return value
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
