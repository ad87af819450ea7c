"""A QMP server on asyncio: the wire protocol of QEMU's monitor, for the demo machine.

QMP (the QEMU Machine Protocol) is a stream of JSON objects over a socket, not a line
protocol: a client may send a message without a newline, split over several writes, or
several messages in one write.  This module mirrors the parts of QEMU's monitor a
client relies on (``monitor/qmp.c``, ``qapi/qmp-dispatch.c`` and the JSON streamer in
``qobject/json-streamer.c``), checked against QEMU 7.2:

* `JSONStream` cuts the byte stream into messages by their brackets, bounded in size
  and nesting depth; an oversized or too deeply nested message costs one error reply
  and no memory beyond the limit, and the stream resynchronises after it.
* `QMPServer` sends the greeting (``{"QMP": {"version": {"qemu": {"major", "minor",
  "micro"}, "package"}, "capabilities": ["oob"]}}``), holds each connection in
  capabilities-negotiation mode until ``qmp_capabilities``, checks every request's
  shape and arguments with QEMU's error classes and messages (``CommandNotFound``,
  ``GenericError``), echoes the request's ``id`` on every reply and error, and sends
  events with ``{"seconds", "microseconds"}`` timestamps to every negotiated
  connection.

The commands themselves (`Command`) are supplied by the user of the server; the
server adds ``qmp_capabilities``, ``query-commands`` and ``query-version``.
Out-of-band execution (``exec-oob``) can be negotiated, as in QEMU, but no command of
this server allows it, so an ``exec-oob`` request gets QEMU's "does not support OOB"
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    "MAX_MESSAGE_SIZE",
    "MAX_NESTING",
    "Command",
    "JSONStream",
    "QMPError",
    "QMPServer",
)

_log = logging.getLogger(__name__)

#: Largest accepted message, in bytes.  QEMU's own limit is 64 MiB per token; a toy
#: machine's monitor has no message near 1 MiB, so a larger one is refused early.
MAX_MESSAGE_SIZE = 1 << 20
#: Deepest accepted bracket nesting.  QEMU's streamer allows 1024; Python's decoder
#: recurses per level and would hit the interpreter's recursion limit (1000 by default)
#: first, and no QMP message comes near either.
MAX_NESTING = 256
#: Bytes read from a connection at a time.
_READ_SIZE = 65536
#: A client that stops reading is dropped once this many reply bytes wait for it.
_MAX_PENDING_OUTPUT = 4 << 20

# What ends each scanning state: the next byte that changes the bracket structure.
_STRUCTURE = re.compile(rb"[][{}\"']")
_IN_DQUOTE = re.compile(rb'["\\]')
_IN_SQUOTE = re.compile(rb"['\\]")
_SCALAR_END = re.compile(rb"[][{}\"',:\s]")
_SPACE = b" \t\r\n"


class QMPError(Exception):
    """A QMP error reply: ``{"error": {"class": error_class, "desc": desc}}``.

    Raise it from a command handler to answer with that error (QEMU's ``Error``).
    """

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class

    def to_json(self) -> dict[str, str]:
        """The ``error`` member of the reply."""
        return {"class": self.error_class, "desc": self.desc}


def _reject_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's json module accepts them, QEMU does not.
    raise ValueError(f"invalid keyword '{name}'")


def _finite_float(text: str) -> float:
    # A number beyond a double's range (1e400) decodes to inf, which no reply could
    # carry back: strict JSON has no Infinity.  Refused like any malformed message.
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise ValueError(f"number {shown} is out of range")
    return value


def _decode(raw: bytes) -> Any:
    """Decode one framed message, or raise `QMPError` with QEMU's "JSON parse error"."""
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # only if the caller's stack is already deep
        raise QMPError("JSON nesting depth limit exceeded") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise QMPError(f"JSON parse error, {reason[:1].lower()}{reason[1:]}") from None


class JSONStream:
    """Cuts a byte stream into JSON messages: QEMU's JSON streamer, bounded.

    `feed` takes whatever bytes arrived and returns the messages completed by them, in
    order: each item is the decoded value, or a `QMPError` for a message that could not
    be accepted (malformed, larger than ``max_size`` bytes, nested deeper than
    ``max_depth``).  A message is a top-level object, array, string or bare scalar;
    whitespace between messages is ignored.  Only the message being received is
    buffered, at most ``max_size`` bytes: the rest of an oversized or too deep message
    is scanned for its end and dropped, so the stream resynchronises after it.
    """

    def __init__(self, *, max_size: int = MAX_MESSAGE_SIZE, max_depth: int = MAX_NESTING) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self._buf = bytearray()
        self._depth = 0
        self._quote: int | None = None  # the open string's quote byte
        self._escape = False  # the previous byte in the string was a backslash
        self._scalar = False  # inside a bare top-level scalar (number, keyword)
        self._discard = False  # the current message was refused: drop its bytes

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished message held now (never more than ``max_size``)."""
        return len(self._buf)

    def _keep(self, out: list[Any], chunk: bytes | memoryview) -> None:
        if self._discard:
            return
        if len(self._buf) + len(chunk) > self.max_size:
            self._refuse(out, f"JSON message size limit of {self.max_size} bytes exceeded")
            return
        self._buf += chunk

    def _refuse(self, out: list[Any], desc: str) -> None:
        out.append(QMPError(desc))
        self._discard = True
        self._buf = bytearray()

    def _finish(self, out: list[Any]) -> None:
        if self._discard:
            self._discard = False
        else:
            try:
                out.append(_decode(bytes(self._buf)))
            except QMPError as exc:
                out.append(exc)
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Scan ``data``; return the completed messages (values or `QMPError`)."""
        out: list[Any] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            if self._quote is not None:
                if self._escape:
                    self._escape = False
                    self._keep(out, view[pos:pos + 1])
                    pos += 1
                    continue
                pattern = _IN_DQUOTE if self._quote == 0x22 else _IN_SQUOTE
                m = pattern.search(data, pos)
                if m is None:
                    self._keep(out, view[pos:])
                    break
                i = m.start()
                self._keep(out, view[pos:i + 1])
                pos = i + 1
                if data[i] == 0x5C:  # backslash: the next byte is escaped
                    self._escape = True
                    continue
                self._quote = None
                if self._depth == 0:  # a top-level string is a (non-object) message
                    self._finish(out)
                continue
            if self._scalar:
                m = _SCALAR_END.search(data, pos)
                if m is None:
                    self._keep(out, view[pos:])
                    break
                self._keep(out, view[pos:m.start()])
                pos = m.start()
                self._scalar = False
                self._finish(out)
                continue
            if self._depth == 0:
                byte = data[pos]
                if byte in _SPACE:
                    pos += 1
                    continue
                if byte in b"]}":
                    out.append(QMPError("JSON parse error, expecting value"))
                    pos += 1
                    continue
                if byte in b"\"'":
                    self._quote = byte
                elif byte in b"{[":
                    self._depth = 1
                else:
                    self._scalar = True
                    continue
                self._keep(out, view[pos:pos + 1])
                pos += 1
                continue
            m = _STRUCTURE.search(data, pos)
            if m is None:
                self._keep(out, view[pos:])
                break
            i = m.start()
            self._keep(out, view[pos:i + 1])
            pos = i + 1
            byte = data[i]
            if byte in b"\"'":
                self._quote = byte
            elif byte in b"{[":
                self._depth += 1
                if self._depth > self.max_depth and not self._discard:
                    self._refuse(out, "JSON nesting depth limit exceeded")
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._finish(out)
        return out


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    """A QMP command: its name, its handler and its parameters (QAPI's schema, reduced).

    :ivar handler: ``async def handler(**arguments) -> return value``; it may raise
        `QMPError`.  The return value is the reply's ``return`` member (``{}`` if None).
    :ivar params: parameter name -> JSON type (``"str"``, ``"int"``, ``"number"``,
        ``"bool"``, ``"object"``, ``"array"``); a name ending in ``"?"`` is optional.
    """

    name: str
    handler: Handler
    params: Mapping[str, str] = field(default_factory=dict)


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "number": (int, float), "bool": (bool,),
    "object": (dict,), "array": (list,),
}
# QEMU's names for the types in "Invalid parameter type" errors.
_TYPE_NAMES = {"str": "string", "int": "integer", "number": "number", "bool": "boolean",
               "object": "object", "array": "array"}


