"""PyGObject compatibility helpers: warnings, `PollFD`, `Error`, versions, old names."""

from __future__ import annotations

import warnings
from typing import Final

from aioqloop.constants import (
    IOCondition,
)
from aioqloop.source import Source as _CoreSource

from ._core import FdTag as _FdRecord
from ._iochannel import IOFlags, IOStatus


class PyGIWarning(RuntimeWarning):
    """PyGObject's ``gi.PyGIWarning``."""


class PyGIDeprecationWarning(DeprecationWarning):
    """PyGObject's ``gi.PyGIDeprecationWarning``: a deprecated calling convention was used."""


class PollFD:
    """``GPollFD``: an fd, the events to poll it for, and what the last poll saw.

    For `Source.add_poll`; ``revents`` reads the source's last poll result.
    """

    __slots__ = ("_source", "_tag", "events", "fd")

    def __init__(self, fd: int, events: IOCondition | int) -> None:
        self.fd: int = int(fd)
        self.events: IOCondition = IOCondition(int(events))
        self._source: _CoreSource | None = None
        self._tag: _FdRecord | None = None

    @property
    def revents(self) -> IOCondition:
        """The events seen at the last poll (``IO_NVAL`` for an fd that was not open)."""
        if self._source is None:
            return IOCondition(0)
        if self._tag is None:
            return IOCondition.NVAL
        return self._source.query_unix_fd(self._tag)

    def __repr__(self) -> str:
        return f"<GLib.PollFD fd={self.fd} events={self.events!r}>"


class Error(RuntimeError):
    """``GLib.Error`` (``GError``): ``message``, ``domain`` (a quark string) and ``code``."""

    def __init__(self, message: str = "unknown error", domain: str | int = "pygi-error",
                 code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.domain = domain
        self.code = code

    def matches(self, domain: str | int, code: int) -> bool:
        """True if this error has ``domain`` and ``code`` (``g_error_matches``)."""
        return self.domain == domain and self.code == code

    def __str__(self) -> str:
        return f"{self.domain}: {self.message} ({self.code})"


#: The GLib release whose main-loop behaviour `aioqloop.glib` follows.
MAJOR_VERSION: Final = 2
MINOR_VERSION: Final = 74
MICRO_VERSION: Final = 0
glib_version: Final = (MAJOR_VERSION, MINOR_VERSION, MICRO_VERSION)


def check_version(required_major: int, required_minor: int, required_micro: int) -> str | None:
    """``glib_check_version``: None if this GLib level is compatible, else a message."""
    have = (MAJOR_VERSION, MINOR_VERSION, MICRO_VERSION)
    want = (int(required_major), int(required_minor), int(required_micro))
    if want[0] > have[0]:
        return "GLib version too old (major mismatch)"
    if want[0] < have[0]:
        return "GLib version too new (major mismatch)"
    if want[1:] > have[1:]:
        return "GLib version too old (micro mismatch)"
    return None


def threads_init() -> None:
    """Deprecated no-op: threads are always enabled."""
    warnings.warn(
        "Since version 3.11, calling threads_init is no longer needed. "
        "See: https://wiki.gnome.org/PyGObject/Threading",
        PyGIDeprecationWarning,
        stacklevel=2,
    )


#: Old constant names of `IOFlags`, `IOStatus` (PyGObject keeps them, deprecated).
IO_FLAG_APPEND: Final = IOFlags.APPEND
IO_FLAG_NONBLOCK: Final = IOFlags.NONBLOCK
IO_FLAG_IS_READABLE: Final = IOFlags.IS_READABLE
IO_FLAG_IS_WRITEABLE: Final = IOFlags.IS_WRITABLE
IO_FLAG_IS_SEEKABLE: Final = IOFlags.IS_SEEKABLE
IO_FLAG_MASK: Final = IOFlags.MASK
IO_FLAG_GET_MASK: Final = IOFlags.GET_MASK
IO_FLAG_SET_MASK: Final = IOFlags.SET_MASK
IO_STATUS_ERROR: Final = IOStatus.ERROR
IO_STATUS_NORMAL: Final = IOStatus.NORMAL
IO_STATUS_EOF: Final = IOStatus.EOF
IO_STATUS_AGAIN: Final = IOStatus.AGAIN
