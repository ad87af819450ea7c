"""``gi.events``: PyGObject's asyncio integration, served by `aioqloop.glib.events`.

``AIOQLOOP_GLIB_EVENTS_BASE=uvloop`` serves the uvloop-based loop instead.
"""

from __future__ import annotations

import os

from aioqloop.glib import events as _events

GLibTask = _events.GLibTask
if os.environ.get("AIOQLOOP_GLIB_EVENTS_BASE") == "uvloop-plain":
    # The control for the uvloop run: plain uvloop, no aioqloop, so that a test failing
    # on both is uvloop's own behaviour (CPython's loop tests assume a selector loop).
    import uvloop

    class GLibEventLoop(uvloop.Loop):  # type: ignore[misc,no-redef]
        def __init__(self, main_context: object = None) -> None:
            super().__init__()

    class GLibEventLoopPolicy(_events.GLibEventLoopPolicy):  # type: ignore[no-redef]
        _base = "uvloop"

elif os.environ.get("AIOQLOOP_GLIB_EVENTS_BASE") == "uvloop":
    GLibEventLoop = _events.GLibUVEventLoop

    class GLibEventLoopPolicy(_events.GLibEventLoopPolicy):
        _base = "uvloop"

else:
    GLibEventLoop = _events.GLibEventLoop  # type: ignore[assignment,misc]
    GLibEventLoopPolicy = _events.GLibEventLoopPolicy  # type: ignore[assignment,misc]

__all__ = ("GLibEventLoop", "GLibEventLoopPolicy", "GLibTask")
