"""``gi.events``: PyGObject's asyncio integration, served by `aioqloop.glib.events`.

``AIOQLOOP_GLIB_EVENTS_BASE=uvloop`` serves the uvloop-based loop instead.
"""

from __future__ import annotations

import os

from aioqloop.glib import events as _events

GLibTask = _events.GLibTask
if os.environ.get("AIOQLOOP_GLIB_EVENTS_BASE") == "uvloop":
    GLibEventLoop = _events.GLibUVEventLoop

    class GLibEventLoopPolicy(_events.GLibEventLoopPolicy):
        def __init__(self) -> None:
            super().__init__(base="uvloop")

else:
    GLibEventLoop = _events.GLibEventLoop  # type: ignore[assignment,misc]
    GLibEventLoopPolicy = _events.GLibEventLoopPolicy  # type: ignore[assignment,misc]

__all__ = ("GLibEventLoop", "GLibEventLoopPolicy", "GLibTask")
