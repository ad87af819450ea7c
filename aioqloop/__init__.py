"""aioqloop: GLib's main loop and QEMU's big lock, native to Python's asyncio.

Times in this namespace are seconds on ``loop.time()``; `aioqloop.glib` speaks GLib's
units (milliseconds and microseconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._engine import ENGINE as ENGINE
from ._tasks import EventLoop as EventLoop
from ._tasks import QTask as Task
from .bottomhalf import BottomHalf as BottomHalf
from .clock import VirtualClock as VirtualClock
from .constants import (
    PRIORITY_DEFAULT as PRIORITY_DEFAULT,
)
from .constants import (
    PRIORITY_DEFAULT_IDLE as PRIORITY_DEFAULT_IDLE,
)
from .constants import (
    PRIORITY_HIGH as PRIORITY_HIGH,
)
from .constants import (
    PRIORITY_HIGH_IDLE as PRIORITY_HIGH_IDLE,
)
from .constants import (
    PRIORITY_LOW as PRIORITY_LOW,
)
from .constants import (
    SOURCE_CONTINUE as SOURCE_CONTINUE,
)
from .constants import (
    SOURCE_REMOVE as SOURCE_REMOVE,
)
from .constants import (
    IOCondition as IOCondition,
)
from .context import MainContext as MainContext
from .context import current_source as current_source
from .context import get_main_context as get_main_context
from .context import main_depth as main_depth
from .loop import new_event_loop as new_event_loop
from .loop import run as run
from .mainloop import MainLoop as MainLoop
from .source import Source as Source
from .sources import FdSource as FdSource
from .sources import IdleSource as IdleSource
from .sources import TimeoutSource as TimeoutSource
from .sources import fd_add as fd_add
from .sources import idle_add as idle_add
from .sources import source_remove as source_remove
from .sources import timeout_add as timeout_add
from .statistics import ContextStatistics as ContextStatistics
from .statistics import SourceStats as SourceStats
from .statistics import statistics_table as statistics_table

if TYPE_CHECKING:
    from .biglock import BigLock as BigLock
    from .biglock import bql as bql
    from .unix import ChildWatchSource as ChildWatchSource
    from .unix import SignalSource as SignalSource
    from .unix import child_watch_add as child_watch_add
    from .unix import signal_add as signal_add

# Imported on first use (module __getattr__), so `import aioqloop` stays cheap: the big
# lock and the signal and child-watch sources are not needed by every program.
_LAZY = {
    "BigLock": "biglock",
    "bql": "biglock",
    "ChildWatchSource": "unix",
    "SignalSource": "unix",
    "child_watch_add": "unix",
    "signal_add": "unix",
}

__version__ = "0.1.0"

__all__ = (
    "PRIORITY_HIGH",
    "PRIORITY_DEFAULT",
    "PRIORITY_HIGH_IDLE",
    "PRIORITY_DEFAULT_IDLE",
    "PRIORITY_LOW",
    "SOURCE_CONTINUE",
    "SOURCE_REMOVE",
    "IOCondition",
    "Source",
    "TimeoutSource",
    "IdleSource",
    "FdSource",
    "SignalSource",
    "ChildWatchSource",
    "BottomHalf",
    "timeout_add",
    "idle_add",
    "fd_add",
    "signal_add",
    "child_watch_add",
    "source_remove",
    "MainContext",
    "MainLoop",
    "main_depth",
    "current_source",
    "get_main_context",
    "new_event_loop",
    "run",
    "EventLoop",
    "Task",
    "EventLoopPolicy",
    "BigLock",
    "bql",
    "VirtualClock",
    "ContextStatistics",
    "SourceStats",
    "statistics_table",
    "ENGINE",
)


if TYPE_CHECKING:
    import asyncio

    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """An asyncio policy whose loops are aioqloop loops (``base`` as in new_event_loop).

        Deprecated with asyncio's policies from Python 3.14 on; gone from 3.16.
        """

        def __init__(self, base: str = "asyncio") -> None: ...
        def new_event_loop(self) -> EventLoop: ...

else:

    def __getattr__(name: str) -> Any:
        # Only at run time: a module __getattr__ seen by type checkers would make every
        # misspelt ``aioqloop.name`` pass as Any (they see the lazy names' real imports
        # above, under TYPE_CHECKING).
        module = _LAZY.get(name)
        if module is not None:
            import importlib

            value = getattr(importlib.import_module(f".{module}", __name__), name)
            globals()[name] = value  # later lookups find it without this hook
            return value
        # The policy is built lazily: policies are deprecated from Python 3.14 on.
        if name == "EventLoopPolicy":
            from ._policy import event_loop_policy_class

            return event_loop_policy_class()
        raise AttributeError(f"module 'aioqloop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