def _check_arguments(cmd: Command, args: dict[str, Any]) -> dict[str, Any]:
    """QAPI's input visitor, reduced: unexpected, missing and mistyped parameters."""
    declared = {p.rstrip("?"): (t, not p.endswith("?")) for p, t in cmd.params.items()}
    for name in args:
        if name not in declared:
            raise QMPError(f"Parameter '{name}' is unexpected")
    kwargs: dict[str, Any] = {}
    for name, (typ, required) in declared.items():
        if name not in args:
            if required:
                raise QMPError(f"Parameter '{name}' is missing")
            continue
        value = args[name]
        ok = isinstance(value, _TYPES[typ]) and (typ == "bool" or not isinstance(value, bool))
        if not ok:
            raise QMPError(
                f"Invalid parameter type for '{name}', expected: {_TYPE_NAMES[typ]}")
        kwargs[name.replace("-", "_")] = value
    return kwargs


class _Connection:
    """One client: QEMU's per-monitor state (negotiation mode, oob enabled)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.negotiated = False
        self.oob = False

    def send(self, obj: Mapping[str, Any]) -> None:
        """Send one message; raises `ValueError` or `TypeError` (sending nothing) for
        one that is not strict JSON (see `_encode`)."""
        self.write(_encode(obj))

    def write(self, data: bytes) -> None:
        """Send one message encoded by `_encode`."""
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > _MAX_PENDING_OUTPUT:
            # A client that reads nothing must not make the server buffer without end.
            self.writer.transport.abort()
            return
        self.writer.write(data)


def _encode(obj: Mapping[str, Any]) -> bytes:
    """One message on the wire: strict JSON and the line end QEMU sends.

    Raises `ValueError` for a NaN or an infinity anywhere in ``obj`` (Python's json
    would write ``NaN``/``Infinity``, which strict parsers, QEMU's and qemu.qmp's among
    them, refuse), `TypeError` for a value JSON cannot represent, and `RecursionError`
    for one nested too deeply (or circular, which is a `ValueError`).
    """
    return json.dumps(obj, allow_nan=False).encode() + b"\r\n"


class QMPServer:
    """Serves QMP on asyncio streams; one instance serves every connection.

    :param commands: the commands available after negotiation.
    :param version: ``(major, minor, micro)`` announced as ``version.qemu`` in the
        greeting and by ``query-version``.
    :param package: the greeting's ``version.package`` string.
    """

    def __init__(self, commands: list[Command], *, version: tuple[int, int, int],
                 package: str) -> None:
        self.version = version
        self.package = package
        builtin = [
            Command("query-commands", self._query_commands),
            Command("query-version", self._query_version),
        ]
        self.commands: dict[str, Command] = {c.name: c for c in [*builtin, *commands]}
        # In negotiation mode only qmp_capabilities exists (QEMU's
        # qmp_cap_negotiation_commands); it acts on its own connection.
        self._capabilities = Command("qmp_capabilities", self._no_handler, {"enable?": "array"})
        self._connections: set[_Connection] = set()
        #: Replies and errors sent, over all connections.
        self.replies: int = 0

    # ---------------------------------------------------------------- builtins
    @staticmethod
    def _negotiate(conn: _Connection, enable: list[Any] | None = None) -> None:
        """``qmp_capabilities``: leave negotiation mode, with ``oob`` if asked for."""
        for cap in enable or []:
            if cap != "oob":
                # QEMU 7.2 says "Parameter 'null' ..." here (its list element has no
                # name); the parameter's own name is more useful.
                raise QMPError(f"Parameter 'enable' does not accept value {json.dumps(cap)}"
                               .replace('"', "'"))
        conn.negotiated = True
        conn.oob = bool(enable)

    @staticmethod
    async def _no_handler() -> None:
        raise AssertionError("qmp_capabilities is dispatched by the server itself")

    async def _query_commands(self) -> list[dict[str, str]]:
        return [{"name": name} for name in ["qmp_capabilities", *self.commands]]

    async def _query_version(self) -> dict[str, Any]:
        return self._version_info()

    def _version_info(self) -> dict[str, Any]:
        major, minor, micro = self.version
        return {"qemu": {"micro": micro, "minor": minor, "major": major},
                "package": self.package}

    # ------------------------------------------------------------------ events
    def emit(self, event: str, data: Mapping[str, Any] | None = None) -> None:
        """Send an event to every negotiated connection (``qapi_event_send``).

        Called by a command handler, the event reaches its issuer before the reply, as
        in QEMU.  The timestamp is wall-clock time split into seconds and microseconds.
        Raises `ValueError` (a NaN or an infinity) or `TypeError` for ``data`` that is
        not strict JSON; then no connection gets the event.
        """
        now = time.time()
        seconds = int(now)
        msg: dict[str, Any] = {
            "timestamp": {"seconds": seconds, "microseconds": int((now - seconds) * 1e6)},
            "event": event,
        }
        if data is not None:
            msg["data"] = dict(data)
        # Encoded once, before any connection gets it: data that is not strict JSON
        # raises here (ValueError, TypeError) and no connection sees the event.
        wire = _encode(msg)
        for conn in list(self._connections):
            if conn.negotiated:
                conn.write(wire)

    # ---------------------------------------------------------------- dispatch
    async def dispatch(self, conn: _Connection, request: Any) -> dict[str, Any]:
        """One request -> its reply or error (``qmp_dispatch``), ``id`` echoed."""
        if not isinstance(request, dict):
            return {"error": QMPError("QMP input must be a JSON object").to_json()}
        has_id = "id" in request
        try:
            try:
                result = await self._execute(conn, request)
            except (QMPError, asyncio.CancelledError):
                raise
            except Exception as exc:
                # A bug in a handler: log it once for the developer, answer the client,
                # keep serving.
                _log.exception("QMP command %r failed", request.get("execute"))
                raise QMPError(f"internal error: {type(exc).__name__}: {exc}") from None
        except QMPError as exc:
            err: dict[str, Any] = {"id": request["id"]} if has_id else {}
            err["error"] = exc.to_json()
            return err
        reply: dict[str, Any] = {"return": {} if result is None else result}
        if has_id:
            reply["id"] = request["id"]
        return reply

    async def _execute(self, conn: _Connection, request: dict[str, Any]) -> Any:
        name: str | None = None
        oob = False
        for key, value in request.items():
            if key == "execute" or (key == "exec-oob" and conn.oob):
                if not isinstance(value, str):
                    raise QMPError(f"QMP input member '{key}' must be a string")
                if name is not None:
                    raise QMPError("QMP input member 'execute' clashes with 'exec-oob'")
                name, oob = value, key == "exec-oob"
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise QMPError("QMP input member 'arguments' must be an object")
            elif key != "id":
                raise QMPError(f"QMP input member '{key}' is unexpected")
        if name is None:
            raise QMPError("QMP input lacks member 'execute'")
        if conn.negotiated:
            cmd = self.commands.get(name)
        else:
            cmd = self._capabilities if name == "qmp_capabilities" else None
        if cmd is None:
            if not conn.negotiated:
                raise QMPError("Expecting capabilities negotiation with 'qmp_capabilities'",
                               "CommandNotFound")
            if name == "qmp_capabilities":
                raise QMPError("Capabilities negotiation is already complete, command ignored",
                               "CommandNotFound")
            raise QMPError(f"The command {name} has not been found", "CommandNotFound")
        if oob:
            raise QMPError(f"The command {name} does not support OOB")
        kwargs = _check_arguments(cmd, request.get("arguments", {}))
        if cmd is self._capabilities:
            self._negotiate(conn, **kwargs)
            return None
        return await cmd.handler(**kwargs)

    # ------------------------------------------------------------- connections
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until the client closes it (``client_connected_cb``)."""
        conn = _Connection(writer)
        stream = JSONStream()
        self._connections.add(conn)
        try:
            conn.send({"QMP": {"version": self._version_info(), "capabilities": ["oob"]}})
            await writer.drain()
            while data := await reader.read(_READ_SIZE):
                for item in stream.feed(data):
                    if isinstance(item, QMPError):
                        reply: dict[str, Any] = {"error": item.to_json()}
                    else:
                        reply = await self.dispatch(conn, item)
                    self.replies += 1
                    conn.write(self._encode_reply(reply))
                await writer.drain()
        except ConnectionError:
            pass  # the client went away: nothing to answer
        except Exception:
            # One broken connection must not take the server down or spam the log.
            _log.exception("QMP connection failed")
        finally:
            self._connections.discard(conn)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _encode_reply(reply: dict[str, Any]) -> bytes:
        """``reply`` on the wire; a reply that is not strict JSON (a handler returned a
        NaN, an infinity or an object JSON cannot represent) becomes an internal error
        for the same ``id``, logged once for the developer as a failing handler is."""
        try:
            return _encode(reply)
        except (ValueError, TypeError, RecursionError) as exc:
            _log.error("QMP reply is not valid JSON: %s: %s", type(exc).__name__, exc)
            err: dict[str, Any] = {"id": reply["id"]} if "id" in reply else {}
            err["error"] = QMPError(
                f"internal error: the reply is not valid JSON: {type(exc).__name__}: {exc}"
            ).to_json()
            # The id was decoded from strict JSON (no NaN, no infinity): it encodes.
            return _encode(err)

    def close_connections(self) -> None:
        """Close every client connection (e.g. after ``quit``, once its reply is out)."""
        for conn in list(self._connections):
            conn.writer.close()

    async def start_unix_server(self, path: str) -> asyncio.Server:
        """Listen on a Unix socket at ``path``, mode 0600 before anyone can connect."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            # listen() has not run yet, so nobody can connect before the mode is tight.
            os.chmod(path, 0o600)
            return await asyncio.start_unix_server(self.handle, sock=sock)
        except BaseException:
            sock.close()
            raise
