"""The hash that ties a build of the compiled core to the sources it mirrors.

A leaf with no package imports: the build hook (``hatch_build.py``) loads this file by
path to record the hash in the build, and `aioqloop._engine` compares it at import, so a
stale build never shadows edited sources.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

__all__ = ("HASHED", "source_hash")

#: The files whose content a build of the compiled core depends on (package-relative).
HASHED: Final = ("_cengine.c", *(f"_csrc/{part}.h" for part in (
    "common", "stats", "source", "context", "dispatch", "fdresults", "iterate", "attach",
    "context_type", "hook", "plain", "bh", "timers", "module")),
                 "_dispatch.py", "context.py", "source.py", "sources.py",
                 "statistics.py", "_fdpoll.py", "_selectorfds.py", "loop.py",
                 "bridge.py", "_sourceset.py", "_deadlines.py", "bottomhalf.py",
                 "_engine.py", "_corehash.py")
_HERE = Path(__file__).resolve().parent


def source_hash(directory: Path = _HERE) -> str | None:
    """The hash a build of the core records for the files in ``directory`` (None if one
    of them is missing, e.g. a package without its C source)."""
    digest = hashlib.sha256()
    for name in HASHED:
        try:
            data = (directory / name).read_bytes()
        except OSError:
            return None
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()
