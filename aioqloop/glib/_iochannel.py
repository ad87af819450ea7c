"""GLib's ``GIOChannel`` over a Unix fd, to the depth PyGObject's overrides expose it.

A channel wraps one fd with GLib's buffering and character encoding: reads go through a
read buffer (so `IOChannel.get_buffer_condition` reports ``IN`` while buffered data
remain, which is also what makes an ``io_add_watch`` on the channel fire), writes through
a write buffer of `get_buffer_size` bytes that is flushed when full, on `flush`, `seek`
and `shutdown`.  Text methods (`readline`, `readlines`, iteration, `write` of a `str`)
convert between the channel's encoding (UTF-8 by default; None means raw bytes) and
Python strings; `read` always returns bytes, as in PyGObject.
"""

from __future__ import annotations

import codecs
import enum
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ("IOChannel", "IOFlags", "IOStatus", "SeekType")

_DEFAULT_BUFFER = 1024  # GLib's default buffer size, in bytes

#: `IOChannel.add_watch`'s body, which is ``GLib.io_add_watch`` and its deprecation
#: warning: set by `aioqloop.glib._functions`, which defines ``io_add_watch`` on top of
#: this module (so this module needs no import of it, and the package has no cycle).
_add_watch: Callable[..., int] | None = None


class IOFlags(enum.IntFlag):
    """``GIOFlags``: what a channel can do, and the two flags `set_flags` may change."""

    NONE = 0
    APPEND = 1 << 0
    NONBLOCK = 1 << 1
    IS_READABLE = 1 << 2
    IS_WRITABLE = 1 << 3
    IS_WRITEABLE = 1 << 3
    IS_SEEKABLE = 1 << 4
    MASK = (1 << 5) - 1
    GET_MASK = (1 << 5) - 1
    SET_MASK = APPEND | NONBLOCK


class IOStatus(enum.IntEnum):
    """``GIOStatus``: the outcome of a channel operation."""

    ERROR = 0
    NORMAL = 1
    EOF = 2
    AGAIN = 3


class SeekType(enum.IntEnum):
    """``GSeekType``: where a `seek_position` offset counts from."""

    CUR = 0
    SET = 1
    END = 2


_WHENCE = {0: SeekType.SET, 1: SeekType.CUR, 2: SeekType.END}
_OS_WHENCE = {SeekType.SET: os.SEEK_SET, SeekType.CUR: os.SEEK_CUR, SeekType.END: os.SEEK_END}
_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+": os.O_RDWR,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}


