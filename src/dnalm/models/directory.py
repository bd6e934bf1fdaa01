"""The one reader of model directories: what a directory is, and loading it strictly.

Every stage that reads a model (scoring, saturation, fine-tuning, tracks, embeddings,
evaluation, pretraining resumes) calls this module. It recognises, from ``config.json`` and the
files beside it:

====================  ===================================================  ========================
family                how it is recognised                                 class dnalm loads
====================  ===================================================  ========================
dnalm pipeline model  ``dnalm_model.json``, a maintained ``model_type``    its transformers class
recurrent memory      ``model_type: dnalm_rmt``                            ``RMTForMaskedLM``
DNABERT (v1)          no ``model_type``, BERT architecture, k-mer vocab    ``BertForMaskedLM``
DNABERT-2             ``auto_map`` → ``bert_layers`` (ALiBi, no type)      ``DnaBert2ForMaskedLM``
Nucleotide Tr. v1     ``model_type: esm``, 6-mer ``EsmTokenizer``          ``EsmForMaskedLM``
Nucleotide Tr. v2     ``auto_map`` → ``modeling_esm`` / ``add_bias_fnn``   ``NTv2ForMaskedLM``
GENA-LM BERT          ``pre_layer_norm: true`` (``model_type: bert``)      ``GenaBertForMaskedLM``
GENA-LM BigBird       ``model_type: big_bird``                             ``BigBirdForMaskedLM``
native copy           ``model_type: dnalm_*`` (``dnalm import-checkpoint``)  the native class
other masked LMs      a ``model_type`` transformers maintains               its transformers class
====================  ===================================================  ========================

Published layouts keep their config and weight names; the family's module converts the config
(``convert_published_config``) and the weight names (``convert_published_state_dict``), so the
directory is used exactly as published, with no remote code. ``trust_remote_code`` is only
passed to transformers for a directory dnalm does not recognise, and only when the user asks.

GENA-LM's BigBird was trained and evaluated under transformers 4.x, whose block-sparse attention
draws its seeded random blocks in eval mode too; transformers 5 draws none in eval, so the loader
applies :func:`dnalm.models.gena.use_published_block_sparse` to a published GENA-LM BigBird
(the authors' numbers). dnalm's own ``gena`` preset keeps transformers 5's behaviour, so its
models give the same numbers with plain ``AutoModelForMaskedLM``.

Loading is strict: a masked LM must load with no missing and no unexpected weights (the one
exception, dropped with a log line, is a pretraining head a masked LM never uses: BERT's pooler
and next-sentence head); a sequence classifier may only miss its new head (pooler, classifier)
and may only leave out the checkpoint's pretraining heads. A directory dnalm cannot read is
refused with one line naming what is missing, never loaded "as well as possible".

Where a masked LM is needed (scoring, saturation, evaluation), a checkpoint without a masked-LM
head (a sequence classifier, a bare encoder) is refused as such rather than given a random head,
and so is a causal LM (whose weights may carry a masked LM's names); fine-tuning and embeddings
take their encoder. Weight files are checked before transformers reads them (none, a truncated
or foreign ``model.safetensors`` or ``pytorch_model.bin``), so every command says the same line.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnalm.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

#: ``dnalm_model.json``: the preset, size and training length of a dnalm pipeline model.
MODEL_META = "dnalm_model.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: Model types transformers maintains whose masked-LM checkpoints dnalm loads as they are.
MAINTAINED_MASKED_LM_TYPES = ("bert", "esm", "modernbert", "big_bird", "roberta",
                              "roberta-prelayernorm", "distilbert", "xlm-roberta")
#: Weights of pretraining heads that a masked LM does not use (dropped, with a log line).
UNUSED_BY_MASKED_LM = ("bert.pooler.", "cls.seq_relationship.", "pooler.")


@dataclass(frozen=True)
class Family:
    """A published model family: how dnalm names it and where its native code lives."""

    name: str
    title: str
    #: Module with ``convert_published_config``/``convert_published_state_dict`` (None: the
    #: published directory loads in a maintained class as it is).
    module: str | None = None
    #: Attribute names of the native classes in ``module``.
    masked_lm: str | None = None
    classifier: str | None = None
    base: str | None = None
    #: Names of the published-layout converters in ``module``.
    config_converter: str = "convert_published_config"
    state_converter: str = "convert_published_state_dict"


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("dnalm", "dnalm pipeline model"),
    Family("rmt", "dnalm recurrent-memory model"),
    Family("transformers", "transformers masked LM"),
    Family("remote", "model with its own code"),
    Family("dnabert1", "DNABERT (overlapping k-mers)"),
    Family("dnabert2", "DNABERT-2", "dnalm.models.dnabert2", "DnaBert2ForMaskedLM",
           "DnaBert2ForSequenceClassification", "DnaBert2Model"),
    Family("ntv1", "Nucleotide Transformer v1"),
    Family("ntv2", "Nucleotide Transformer v2", "dnalm.models.ntv2", "NTv2ForMaskedLM",
           "NTv2ForSequenceClassification", "NTv2Model"),
    Family("gena_bert", "GENA-LM BERT", "dnalm.models.gena", "GenaBertForMaskedLM",
           "GenaBertForSequenceClassification", "GenaBertModel"),
    Family("gena_bigbird", "GENA-LM BigBird", "dnalm.models.gena",
           config_converter="convert_bigbird_config",
           state_converter="convert_bigbird_state_dict"),
)}
#: Native model types (``dnalm import-checkpoint`` copies) → their family.
NATIVE_MODEL_TYPES = {"dnalm_dnabert2": "dnabert2", "dnalm_ntv2": "ntv2",
                      "dnalm_gena_bert": "gena_bert"}


@dataclass(frozen=True)
class ModelDirectory:
    """What a model directory is (see the module docstring).

    ``layout`` is ``published`` (converted on load), ``native`` (a dnalm class saved with
    ``save_pretrained``), ``transformers`` (a maintained class, loaded as it is) or ``remote``
    (an unrecognised directory run with its own code, only when the user asked for that).
    """

    path: Path
    family: Family
    layout: str
    raw_config: dict[str, Any] = field(repr=False)
    remote_code: bool = False

    def describe(self) -> str:
        how = {"published": "published layout, loaded natively",
               "native": "dnalm native copy", "transformers": "transformers class",
               "remote": "trust_remote_code"}[self.layout]
        return f"{self.family.title} ({how})"

    @property
    def meta(self) -> dict[str, Any]:
        """``dnalm_model.json`` ({} for a model dnalm did not pretrain)."""
        return read_model_meta(self.path)


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / "config.json"
    if not path.is_dir():
        raise InputFormatError("model directory does not exist", where=str(path))
    if not config_path.is_file():
        raise InputFormatError("not a Hugging Face model directory (no config.json)",
                               where=str(path))
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InputFormatError(f"config.json is not valid JSON ({reason})",
                               where=str(config_path)) from None
    if not isinstance(raw, dict):
        raise InputFormatError("config.json is not a JSON object", where=str(config_path))
    return raw


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """The ``dnalm_model.json`` of a model directory ({} for a foreign model)."""
    path = Path(model_dir) / MODEL_META
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"not valid JSON ({exc.msg})", where=str(path)) from None


def _tokenizer_kind(path: Path) -> str | None:
    """How dnalm would tokenize the directory's tokenizer (None: not a DNA tokenizer)."""
    from dnalm.tokenizers.formats import read_format

    try:
        return read_format(path).kind
    except InputFormatError:
        return None


