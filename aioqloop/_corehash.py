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

#: The parts of the compiled core, included by ``_cengine.c`` (package-relative).
_C_PARTS: Final = tuple(f"_csrc/{part}.h" for part in (
    "common", "stats", "source", "context", "deadlines", "dispatch", "waker", "fdpoll",
    "fdresults", "iterate", "attach", "context_type", "hook", "plain", "bh", "timers",
    "module"))

#: The files a build of the compiled core depends on (package-relative).  The build is
#: made from the C sources alone.  Python files count only where the C repeats their
#: data layout or constants, so that an edit there would leave the C disagreeing in
#: silence.  The core's calls into Python by name (Waker, FdPoller, SelectorFds, the
#: loop's hook, the big lock's Gate, bottom halves...) are not: a renamed method or
#: attribute fails loudly, and the suite, run on both engines, checks that the C twins
#: still follow their Python references (``_dispatch.py``, ``context.py``...).
HASHED: Final = (
    "_cengine.c", *_C_PARTS,
    # the ready-time heap's rules: entries ordered by (when, seq), liveness through a
    # source's _in_heap/_heap_seq, lazy drop and the rebuild thresholds, which the
    # core's own C heap repeats (deadlines.h; it no longer shares the Python layout)
    "_deadlines.py",
    # a source's attach order, (seq, 1), made by the core's attach (attach.h), and the
    # order rule of the ready queues, whose C twin compares these tuples (context.h)
    "_sourceset.py",
    # source ids: 32 bits, 0 never used, allocated by the Python twin of the context's
    # core (_PyCore) and by the core's attach alike (attach.h)
    "_contextcore.py",
    # BATCH, the iterations of one loop callback, and the 0.01 s retry of an unowned
    # context, which the plain driver's core repeats (plain.h)
    "bridge.py",
    # SourceStatistics' fields, the layout of the core's type that replaces it (stats.h)
    "statistics.py",
    # the range of a priority and of an interval that the core's timeout_add accepts
    # without asking the Python checks (timers.h)
    "sources.py",
    # the fd poller's fields (records, masks, always, unpolled, _wake_fd, last_audit,
    # epoll), which the core keeps as C fields, and apply's rule for a record's revents
    # (its events plus ERR, HUP and NVAL), which the core's poll repeats (fdpoll.h)
    "_fdpoll.py",
    # the shared epoll set's fields (_ep, _fd_to_key, _ctx_mask, raw, stale, closed),
    # C fields of the core, and its select, which the core repeats (fdpoll.h, hook.h)
    "_selectorfds.py",
    # the Waker's poll_waiting, notified and ops, C fields of the core (waker.h)
    "_waker.py",
)
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
