"""Both engines in one process: the compiled core and its pure-Python twin side by side.

The engine is chosen once per process, when `aioqloop._engine` is imported (see its
docstring).  To drive both engines with the same program in one run, this module loads a
second copy of the package, from the same files, under another top-level name, with
``AIOQLOOP_ENGINE`` forced while that copy's ``_engine`` is imported.  A copy has its own
module globals: its own ``_registry`` (dispatch stack, default-context lookup), its own
default loop and context, its own classes.  Tests keep the twins apart by using
stand-alone contexts (or the copy's own default loop) and never hand one twin's objects
to the other.

Which copy is which depends on the engine this process runs:

* the compiled core (``AIOQLOOP_ENGINE=c`` or ``auto`` with a current build): the C twin
  is ``aioqloop`` itself and the pure twin is a copy named `PURE_NAME`;
* the pure engine: the pure twin is ``aioqloop`` and the C twin is a copy named `C_NAME`.

Never two copies on the compiled core: ``_cengine`` has one module state (single-phase
initialisation, configured by the copy that imports it: its classes, its dispatch stack),
so the copy on the C core is the only one that configures it.  The extension module is
initialised once, under its own name ``aioqloop._cengine``, and the C copy is given that
same module.

The copies import themselves through relative imports, except `aioqloop.glib`, whose
modules say ``from aioqloop.x import ...``: the copy's loader compiles each module's source
with those absolute self-imports renamed to the copy's name (the files are not changed and
no bytecode is cached for a copy), so a copy's GLib layer runs on the copy's engine.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import aioqloop

#: The directory of the package both twins are loaded from.
PKG = Path(aioqloop.__file__).resolve().parent
#: The top-level name of a copy on the pure-Python engine.
PURE_NAME = "_aioqloop_twin_python"
#: The top-level name of a copy on the compiled core.
C_NAME = "_aioqloop_twin_c"
_ENV = "AIOQLOOP_ENGINE"

# ``from aioqloop.x import``, ``from aioqloop import``, ``import aioqloop.x`` at any indent.
_SELF_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)aioqloop(?=[\s.])", re.MULTILINE)


class TwinsUnavailable(Exception):
    """The two engines cannot both run in this process (the reason is the message)."""


@dataclass(frozen=True)
class Twins:
    """The same package twice in one process: ``c`` on the compiled core, ``python`` on
    the pure-Python engine (each a top-level package module)."""

    c: ModuleType
    python: ModuleType

    def pairs(self) -> tuple[tuple[str, ModuleType], tuple[str, ModuleType]]:
        """``(("c", c), ("python", python))``: the engine name and its package."""
        return (("c", self.c), ("python", self.python))


def submodule(package: ModuleType, name: str) -> Any:
    """The twin's submodule ``name`` (e.g. ``"glib"``, ``"bridge"``), imported on demand."""
    return importlib.import_module(f"{package.__name__}.{name}")


def engine_of(package: ModuleType) -> str:
    """``"c"`` if the copy's `MainContext` is built on the compiled core, else ``"python"``.

    Read from the class hierarchy, not from the copy's own ``ENGINE`` flag: the types in
    its MRO are what actually runs.
    """
    on_core = any(cls.__module__ == "aioqloop._cengine" for cls in package.MainContext.__mro__)
    return "c" if on_core else "python"


class _CopyLoader(importlib.machinery.SourceFileLoader):
    """Loads a module of a copy: its source, with absolute self-imports renamed."""

    def __init__(self, fullname: str, path: str, top: str) -> None:
        super().__init__(fullname, path)
        self._top = top

    def get_code(self, fullname: str) -> CodeType:
        # No bytecode cache: the copy's code differs from the package's (renamed imports)
        # and must not be written where the package's own cache lives.
        text = self.get_data(self.get_filename(fullname)).decode("utf-8")
        text = _SELF_IMPORT.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{self._top}", text)
        return compile(text, self.get_filename(fullname), "exec", dont_inherit=True)


class _CopyFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of one copy (``top`` and ``top.*``) in the package directory."""

    def __init__(self, top: str) -> None:
        self.top = top

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.top + "."):
            return None  # the top-level module itself is loaded by `_load_copy`
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # the extension module, a namespace: as found
        assert spec.origin is not None
        spec.loader = _CopyLoader(fullname, spec.origin, self.top)
        return spec


def _load_copy(top: str, engine: str) -> ModuleType:
    """Import a copy of the package as ``top`` with its engine forced to ``engine``."""
    loaded = sys.modules.get(top)
    if loaded is not None:
        return loaded
    finder = _CopyFinder(top)
    if not any(isinstance(f, _CopyFinder) and f.top == top for f in sys.meta_path):
        sys.meta_path.insert(0, finder)
    init = str(PKG / "__init__.py")
    spec = importlib.util.spec_from_loader(
        top, _CopyLoader(top, init, top), origin=init, is_package=True
    )
    assert spec is not None and spec.submodule_search_locations is not None
    spec.submodule_search_locations.append(str(PKG))
    spec.has_location = True
    module = importlib.util.module_from_spec(spec)
    previous = os.environ.get(_ENV)
    os.environ[_ENV] = engine  # read once, by the copy's _engine, at its import
    sys.modules[top] = module
    try:
        assert spec.loader is not None
        spec.loader.exec_module(module)
    except BaseException:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        raise
    finally:
        if previous is None:
            del os.environ[_ENV]
        else:
            os.environ[_ENV] = previous
    return module


def _c_copy() -> ModuleType:
    """A copy on the compiled core, in a process whose ``aioqloop`` runs the pure engine."""
    try:
        core = importlib.import_module("aioqloop._cengine")
    except ImportError as exc:
        raise TwinsUnavailable(f"the compiled core is not built: {exc}") from exc
    # One initialisation of the extension, under its own name (see the module docstring).
    sys.modules.setdefault(f"{C_NAME}._cengine", core)
    try:
        return _load_copy(C_NAME, "c")
    except ImportError as exc:  # stale build, free-threaded interpreter
        sys.modules.pop(f"{C_NAME}._cengine", None)
        raise TwinsUnavailable(str(exc)) from exc


def load_twins() -> Twins:
    """Both engines' packages, loading the missing one; `TwinsUnavailable` if impossible."""
    if aioqloop.ENGINE == "c":
        twins = Twins(c=aioqloop, python=_load_copy(PURE_NAME, "python"))
    else:
        twins = Twins(c=_c_copy(), python=aioqloop)
    # The copies really are on different engines (not just flagged so).
    if engine_of(twins.c) != "c" or engine_of(twins.python) != "python":
        raise AssertionError(
            f"twins on the wrong engines: {engine_of(twins.c)}, {engine_of(twins.python)}"
        )
    return twins
