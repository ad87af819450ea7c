"""``gi.events``: PyGObject's asyncio integration, served by `aioqloop.glib.events`."""

from __future__ import annotations

from aioqloop.glib.events import GLibEventLoop, GLibEventLoopPolicy, GLibTask

__all__ = ("GLibEventLoop", "GLibEventLoopPolicy", "GLibTask")
