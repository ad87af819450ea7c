"""Which engine runs: the compiled core (`aioqloop._cengine`) or the pure-Python reference.

The compiled core replaces the hot methods of `MainContext` and the per-source state of
`Source` with C (see the header of ``_cengine.c``); the pure-Python modules stay the
reference and the fallback, and both pass the same test suite.  The choice is made once,
at import, from the ``AIOQLOOP_ENGINE`` environment variable:

* ``auto`` (default): the compiled core if it was built, matches the sources it was built
  from, and the interpreter is not free-threaded; else the pure engine.
* ``c``: the compiled core or an ImportError saying why not.
* ``python``: the pure engine.

A stale build must not shadow edited sources: the build records a hash of its C sources
and of the few Python modules whose data layout or constants the C repeats (`HASHED`),
and a build whose hash differs from the files next to it is not used (with a warning
under ``auto``).  Only a
build made in place (an editable install, ``python hatch_build.py``) is checked: its
sources can change under it.  A wheel's build says it was not made in place (``INPLACE``
is 0) and is not hashed at import: the files it was built from are installed with it.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._corehash import HASHED, source_hash

__all__ = ("ENGINE", "HASHED", "REASON", "core", "engine_info", "source_hash")

_ENV = "AIOQLOOP_ENGINE"


def _free_threaded() -> bool:
    # No free-threaded builds before 3.13 (and no sysconfig to import there).
    if sys.version_info >= (3, 13):
        import sysconfig

        return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return False


def __getattr__(name: str) -> Any:
    # The hashing module (hashlib, pathlib) is imported only when a hash is needed.
    if name in ("HASHED", "source_hash"):
        from . import _corehash

        return getattr(_corehash, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load() -> tuple[ModuleType | None, str]:
    wanted = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "c", "python"):
        raise ImportError(f"{_ENV} must be 'auto', 'c' or 'python', not {wanted!r}")
    if wanted == "python":
        return None, f"{_ENV}=python"
    if _free_threaded():
        why = "a free-threaded interpreter (the compiled core assumes the GIL)"
        if wanted == "c":
            raise ImportError(f"{_ENV}=c, but this is {why}")
        return None, why
    try:
        from . import _cengine
    except ImportError as exc:
        if wanted == "c":
            raise ImportError(f"{_ENV}=c, but the compiled core is not built: {exc}") from exc
        return None, "the compiled core is not built (no C compiler at install time?)"
    if not getattr(_cengine, "INPLACE", 1):  # a build that does not say is checked
        return _cengine, "built for this installation"
    from ._corehash import source_hash

    expected = source_hash()
    if expected is not None and expected != _cengine.SOURCE_HASH:
        name = os.path.basename(_cengine.__file__ or "?")
        why = (f"the compiled core {name} is stale: the "
               "sources changed since it was built (rebuild: pip install -e .)")
        if wanted == "c":
            raise ImportError(f"{_ENV}=c, but {why}")
        warnings.warn(f"aioqloop: {why}; using the pure-Python engine", RuntimeWarning,
                      stacklevel=3)
        return None, why
    return _cengine, "built and current"


core, REASON = _load()
#: ``"c"`` (the compiled core) or ``"python"`` (the pure-Python engine).
ENGINE: Final[str] = "python" if core is None else "c"

if core is not None:
    from . import _registry

    def _configure_context_class(cls: type[Any]) -> None:
        """What the core checks a context against, and the context's methods it calls
        back without a name lookup (an attach or a bottom half refused by a closed
        loop; a finalize that raised)."""
        assert core is not None
        core.configure_timers(context_class=cls)
        core.configure(ctx_check_loop_open=cls._check_loop_open, ctx_report=cls._report)

    _registry._context_class_hook = _configure_context_class
    if _registry._context_class is not None:
        _configure_context_class(_registry._context_class)


def engine_info() -> str:
    """One line for reports: which engine runs and why."""
    impl = f"{sys.implementation.name} {sys.version.split()[0]}"
    return f"{ENGINE} ({REASON}; {impl})"
