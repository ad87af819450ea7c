"""GLib's priority numbers, source return values and poll(2) conditions.

Priorities mirror ``G_PRIORITY_*``: a lower number is more urgent.  asyncio's own
callbacks and task steps run at :data:`PRIORITY_DEFAULT` on an aioqloop loop.
"""

from __future__ import annotations

import enum
import select
from typing import Final

__all__ = (
    "PRIORITY_HIGH",
    "PRIORITY_DEFAULT",
    "PRIORITY_HIGH_IDLE",
    "PRIORITY_DEFAULT_IDLE",
    "PRIORITY_LOW",
    "SOURCE_CONTINUE",
    "SOURCE_REMOVE",
    "IOCondition",
)

#: Like ``G_PRIORITY_HIGH``.
PRIORITY_HIGH: Final = -100
#: Like ``G_PRIORITY_DEFAULT``: timeouts, fds and asyncio callbacks.
PRIORITY_DEFAULT: Final = 0
#: Like ``G_PRIORITY_HIGH_IDLE`` (GTK redraws run here).
PRIORITY_HIGH_IDLE: Final = 100
#: Like ``G_PRIORITY_DEFAULT_IDLE``: idle sources.
PRIORITY_DEFAULT_IDLE: Final = 200
#: Like ``G_PRIORITY_LOW``.
PRIORITY_LOW: Final = 300

#: Return from a callback to keep the source (``G_SOURCE_CONTINUE``).
SOURCE_CONTINUE: Final = True
#: Return from a callback to destroy the source (``G_SOURCE_REMOVE``).
SOURCE_REMOVE: Final = False


class IOCondition(enum.IntFlag):
    """poll(2) event bits, like ``GIOCondition`` (same numeric values as ``select.POLL*``)."""

    IN = select.POLLIN
    PRI = select.POLLPRI
    OUT = select.POLLOUT
    ERR = select.POLLERR
    HUP = select.POLLHUP
    NVAL = select.POLLNVAL