def _auto_map_text(raw: Mapping[str, Any]) -> str:
    auto = raw.get("auto_map") or {}
    values = auto.values() if isinstance(auto, Mapping) else auto
    return " ".join(str(v) for v in values)


def _architectures(raw: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in raw.get("architectures") or []]


def inspect_model_dir(model_dir: str | Path, *, trust_remote_code: bool = False
                      ) -> ModelDirectory:
    """Recognise a model directory, or refuse it in one line naming what is missing.

    With ``trust_remote_code`` a directory dnalm does not recognise but whose config names its
    own code (``auto_map``) is handed to transformers with remote code (never a prompt); a
    recognised one still runs natively.
    """
    try:
        return _recognise(Path(model_dir))
    except ConfigError:
        path = Path(model_dir)
        if trust_remote_code and _auto_map_text(_read_config(path)):
            log.warning("%s: not a layout dnalm knows; running its own code "
                        "(trust_remote_code)", path)
            return ModelDirectory(path, FAMILIES["remote"], "remote", _read_config(path), True)
        raise


def _recognise(path: Path) -> ModelDirectory:
    raw = _read_config(path)
    model_type = raw.get("model_type")
    auto = _auto_map_text(raw)
    remote = bool(auto)

    def found(family: str, layout: str) -> ModelDirectory:
        return ModelDirectory(path, FAMILIES[family], layout, raw, remote)

    if model_type == "dnalm_rmt":
        return found("rmt", "native")
    if model_type in NATIVE_MODEL_TYPES:
        return found(NATIVE_MODEL_TYPES[model_type], "native")
    if (path / MODEL_META).is_file() and model_type in MAINTAINED_MASKED_LM_TYPES:
        return found("dnalm", "transformers")
    if "bert_layers" in auto or "alibi_starting_size" in raw:
        return found("dnabert2", "published")
    if "modeling_esm" in auto or "esm_config" in auto or "add_bias_fnn" in raw:
        return found("ntv2", "published")
    if raw.get("pre_layer_norm") and model_type in (None, "bert"):
        return found("gena_bert", "published")
    if model_type == "big_bird":
        return found("gena_bigbird", "published")
    if model_type is None:
        bert_like = any(a.startswith("Bert") for a in _architectures(raw))
        if bert_like and not remote:
            return found("dnabert1", "published")
        what = f"auto_map ({auto})" if remote else "no model_type"
        raise ConfigError(f"model directory not recognised: {what}; dnalm reads DNABERT, "
                          "DNABERT-2, Nucleotide Transformer v1/v2, GENA-LM and "
                          "transformers masked LMs", where=str(path))
    if model_type == "esm" and _tokenizer_kind(path) == "nt_kmer":
        return found("ntv1", "transformers")
    if model_type in MAINTAINED_MASKED_LM_TYPES and not remote:
        return found("transformers", "transformers")
    if remote:
        raise ConfigError(f"model type {model_type!r} needs its own code (auto_map: {auto}), "
                          "which dnalm does not implement; set trust_remote_code: true to run it",
                          where=str(path))
    causal = [a for a in _architectures(raw) if a.endswith(_CAUSAL_ARCHITECTURES)]
    if causal:
        raise ConfigError(f"model type {model_type!r} ({', '.join(causal)}) is a causal "
                          "(left-to-right) language model, not a masked LM dnalm reads",
                          where=str(path))
    raise ConfigError(f"model type {model_type!r} is not a masked LM dnalm reads",
                      where=str(path))


