"""Make transformers' Auto classes know dnalm's model types as soon as they are imported.

``import dnalm`` must stay light (data stages never import torch), yet a user who writes
``import dnalm`` and then ``AutoModelForMaskedLM.from_pretrained("models/dnabert2")`` expects
the native copy that ``dnalm import-checkpoint`` wrote to load. So ``import dnalm`` registers
dnalm's classes at once if transformers' auto module is already loaded, and otherwise installs
an import hook that registers them right after ``transformers.models.auto.modeling_auto``
finishes loading (the module every ``AutoModel*`` class comes from). Nothing is imported
before that: a process that never touches transformers pays nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

AUTO_MODULE = "transformers.models.auto.modeling_auto"


def register() -> None:
    """Import dnalm's native model modules; each registers its config and model classes."""
    from dnalm.models.directory import register_native_classes

    register_native_classes()


class _RegisterAfterLoad(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register()


class _AutoModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``AUTO_MODULE`` with the other finders and wraps its loader (once)."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname != AUTO_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisterAfterLoad(spec.loader)
        return spec


def install() -> None:
    """Register now if transformers' auto classes are loaded, else when they are."""
    if AUTO_MODULE in sys.modules:
        register()
    elif not any(isinstance(f, _AutoModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AutoModuleFinder())