class IOChannel:
    """``GIOChannel`` on a Unix fd: ``IOChannel(filedes=fd)`` or ``IOChannel(filename=,
    mode='r')`` (``mode`` as for ``fopen``: r, w, a, r+, w+, a+).

    A channel made from a file name closes its fd when it goes away
    (`get_close_on_unref`); one made from an fd leaves it open.  Watch it with
    ``GLib.io_add_watch(channel, priority, condition, callback, *data)``; the callback
    gets ``(channel, condition, *data)``.
    """

    def __init__(
        self,
        filedes: int | None = None,
        filename: str | os.PathLike[str] | None = None,
        mode: str | None = None,
        hwnd: int | None = None,
    ) -> None:
        if filedes is not None:
            self._setup(int(filedes), close_on_unref=False)
        elif filename is not None:
            m = (mode or "r").replace("b", "")
            if m not in _MODES:
                raise ValueError(f"invalid mode {mode!r}")
            fd = os.open(filename, _MODES[m] | os.O_CLOEXEC, 0o666)
            self._setup(fd, close_on_unref=True)
        elif hwnd is not None:
            raise TypeError("window handles exist only on Windows")
        else:
            raise TypeError(
                "either a valid file descriptor, file name, or window handle must be supplied"
            )

    def _setup(self, fd: int, *, close_on_unref: bool) -> None:
        self._fd = fd
        self._closed = False
        self._close_on_unref = close_on_unref
        self._encoding: str | None = "UTF-8"
        self._decoder: Any = codecs.getincrementaldecoder("utf-8")()
        self._buffered = True
        self._buffer_size = _DEFAULT_BUFFER
        self._rbuf = b""  # raw bytes read ahead
        self._eof = False
        self._wbuf = bytearray()
        self._wbuf_used = False

    @classmethod
    def unix_new(cls, fd: int) -> IOChannel:
        """``g_io_channel_unix_new``: a channel on ``fd`` (left open when dropped)."""
        return cls(filedes=fd)

    @classmethod
    def new_file(cls, filename: str, mode: str) -> IOChannel:
        """``g_io_channel_new_file``: open ``filename`` (closed when dropped)."""
        return cls(filename=filename, mode=mode)

    # ------------------------------------------------------------ properties
    def unix_get_fd(self) -> int:
        """The fd of this channel."""
        return self._fd

    def fileno(self) -> int:
        """The fd of this channel (so it works where a file object does)."""
        return self._fd

    def get_close_on_unref(self) -> bool:
        """Whether the fd is closed when the channel goes away."""
        return self._close_on_unref

    def set_close_on_unref(self, do_close: bool) -> None:
        """Close the fd (True) or leave it open when the channel goes away."""
        self._close_on_unref = bool(do_close)

    def get_encoding(self) -> str | None:
        """The encoding of text read and written, or None for raw bytes."""
        return self._encoding

    def set_encoding(self, encoding: str | None) -> IOStatus:
        """Set the text encoding (None: raw bytes)."""
        if encoding is None:
            self._decoder = None
        else:
            self._decoder = codecs.getincrementaldecoder(codecs.lookup(encoding).name)()
        self._encoding = encoding
        return IOStatus.NORMAL

    def get_buffered(self) -> bool:
        """Whether writes are buffered (the default)."""
        return self._buffered

    def set_buffered(self, buffered: bool) -> None:
        """Buffer writes (True) or write each at once; switching flushes."""
        self.flush()
        self._buffered = bool(buffered)

    def get_buffer_size(self) -> int:
        """The buffer size in bytes."""
        return self._buffer_size

    def set_buffer_size(self, size: int) -> None:
        """Set the buffer size in bytes (0: GLib's default)."""
        self._buffer_size = int(size) if size > 0 else _DEFAULT_BUFFER

    def get_buffer_condition(self) -> int:
        """``IN`` while read-ahead data remain, ``OUT`` while the write buffer has room."""
        from aioqloop.constants import IOCondition

        cond = IOCondition(0)
        if self._rbuf:
            cond |= IOCondition.IN
        if self._wbuf_used and len(self._wbuf) < self._buffer_size:
            cond |= IOCondition.OUT
        return cond

    def get_flags(self) -> IOFlags:
        """The channel's flags, read from the fd."""
        fl = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        flags = IOFlags.NONE
        if fl & os.O_APPEND:
            flags |= IOFlags.APPEND
        if fl & os.O_NONBLOCK:
            flags |= IOFlags.NONBLOCK
        acc = fl & os.O_ACCMODE
        if acc in (os.O_RDONLY, os.O_RDWR):
            flags |= IOFlags.IS_READABLE
        if acc in (os.O_WRONLY, os.O_RDWR):
            flags |= IOFlags.IS_WRITABLE
        try:
            os.lseek(self._fd, 0, os.SEEK_CUR)
            flags |= IOFlags.IS_SEEKABLE
        except OSError:
            pass
        return flags

    def set_flags(self, flags: int) -> IOStatus:
        """Set ``APPEND`` and ``NONBLOCK`` (other bits are ignored, as in GLib)."""
        fl = fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~(os.O_APPEND | os.O_NONBLOCK)
        if flags & IOFlags.APPEND:
            fl |= os.O_APPEND
        if flags & IOFlags.NONBLOCK:
            fl |= os.O_NONBLOCK
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fl)
        return IOStatus.NORMAL

    # ----------------------------------------------------------------- reads
    def _fill(self) -> IOStatus:
        """Read one buffer's worth from the fd into the read-ahead buffer."""
        if self._eof:
            return IOStatus.EOF
        try:
            data = os.read(self._fd, self._buffer_size)
        except BlockingIOError:
            return IOStatus.AGAIN
        except InterruptedError:
            return IOStatus.AGAIN
        if not data:
            self._eof = True
            return IOStatus.EOF
        self._rbuf += data
        return IOStatus.NORMAL

    def read_chars(self, max_count: int = -1) -> bytes:
        """Read up to ``max_count`` bytes (-1: all there is), as `read` (PyGObject 3.52+'s
        override; older PyGObject could not call ``g_io_channel_read_chars`` at all)."""
        return self.read(max_count)

    def _read_chars(self, count: int = -1) -> tuple[IOStatus, bytes]:
        """Up to ``count`` bytes (-1: one buffer's worth): ``(status, data)``."""
        self._flush_quiet()
        if not self._rbuf:
            status = self._fill()
            if not self._rbuf:
                return status, b""
        n = len(self._rbuf) if count < 0 else count
        data, self._rbuf = self._rbuf[:n], self._rbuf[n:]
        return IOStatus.NORMAL, data

    def read(self, max_count: int = -1) -> bytes:
        """Read up to ``max_count`` bytes (-1: until end of file, or until no more data is
        available on a non-blocking fd); always bytes."""
        out = bytearray()
        self._eof = False
        while max_count < 0 or len(out) < max_count:
            want = -1 if max_count < 0 else max_count - len(out)
            status, data = self._read_chars(want)
            out += data
            if status != IOStatus.NORMAL:
                break
        return bytes(out)

    def read_line(self) -> tuple[IOStatus, str | None, int, int]:
        """``g_io_channel_read_line``: ``(status, line or None, length, terminator_pos)``."""
        self._flush_quiet()
        self._eof = False
        while b"\n" not in self._rbuf:
            status = self._fill()
            if status != IOStatus.NORMAL:
                if not self._rbuf:
                    return status, None, 0, 0
                break
        i = self._rbuf.find(b"\n")
        end = len(self._rbuf) if i < 0 else i + 1
        raw, self._rbuf = self._rbuf[:end], self._rbuf[end:]
        text = self._decode(raw)
        term = len(text) - 1 if i >= 0 else len(text)
        return IOStatus.NORMAL, text, len(text), term

    def _decode(self, raw: bytes) -> str:
        if self._decoder is None:
            return raw.decode("latin-1")
        return str(self._decoder.decode(raw, final=False))

    def readline(self, size_hint: int = -1) -> str:
        """The next line with its terminator, or ``''`` at end of file."""
        _status, line, _n, _t = self.read_line()
        return "" if line is None else line

    def readlines(self, size_hint: int = -1) -> list[str]:
        """All remaining lines; like PyGObject's, it ends with one ``''`` after end of file."""
        lines: list[str] = []
        status = IOStatus.NORMAL
        while status == IOStatus.NORMAL:
            status, line, _n, _t = self.read_line()
            lines.append("" if line is None else line)
        return lines

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        status, line, _n, _t = self.read_line()
        if status == IOStatus.NORMAL and line is not None:
            return line
        raise StopIteration

    # ---------------------------------------------------------------- writes
    def write_chars(self, buf: bytes | str, count: int = -1) -> tuple[IOStatus, int]:
        """Write ``count`` bytes of ``buf`` (-1: all), converted from UTF-8 to the
        channel's encoding: ``(status, bytes written)``."""
        data = buf.encode("utf-8") if isinstance(buf, str) else bytes(buf)
        if count >= 0:
            data = data[:count]
        n = len(data)
        if self._encoding is not None and codecs.lookup(self._encoding).name != "utf-8":
            data = data.decode("utf-8").encode(self._encoding)
        self._rbuf = b""  # GLib drops read-ahead data on a write
        if not self._buffered:
            self._write_all(data)
            return IOStatus.NORMAL, n
        self._wbuf_used = True
        self._wbuf += data
        if len(self._wbuf) >= self._buffer_size:
            self.flush()
        return IOStatus.NORMAL, n

    def write(self, buf: bytes | str, buflen: int = -1) -> int:
        """Write ``buf`` (a str is UTF-8 text); returns the number of bytes taken."""
        return self.write_chars(buf, buflen)[1]

    def writelines(self, lines: list[str] | list[bytes]) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except InterruptedError:
                continue
            view = view[n:]

    def flush(self) -> IOStatus:
        """Write out the write buffer."""
        if self._wbuf:
            data, self._wbuf = bytes(self._wbuf), bytearray()
            self._write_all(data)
        return IOStatus.NORMAL

    def _flush_quiet(self) -> None:
        if self._wbuf:
            self.flush()

    # ---------------------------------------------------------------- others
    def seek_position(self, offset: int, type: SeekType) -> IOStatus:
        """Move to ``offset`` counted from ``type`` (a `SeekType`); drops buffers."""
        self.flush()
        pending = len(self._rbuf)
        self._rbuf = b""
        self._eof = False
        if self._decoder is not None:
            self._decoder.reset()
        whence = _OS_WHENCE[SeekType(type)]
        if whence == os.SEEK_CUR:
            offset -= pending  # the read-ahead was not consumed
        os.lseek(self._fd, offset, whence)
        return IOStatus.NORMAL

    def seek(self, offset: int, whence: int = 0) -> IOStatus:
        """``seek(offset, whence)`` with ``os.SEEK_*`` numbers (0, 1, 2)."""
        try:
            w = _WHENCE[whence]
        except KeyError:
            raise ValueError("invalid 'whence' value") from None
        return self.seek_position(offset, w)

    def shutdown(self, flush: bool = True) -> IOStatus:
        """Close the channel and its fd, writing out the buffer first if ``flush``."""
        if self._closed:
            return IOStatus.NORMAL
        try:
            if flush:
                self.flush()
        finally:
            self._closed = True
            self._wbuf = bytearray()
            try:
                os.close(self._fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        return IOStatus.NORMAL

    def close(self) -> None:
        """Close without flushing (``g_io_channel_close``, deprecated in GLib)."""
        self.shutdown(False)

    def add_watch(
        self, condition: int, callback: Callable[..., Any], *user_data: Any, **kwargs: Any
    ) -> int:
        """Deprecated method form of ``GLib.io_add_watch(self, priority, condition, ...)``."""
        assert _add_watch is not None  # set when aioqloop.glib imports its functions
        return _add_watch(self, condition, callback, *user_data, **kwargs)

    def __del__(self) -> None:
        if getattr(self, "_close_on_unref", False) and not getattr(self, "_closed", True):
            try:
                self.shutdown(True)
            except OSError:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<GLib.IOChannel {state} encoding={self._encoding!r}>"