# --------------------------------------------------------------------------------------------
# Weights


def weight_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a directory: the first of :data:`WEIGHT_FILES` present, or the
    shards its ``.index.json`` names (each checked to exist); one line for what is missing."""
    path = Path(model_dir)
    present = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not present:
        raise InputFormatError(f"no weights ({' or '.join(WEIGHT_FILES[::2])})", where=str(path))
    name = present[0]
    if not name.endswith(".index.json"):
        return [path / name]
    try:
        index = json.loads((path / name).read_text())
        files = [path / f for f in sorted(set(index["weight_map"].values()))]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError,
            AttributeError) as exc:
        raise InputFormatError(f"weight index is not valid ({type(exc).__name__})",
                               where=str(path / name)) from None
    for file in files:
        if not file.is_file():
            raise InputFormatError(f"weight shard {file.name} named by {name} is missing",
                                   where=str(path))
    return files


def read_weights(model_dir: str | Path) -> dict[str, Any]:
    """The state dict of a directory's weight files (safetensors or PyTorch, sharded or not)."""
    import torch

    files = weight_files(model_dir)
    state: dict[str, Any] = {}
    for file in files:
        try:
            if file.name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state.update(load_file(str(file)))
            else:
                loaded = torch.load(str(file), map_location="cpu", weights_only=True)
                if not isinstance(loaded, Mapping):
                    raise InputFormatError("not a state dict", where=str(file))
                state.update(loaded)
        except InputFormatError:
            raise
        except Exception as exc:  # corrupt or truncated files raise many different types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise InputFormatError(f"cannot read weights ({type(exc).__name__}: {first})",
                                   where=str(file)) from None
    if not state:
        raise InputFormatError("the weight file holds no tensors", where=str(files[0]))
    return state


