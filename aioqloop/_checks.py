"""Argument checks shared by the public API: a clear exception at the call, naming the argument.

Wrong types raise `TypeError`; out-of-range or NaN values raise `ValueError` (an fd that is
not open raises `OSError` where it is first used).  Priorities are C ``gint`` values in GLib,
so they are checked against the int32 range here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from .constants import IOCondition

__all__ = ()

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


class FileLike(Protocol):
    def fileno(self) -> int: ...


def check_priority(priority: object, what: str = "priority") -> int:
    """A GLib priority: an int (not bool) within int32."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"{what} must be an int, not {type(priority).__name__}")
    value = int(priority)
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"{what} must fit in 32 bits ({INT32_MIN}..{INT32_MAX}), not {value}")
    return value


def check_bool(value: object, what: str) -> bool:
    """A flag: bool, or an int 0/1 (as ``threading`` accepts); nothing else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{what} must be a bool, not {type(value).__name__}")


def check_name(name: object) -> str | None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    return name


def check_callback(callback: object, what: str = "callback") -> Callable[..., Any]:
    if not callable(callback):
        raise TypeError(f"{what} must be callable, not {type(callback).__name__}")
    return callback


def check_interval(interval: object) -> float:
    """A relative interval in seconds: finite, >= 0."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"interval must be a number of seconds, not {type(interval).__name__}")
    try:
        value = float(interval)
    except OverflowError:
        raise ValueError(f"interval is too large: {interval!r}") from None
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise ValueError(f"interval must be a finite number of seconds >= 0, not {interval!r}")
    return value


def check_when(when: object) -> float:
    """An absolute ready time in loop seconds; -1 = never; +inf = never too; not NaN."""
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(f"ready time must be a number of seconds, not {type(when).__name__}")
    try:
        value = float(when)
    except OverflowError:
        raise ValueError(f"ready time is too large: {when!r}") from None
    if math.isnan(value):
        raise ValueError("ready time must not be NaN")
    return value


def fd_of(fd_or_fileobj: object) -> int:
    """The fd number of an int or of an object with ``fileno()``; validated."""
    if isinstance(fd_or_fileobj, bool):
        raise TypeError("an fd must be an int or have a fileno() method, not bool")
    if isinstance(fd_or_fileobj, int):
        fd = fd_or_fileobj
    else:
        fileno = getattr(fd_or_fileobj, "fileno", None)
        if fileno is None:
            kind = type(fd_or_fileobj).__name__
            raise TypeError(f"an fd must be an int or have a fileno() method, not {kind}")
        fd = fileno()
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"fileno() returned {type(fd).__name__}, not int")
    if not 0 <= fd <= INT32_MAX:
        raise ValueError(f"invalid file descriptor {fd}")
    return int(fd)


def check_events(events: object) -> IOCondition:
    """poll(2) event bits as an `IOCondition`."""
    if isinstance(events, bool) or not isinstance(events, int):
        raise TypeError(f"events must be an IOCondition, not {type(events).__name__}")
    if int(events) & ~0x3F:
        raise ValueError(f"unknown IOCondition bits in {int(events):#x}")
    return IOCondition(int(events) & 0x3F)
