"""`aioqloop.EventLoopPolicy`: an asyncio event loop policy whose loops are aioqloop's.

Built on first use (``aioqloop.EventLoopPolicy`` is looked up lazily): asyncio's policies
are deprecated from Python 3.14 and gone in 3.16, where asking for it raises.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any

from ._tasks import EventLoop
from .loop import new_event_loop

__all__ = ("event_loop_policy_class",)

_policy_cls: type | None = None


def event_loop_policy_class() -> type:
    """Build `aioqloop.EventLoopPolicy` on first use (policies are deprecated from 3.14)."""
    global _policy_cls
    if sys.version_info >= (3, 16):  # pragma: no cover
        raise AttributeError(
            "asyncio has no event loop policies from Python 3.16 on; use aioqloop.run() "
            "or asyncio.run(..., loop_factory=aioqloop.new_event_loop)"
        )
    if sys.version_info >= (3, 14):  # pragma: no cover
        warnings.warn(
            "aioqloop.EventLoopPolicy is deprecated as asyncio's policies are; use "
            "aioqloop.run() or asyncio.Runner(loop_factory=aioqloop.new_event_loop)",
            DeprecationWarning,
            stacklevel=3,
        )
    if _policy_cls is not None:
        return _policy_cls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        base_policy: Any = asyncio.DefaultEventLoopPolicy

    class EventLoopPolicy(base_policy):  # type: ignore[misc]
        """An asyncio policy whose loops are aioqloop loops (``base`` as in new_event_loop)."""

        def __init__(self, base: str = "asyncio") -> None:
            if base not in ("asyncio", "uvloop"):
                raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
            super().__init__()
            self._aioq_base = base

        def new_event_loop(self) -> EventLoop:
            """A new aioqloop loop on this policy's base."""
            return new_event_loop(base=self._aioq_base)

    _policy_cls = EventLoopPolicy
    return EventLoopPolicy