def check_weight_files(model_dir: str | Path) -> None:
    """Refuse, in one line, a directory whose weights transformers could not read: none at all,
    a broken shard index, or a safetensors file that is truncated or not safetensors.

    Only headers are read (safetensors checks that its header covers the whole file, so a
    truncated download is caught without reading the tensors); transformers would otherwise
    raise its own exception types from deep inside ``from_pretrained``.
    """
    for file in weight_files(model_dir):
        if file.name.endswith(".safetensors"):
            from safetensors import safe_open

            try:
                with safe_open(str(file), framework="pt") as handle:
                    handle.keys()
            except Exception as exc:  # SafetensorError, OSError...: a broken file either way
                raise InputFormatError(f"cannot read weights ({_first_line(exc)}): truncated "
                                       "or not a safetensors file", where=str(file)) from None
        else:
            _check_torch_file(file)


def _check_torch_file(file: Path) -> None:
    """A ``pytorch_model.bin`` is a zip archive (torch >= 1.6) or a legacy pickle; opening the
    zip reads only its central directory, which a truncated copy has lost."""
    import zipfile

    with open(file, "rb") as handle:
        magic = handle.read(2)
    if magic[:1] == b"\x80":  # a legacy pickle: torch.load reports what is wrong with it
        return
    try:
        with zipfile.ZipFile(file):
            pass
    except (zipfile.BadZipFile, OSError):
        raise InputFormatError("cannot read weights: truncated or not a PyTorch weight file",
                               where=str(file)) from None


#: Exceptions transformers raises from ``from_pretrained`` on unreadable weight files (a
#: truncated or foreign ``pytorch_model.bin`` fails in torch's zip or pickle readers).
_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, ImportError)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own load report and progress bar off: dnalm reports in one line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _family_module(family: Family) -> Any:
    if family.module is None:
        return None
    return importlib.import_module(family.module)


def register_auto(config_class: Any, *, base: Any = None, masked_lm: Any = None,
                  classifier: Any = None) -> None:
    """Register a dnalm config and its model classes with transformers' Auto classes.

    Saved native directories then load with ``AutoModel*.from_pretrained`` and no remote code.
    Registering twice (a module reloaded) is a no-op.
    """
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
    )

    with contextlib.suppress(ValueError):
        AutoConfig.register(config_class.model_type, config_class)
    for auto, model_class in ((AutoModel, base), (AutoModelForMaskedLM, masked_lm),
                              (AutoModelForSequenceClassification, classifier)):
        if model_class is not None:
            with contextlib.suppress(ValueError):
                auto.register(config_class, model_class)


def register_native_classes() -> None:
    """Import every native model module (each registers its Auto classes)."""
    import dnalm.models.rmt  # noqa: F401  (registers dnalm_rmt)

    for family in FAMILIES.values():
        _family_module(family)


def model_config(md: ModelDirectory, *, trust_remote_code: bool = False) -> Any:
    """The native (transformers-class) config of a recognised directory."""
    module = _family_module(md.family)
    if md.layout == "published" and module is not None:
        with _naming(md.path / "config.json"):
            return getattr(module, md.family.config_converter)(dict(md.raw_config))
    register_native_classes()
    if md.family.name == "dnabert1":
        from transformers import BertConfig

        values = {k: v for k, v in md.raw_config.items() if k not in ("architectures",)}
        return BertConfig(**values)
    from transformers import AutoConfig

    try:
        with _quiet_transformers():
            return AutoConfig.from_pretrained(str(md.path), local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read config.json: {_first_line(exc)}",
                          where=str(md.path)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def _converted_state(md: ModelDirectory) -> dict[str, Any] | None:
    """The converted weights of a published directory (None: the directory loads as it is)."""
    module = _family_module(md.family)
    if md.layout != "published":
        return None
    state = read_weights(md.path)
    if module is not None:
        with _naming(md.path):
            return getattr(module, md.family.state_converter)(state)
    return state


@contextlib.contextmanager
def _naming(where: Path) -> Iterator[None]:
    """Errors of a family's converters name the directory (or file) they came from."""
    try:
        yield
    except (ConfigError, InputFormatError) as exc:
        if exc.where:
            raise
        raise type(exc)(exc.reason, where=str(where)) from None


def _loading_problems(info: Mapping[str, Any], *, allow_missing: Callable[[str], bool],
                      allow_unexpected: Callable[[str], bool]) -> list[str]:
    problems = []
    missing = sorted(k for k in info.get("missing_keys", ()) if not allow_missing(k))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not allow_unexpected(k))
    mismatched = sorted(_mismatch(k) for k in info.get("mismatched_keys", ()))
    if missing:
        problems.append(f"{len(missing)} weight(s) missing (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) (first: {unexpected[0]})")
    if mismatched:
        problems.append(f"{len(mismatched)} weight(s) of the wrong shape (first: {mismatched[0]})")
    problems += [str(e).splitlines()[0] for e in info.get("error_msgs", ()) if str(e).strip()]
    return problems


def _mismatch(entry: Any) -> str:
    """A ``mismatched_keys`` entry (transformers: ``(key, checkpoint shape, model shape)``)."""
    if isinstance(entry, tuple) and len(entry) == 3:
        key, found, wanted = entry
        return f"{key}: {tuple(found)} in the checkpoint, {tuple(wanted)} in the config"
    return str(entry)


def _untied_weights(model: Any) -> list[str]:
    """Weights the model's config ties (``tie_word_embeddings``) that the loaded model holds
    apart, as ``"target / source"``.

    transformers 5 leaves such a pair untied (with a warning) when the checkpoint holds both
    with different values; the model would then compute with weights its config says are one.
    """
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    if expand is None:
        return []
    untied = []
    for target, source in sorted(expand(all_submodels=True).items()):
        try:
            apart = model.get_parameter_or_buffer(target) is not (
                model.get_parameter_or_buffer(source))
        except AttributeError:
            continue
        if apart:
            untied.append(f"{target} / {source}")
    return untied


def _load(md: ModelDirectory, cls: Any, config: Any, *, allow_missing: Callable,
          allow_unexpected: Callable, dtype: Any, trust_remote_code: bool = False,
          explain: Callable[[Any, Mapping[str, Any]], str | None] | None = None,
          **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Load ``cls`` from the directory and refuse any weight the roles' rules do not allow.

    ``explain`` may turn a load report into one plainer reason (e.g. "no masked-LM head")
    that replaces the list of weights.
    """
    check_weight_files(md.path)
    state = _converted_state(md)
    import pickle

    from safetensors import SafetensorError

    try:
        with _quiet_transformers():
            if state is not None:
                # mismatched shapes are reported (and refused below), not raised pointing at
                # a load report that is silenced here
                model, info = cls.from_pretrained(
                    None, config=config, state_dict=state, output_loading_info=True,
                    dtype=dtype, ignore_mismatched_sizes=True, **kwargs)
            else:
                model, info = cls.from_pretrained(
                    str(md.path), config=config, output_loading_info=True, dtype=dtype,
                    local_files_only=True, trust_remote_code=trust_remote_code,
                    ignore_mismatched_sizes=True, **kwargs)
    except (*_LOAD_ERRORS, SafetensorError, pickle.UnpicklingError) as exc:
        raise InputFormatError(f"cannot load {md.family.title} weights: {_first_line(exc)}",
                               where=str(md.path)) from None
    reason = explain(model, info) if explain is not None else None
    if reason:
        raise InputFormatError(reason, where=str(md.path))
    problems = _loading_problems(info, allow_missing=allow_missing,
                                 allow_unexpected=allow_unexpected)
    untied = _untied_weights(model)
    if untied:
        problems.append(f"{len(untied)} tied weight(s) differ in the checkpoint though the "
                        f"config ties them (first: {untied[0]})")
    if problems:
        raise InputFormatError(f"{md.describe()} does not match its weights: "
                               + "; ".join(problems), where=str(md.path))
    if md.family.name == "gena_bigbird":
        from dnalm.models.gena import use_published_block_sparse

        use_published_block_sparse(model)
    return model, info


def _is_unused_pretraining_head(key: str) -> bool:
    return key.startswith(UNUSED_BY_MASKED_LM)


#: Families whose published layout loads in a maintained transformers class (name prefix).
_MAINTAINED_CLASSES = {"dnabert1": "Bert", "gena_bigbird": "BigBird"}
#: Class-name suffix and Auto class of each role a model directory is loaded in.
_ROLES = {"base": ("Model", "AutoModel"), "masked_lm": ("ForMaskedLM", "AutoModelForMaskedLM"),
          "classifier": ("ForSequenceClassification", "AutoModelForSequenceClassification")}


def model_class(md: ModelDirectory, role: str) -> Any:
    """The class a directory is loaded in as ``role``: ``base`` (encoder), ``masked_lm`` or
    ``classifier`` — the family's native class, a maintained transformers class, or the Auto
    class for directories whose config names their type."""
    import transformers

    suffix, auto = _ROLES[role]
    module = _family_module(md.family)
    native = getattr(md.family, role)
    if module is not None and native:
        return getattr(module, native)
    if md.family.name in _MAINTAINED_CLASSES:
        return getattr(transformers, _MAINTAINED_CLASSES[md.family.name] + suffix)
    register_native_classes()
    return getattr(transformers, auto)


def load_masked_lm(model_dir: str | Path | ModelDirectory, *, dtype: Any = None,
                   attn_implementation: str | None = None,
                   trust_remote_code: bool = False) -> Any:
    """Load a directory's masked LM (float32 by default), strictly (see the module docstring).

    ``attn_implementation`` defaults to the dnalm preset's for pipeline models (so a resumed
    pretraining segment computes exactly what an uninterrupted run would).
    """
    import torch

    md = (model_dir if isinstance(model_dir, ModelDirectory)
          else inspect_model_dir(model_dir, trust_remote_code=trust_remote_code))
    config = model_config(md, trust_remote_code=trust_remote_code)
    kwargs: dict[str, Any] = {}
    impl = attn_implementation
    if impl is None and md.meta.get("preset"):
        from dnalm.models.presets import get_preset

        impl = get_preset(md.meta["preset"]).attn_implementation
    if impl is not None and md.family.name not in ("rmt",) and md.family.module is None:
        kwargs["attn_implementation"] = impl
    dropped: list[str] = []

    def allow_unexpected(key: str) -> bool:
        if _is_unused_pretraining_head(key):
            dropped.append(key)
            return True
        return False

    _refuse_causal_lm(md, config)
    model, _ = _load(md, model_class(md, "masked_lm"), config, allow_missing=lambda k: False,
                     allow_unexpected=allow_unexpected, dtype=dtype or torch.float32,
                     trust_remote_code=trust_remote_code,
                     explain=lambda m, info: _missing_masked_lm_head(md, m, info), **kwargs)
    if dropped:
        heads = sorted({k.rsplit(".", 2)[0] for k in dropped})
        log.info("%s: left out %d weight(s) of pretraining heads a masked LM does not use (%s)",
                 md.path, len(dropped), ", ".join(heads))
    log.info("model %s: %s, %s", md.path, md.describe(), type(model).__name__)
    return model


#: Architecture-name endings of causal (left-to-right) language models.
_CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def _saved_as(md: ModelDirectory) -> str:
    """The class the checkpoint says it was saved from (``config.json`` ``architectures``)."""
    names = _architectures(md.raw_config)
    return f" (saved as {', '.join(names)})" if names else ""


def _refuse_causal_lm(md: ModelDirectory, config: Any) -> None:
    """A causal LM's head predicts the next token from the left context only; read as a masked
    LM its weights often load without a gap (BERT's ``BertLMHeadModel`` has the masked LM's
    names), so the config, not the load report, has to tell."""
    causal = [a for a in _architectures(md.raw_config) if a.endswith(_CAUSAL_ARCHITECTURES)]
    masked = [a for a in _architectures(md.raw_config) if a.endswith("ForMaskedLM")]
    if (causal and not masked) or getattr(config, "is_decoder", False):
        raise InputFormatError(f"a causal (left-to-right) language model{_saved_as(md)}, not a "
                               "masked LM: scoring and saturation need a masked LM",
                               where=str(md.path))


def _missing_masked_lm_head(md: ModelDirectory, model: Any, info: Mapping[str, Any]
                            ) -> str | None:
    """One plain reason when the checkpoint has no masked-LM head at all (a sequence
    classifier, a bare encoder): transformers would initialise one at random and every score
    would be noise. ``None`` when some head weight loaded (the load report then lists what is
    missing)."""
    prefix = getattr(model, "base_model_prefix", "")
    missing = set(info.get("missing_keys", ()))
    if not prefix or any(k.startswith(prefix + ".") for k in missing):
        return None
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    tied = set(expand(all_submodels=True)) if expand is not None else set()
    head = [k for k in model.state_dict() if not k.startswith(prefix + ".") and k not in tied]
    if not head or any(k not in missing for k in head):
        return None
    return (f"the checkpoint has no masked-LM head{_saved_as(md)}: {len(missing)} head "
            "weight(s) would be random; scoring and saturation need a masked LM (fine-tuning "
            "and embeddings use the encoder alone)")


#: Encoder modules a sequence classifier may initialise new (masked-LM checkpoints have none).
_NEW_HEAD_PARTS = ("pooler",)


def load_classifier_model(model_dir: str | Path | ModelDirectory, *, num_labels: int,
                          problem_type: str, trust_remote_code: bool = False
                          ) -> tuple[Any, Any, list[str]]:
    """A sequence classifier on a directory's encoder: ``(model, config, missing keys)``.

    Only the new head may be missing, and only the checkpoint's pretraining heads may be left
    out; anything else is an error (a random encoder layer would train silently).
    """
    import torch

    md = (model_dir if isinstance(model_dir, ModelDirectory)
          else inspect_model_dir(model_dir, trust_remote_code=trust_remote_code))
    config = model_config(md, trust_remote_code=trust_remote_code)
    config.num_labels = num_labels
    config.problem_type = problem_type
    classifier = model_class(md, "classifier")
    prefix = _base_prefix(classifier, config)

    def allow_missing(key: str) -> bool:
        parts = key.split(".")
        if parts[0] != prefix:
            return True  # the classifier (or a head outside the encoder)
        return len(parts) > 1 and parts[1] in _NEW_HEAD_PARTS

    def allow_unexpected(key: str) -> bool:
        return key.split(".")[0] != prefix or _is_unused_pretraining_head(key)

    model, info = _load(md, classifier, config, allow_missing=allow_missing,
                        allow_unexpected=allow_unexpected, dtype=torch.float32,
                        trust_remote_code=trust_remote_code)
    log.info("model %s: %s as %s", md.path, md.describe(), type(model).__name__)
    return model, config, sorted(info.get("missing_keys", ()))


def load_encoder(model_dir: str | Path | ModelDirectory, *,
                 attn_implementation: str | None = None, trust_remote_code: bool = False
                 ) -> Any:
    """A directory's encoder without heads (float32), e.g. to wrap it in recurrent memory.

    Only pretraining heads (outside the encoder) may be left out, and only a pooler may be new.
    """
    import torch

    md = (model_dir if isinstance(model_dir, ModelDirectory)
          else inspect_model_dir(model_dir, trust_remote_code=trust_remote_code))
    config = model_config(md, trust_remote_code=trust_remote_code)
    encoder = model_class(md, "base")
    prefix = _base_prefix(model_class(md, "masked_lm"), config)
    kwargs = {"attn_implementation": attn_implementation} if (
        attn_implementation is not None and md.family.module is None) else {}

    def allow_missing(key: str) -> bool:
        return key.split(".")[0] in _NEW_HEAD_PARTS

    def allow_unexpected(key: str) -> bool:
        return key.split(".")[0] != prefix or _is_unused_pretraining_head(key)

    model, _ = _load(md, encoder, config, allow_missing=allow_missing,
                     allow_unexpected=allow_unexpected, dtype=torch.float32,
                     trust_remote_code=trust_remote_code, **kwargs)
    return model


def _base_prefix(cls: Any, config: Any) -> str:
    """The attribute name of the encoder inside a model with heads (``bert``, ``esm``...)."""
    prefix = getattr(cls, "base_model_prefix", "")
    mapping = getattr(cls, "_model_mapping", None)
    if not prefix and mapping is not None:  # an Auto class: the class it maps this config to
        prefix = getattr(mapping[type(config)], "base_model_prefix", "")
    return prefix


# --------------------------------------------------------------------------------------------
# Tokenizer and limits


def load_model_tokenizer(model_dir: str | Path, *, config: Any = None) -> Any:
    """The directory's tokenizer (:class:`dnalm.tokenizers.DnaTokenizer`), checked against the
    model: every token id must have an embedding row."""
    from dnalm.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    vocab = _vocab_size(config) if config is not None else None
    largest = tokenizer.largest_id()
    if vocab is not None and largest >= vocab:
        raise InputFormatError(f"the tokenizer emits token id {largest} but the model has only "
                               f"{vocab} embeddings: tokenizer and weights do not belong "
                               "together", where=str(model_dir))
    if tokenizer.special_ids.get("mask") is None:
        raise InputFormatError("the tokenizer has no mask token", where=str(model_dir))
    return tokenizer


def _vocab_size(config: Any) -> int | None:
    inner = getattr(config, "mlm_config", None) or getattr(config, "encoder_config", None)
    value = getattr(config, "vocab_size", None)
    if value is None and inner is not None:
        value = inner.get("vocab_size") if isinstance(inner, Mapping) else inner.vocab_size
    return int(value) if value else None


# --------------------------------------------------------------------------------------------
# Native copies


def import_checkpoint(src: str | Path, dst: str | Path) -> ModelDirectory:
    """Write a dnalm-native copy of a recognised model directory into ``dst``.

    ``dst`` holds the native config (``model_type: dnalm_*`` or the maintained type),
    ``model.safetensors``, the tokenizer files and ``dnalm_tokenizer.json`` recording how dnalm
    tokenizes; plain ``AutoModelForMaskedLM.from_pretrained(dst)`` loads it after
    ``import dnalm``. Written atomically.
    """
    from dnalm.io import atomic_dir
    from dnalm.tokenizers.formats import write_tokenizer_copy

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ConfigError("import-checkpoint would overwrite its input", where=str(dst))
    md = inspect_model_dir(src)
    model = load_masked_lm(md)
    tokenizer = load_model_tokenizer(src, config=model.config)
    with atomic_dir(dst) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        write_tokenizer_copy(tokenizer.format, tmp)
        (tmp / "dnalm_import.json").write_text(json.dumps({
            "source": str(src.resolve()), "family": md.family.name,
            "recognised_as": md.describe(), "tokenizer": tokenizer.describe()},
            indent=1) + "\n")
    log.info("imported %s (%s) into %s", src, md.describe(), dst)
    return inspect_model_dir(dst)
