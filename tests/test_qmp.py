"""`aioqloop.qmp`: the JSON stream, QMP dispatch and errors as QEMU 7.2 sends them, abuse.

The expected replies are QEMU 7.2's, captured from ``qemu-system-x86_64 -machine none
-qmp unix:...`` (Debian's 1:7.2+dfsg-7); ``tests/test_qmp_client.py`` compares a whole
session with a live QEMU when one is installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aioqloop.qmp import MAX_NESTING, Command, JSONStream, QMPError, QMPServer

# ------------------------------------------------------------------ JSONStream


def _values(items: list[Any]) -> list[Any]:
    return [("error", i.desc) if isinstance(i, QMPError) else i for i in items]


def test_messages_need_no_newline_and_may_share_a_read() -> None:
    s = JSONStream()
    assert s.feed(b'{"a":1}{"b":[2,{"c":3}]}  \r\n{"d":4}') == [
        {"a": 1}, {"b": [2, {"c": 3}]}, {"d": 4}]


def test_a_message_split_anywhere_is_whole_once_complete() -> None:
    msg = b'{"execute": "x", "arguments": {"s": "a}b]\\"{[c", "l": [1, 2]}, "id": "\xc3\xa9"}'
    for cut in range(1, len(msg)):
        s = JSONStream()
        assert s.feed(msg[:cut]) == [], cut
        assert s.feed(msg[cut:]) == [json.loads(msg)], cut
    s = JSONStream()
    got: list[Any] = []
    for i in range(len(msg)):  # one byte per read
        got += s.feed(msg[i:i + 1])
    assert got == [json.loads(msg)]
    assert s.buffered == 0


def test_brackets_inside_strings_and_escapes_do_not_count() -> None:
    s = JSONStream()
    assert s.feed(b'{"k": "\\\\"}') == [{"k": "\\"}]  # escaped backslash ends the string
    assert s.feed(b'{"k": "\\"}"}') == [{"k": '"}'}]


def test_top_level_scalars_and_stray_closers_are_messages_too() -> None:
    s = JSONStream()
    assert _values(s.feed(b'"str" 5 [1] } ')) == [
        "str", 5, [1], ("error", "JSON parse error, expecting value")]


def test_malformed_message_is_one_error_and_the_stream_goes_on() -> None:
    s = JSONStream()
    items = _values(s.feed(b'{"a": 1,}{"b": NaN}nonsense {"ok": 1}'))
    assert [type(i) for i in items] == [tuple, tuple, tuple, dict]
    assert all(i[1].startswith("JSON parse error, ") for i in items[:3])
    assert items[3] == {"ok": 1}
    assert _values(s.feed(b"\xff\xfe ")) [0][0] == "error"


def test_oversized_message_is_refused_with_bounded_memory() -> None:
    s = JSONStream(max_size=1 << 20)
    chunk = b"x" * (1 << 20)
    items = s.feed(b'{"execute": "x", "id": "')
    for _ in range(100):  # 100 MiB
        items += s.feed(chunk)
        assert s.buffered <= s.max_size
    items += s.feed(b'"}{"after": true}')
    assert _values(items) == [("error", "JSON message size limit of 1048576 bytes exceeded"),
                              {"after": True}]


def test_oversized_bare_scalar_is_refused_too() -> None:
    s = JSONStream(max_size=1000)
    items = s.feed(b"1" * 5000)
    assert s.buffered == 0
    items += s.feed(b" 7")
    assert _values(items) == [("error", "JSON message size limit of 1000 bytes exceeded")]
    assert s.feed(b" ") == [7]


def test_deep_nesting_is_refused_once_and_resynchronised() -> None:
    s = JSONStream()
    items = s.feed(b"[" * 60_000 + b'"]]]"' + b"]" * 60_000 + b'{"ok": 1}')
    assert _values(items) == [("error", "JSON nesting depth limit exceeded"), {"ok": 1}]
    ok = b"[" * MAX_NESTING + b"]" * MAX_NESTING
    assert s.feed(ok) == [json.loads(ok)]


# ------------------------------------------------------------------ the server


async def _echo(**kwargs: Any) -> Any:
    return kwargs


async def _fail() -> None:
    raise QMPError("it broke")


async def _crash() -> None:
    raise RuntimeError("a bug in a handler")


class Harness:
    def __init__(self, path: str) -> None:
        self.path = path
        self.server = QMPServer(
            [
                Command("echo", _echo, {"text": "str", "count?": "int", "flag?": "bool"}),
                Command("fail", _fail),
                Command("crash", _crash),
                Command("ping", self._ping),
            ],
            version=(7, 2, 0), package="test",
        )

    async def _ping(self) -> None:
        self.server.emit("PING", {"n": 1})


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.stream = JSONStream()
        self.pending: list[Any] = []

    async def recv(self) -> Any:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            assert data, "connection closed"
            self.pending += self.stream.feed(data)
        return self.pending.pop(0)

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def call(self, raw: bytes | dict[str, Any]) -> Any:
        await self.send(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
        return await self.recv()


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(str(tmp_path / "qmp.sock"))
    server = await h.server.start_unix_server(h.path)
    try:
        yield h
    finally:
        server.close()
        h.server.close_connections()
        await server.wait_closed()


async def _connect(h: Harness, *, negotiate: bool = True) -> Client:
    c = Client(*await asyncio.open_unix_connection(h.path))
    greeting = await c.recv()
    assert greeting == {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                                            "package": "test"}, "capabilities": ["oob"]}}
    if negotiate:
        assert await c.call({"execute": "qmp_capabilities"}) == {"return": {}}
    return c


@pytest.mark.asyncio
async def test_socket_is_mode_0600(harness: Harness) -> None:
    assert os.stat(harness.path).st_mode & 0o777 == 0o600


@pytest.mark.asyncio
async def test_negotiation_state(harness: Harness) -> None:
    c = await _connect(harness, negotiate=False)
    assert await c.call({"execute": "echo", "id": 1}) == {"id": 1, "error": {
        "class": "CommandNotFound",
        "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
    assert await c.call({"execute": "qmp_capabilities", "arguments": {"x": 1}, "id": "a"}) == {
        "id": "a", "error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}
    assert await c.call({"execute": "qmp_capabilities", "id": {"k": [1]}}) == {
        "return": {}, "id": {"k": [1]}}
    assert await c.call({"execute": "qmp_capabilities", "id": 2}) == {"id": 2, "error": {
        "class": "CommandNotFound",
        "desc": "Capabilities negotiation is already complete, command ignored"}}


@pytest.mark.asyncio
async def test_request_shape_errors_match_qemu(harness: Harness) -> None:
    c = await _connect(harness)

    def generic(desc: str, **ident: Any) -> dict[str, Any]:
        return {**ident, "error": {"class": "GenericError", "desc": desc}}

    assert await c.call(b"[1, 2]") == generic("QMP input must be a JSON object")
    assert await c.call(b'"str"') == generic("QMP input must be a JSON object")
    assert await c.call({"id": 9}) == generic("QMP input lacks member 'execute'", id=9)
    assert await c.call({"execute": 5, "id": 10}) == generic(
        "QMP input member 'execute' must be a string", id=10)
    assert await c.call({"execute": "echo", "arguments": [], "id": 11}) == generic(
        "QMP input member 'arguments' must be an object", id=11)
    assert await c.call({"execute": "echo", "foo": 1, "id": 12}) == generic(
        "QMP input member 'foo' is unexpected", id=12)
    # exec-oob is an unknown member until oob is negotiated
    assert await c.call({"exec-oob": "echo", "id": 16}) == generic(
        "QMP input member 'exec-oob' is unexpected", id=16)
    assert await c.call({"execute": "frob", "id": 4}) == {"id": 4, "error": {
        "class": "CommandNotFound", "desc": "The command frob has not been found"}}
    assert await c.call(b"nonsense ") == generic("JSON parse error, expecting value")


@pytest.mark.asyncio
async def test_arguments_are_checked_like_qapi(harness: Harness) -> None:
    c = await _connect(harness)
    assert await c.call({"execute": "echo", "id": 1}) == {"id": 1, "error": {
        "class": "GenericError", "desc": "Parameter 'text' is missing"}}
    assert await c.call({"execute": "echo", "arguments": {"text": 5}, "id": 2}) == {
        "id": 2, "error": {"class": "GenericError",
                           "desc": "Invalid parameter type for 'text', expected: string"}}
    assert await c.call({"execute": "echo", "arguments": {"text": "t", "count": True}}) == {
        "error": {"class": "GenericError",
                  "desc": "Invalid parameter type for 'count', expected: integer"}}
    assert await c.call({"execute": "echo", "arguments": {"text": "t", "x": 1}}) == {
        "error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}
    assert await c.call({"execute": "echo", "arguments": {"text": "t", "flag": False},
                         "id": None}) == {"return": {"text": "t", "flag": False}, "id": None}


@pytest.mark.asyncio
async def test_handler_errors_become_replies(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await _connect(harness)
    assert await c.call({"execute": "fail", "id": 1}) == {
        "id": 1, "error": {"class": "GenericError", "desc": "it broke"}}
    with caplog.at_level(logging.ERROR, logger="aioqloop.qmp"):
        assert await c.call({"execute": "crash", "id": 2}) == {
            "id": 2, "error": {"class": "GenericError",
                               "desc": "internal error: RuntimeError: a bug in a handler"}}
    assert len(caplog.records) == 1  # logged once, with its traceback, for the developer
    assert await c.call({"execute": "echo", "arguments": {"text": "t"}, "id": 3}) == {
        "return": {"text": "t"}, "id": 3}


@pytest.mark.asyncio
async def test_oob_negotiation_and_refusal(harness: Harness) -> None:
    c = await _connect(harness, negotiate=False)
    assert await c.call({"execute": "qmp_capabilities",
                         "arguments": {"enable": ["foo"]}, "id": "b"}) == {
        "id": "b", "error": {"class": "GenericError",
                             "desc": "Parameter 'enable' does not accept value 'foo'"}}
    assert await c.call({"execute": "qmp_capabilities",
                         "arguments": {"enable": ["oob"]}, "id": 1}) == {"return": {}, "id": 1}
    assert await c.call({"exec-oob": "echo", "id": 2}) == {"id": 2, "error": {
        "class": "GenericError", "desc": "The command echo does not support OOB"}}
    assert await c.call({"execute": "echo", "exec-oob": "x", "id": 3}) == {"id": 3, "error": {
        "class": "GenericError", "desc": "QMP input member 'execute' clashes with 'exec-oob'"}}


@pytest.mark.asyncio
async def test_events_reach_every_negotiated_connection_before_the_reply(
    harness: Harness
) -> None:
    a = await _connect(harness)
    b = await _connect(harness)
    shy = await _connect(harness, negotiate=False)
    await a.send(b'{"execute": "ping", "id": 1}')
    event = await a.recv()
    assert event["event"] == "PING" and event["data"] == {"n": 1}
    assert sorted(event["timestamp"]) == ["microseconds", "seconds"]
    assert all(isinstance(v, int) for v in event["timestamp"].values())
    assert 0 <= event["timestamp"]["microseconds"] < 1_000_000
    assert await a.recv() == {"return": {}, "id": 1}
    assert (await b.recv())["event"] == "PING"
    # the connection still negotiating gets no event: its next message is a reply
    assert await shy.call({"execute": "qmp_capabilities", "id": 7}) == {"return": {}, "id": 7}


@pytest.mark.asyncio
async def test_query_commands_and_version(harness: Harness) -> None:
    c = await _connect(harness)
    names = [e["name"] for e in (await c.call({"execute": "query-commands"}))["return"]]
    assert sorted(names) == sorted(["qmp_capabilities", "query-commands", "query-version",
                                    "echo", "fail", "crash", "ping"])
    assert await c.call({"execute": "query-version"}) == {
        "return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"}}


# ------------------------------------------------- abuse (issue 12, item 16)


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_a_100_mb_message_gets_an_error_and_the_connection_stays(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await _connect(harness)
    chunk = b"x" * (1 << 20)
    await c.send(b'{"execute": "echo", "id": "')
    for _ in range(100):
        await c.send(chunk)
    await c.send(b'"}{"execute": "echo", "arguments": {"text": "after"}, "id": 2}')
    assert await c.recv() == {"error": {
        "class": "GenericError", "desc": "JSON message size limit of 1048576 bytes exceeded"}}
    assert await c.recv() == {"return": {"text": "after"}, "id": 2}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_a_100_mb_line_of_garbage_gets_an_error_and_the_connection_stays(
    harness: Harness
) -> None:
    c = await _connect(harness)
    chunk = b"y" * (1 << 20)
    for _ in range(100):
        await c.send(chunk)
    await c.send(b'\n{"execute": "echo", "arguments": {"text": "after"}, "id": 2}')
    assert (await c.recv())["error"]["desc"] == (
        "JSON message size limit of 1048576 bytes exceeded")
    assert await c.recv() == {"return": {"text": "after"}, "id": 2}


@pytest.mark.asyncio
async def test_60000_deep_nesting_gets_one_error_and_the_connection_stays(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await _connect(harness)
    await c.send(b"[" * 60_000 + b"]" * 60_000)
    await c.send(b"{" * 60_000)  # never closed: must not grow the server's memory
    assert await c.recv() == {"error": {
        "class": "GenericError", "desc": "JSON nesting depth limit exceeded"}}
    assert await c.recv() == {"error": {
        "class": "GenericError", "desc": "JSON nesting depth limit exceeded"}}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # a fresh connection is served as usual
    d = await _connect(harness)
    assert await d.call({"execute": "echo", "arguments": {"text": "t"}, "id": 1}) == {
        "return": {"text": "t"}, "id": 1}


@pytest.mark.asyncio
async def test_a_client_vanishing_mid_request_is_not_an_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await _connect(harness)
    await c.send(b'{"execute": "echo", "arg')
    c.writer.transport.abort()
    d = await _connect(harness)
    assert (await d.call({"execute": "query-version"}))["return"]["package"] == "test"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_qmp_error_defaults_to_generic_error() -> None:
    assert QMPError("x").to_json() == {"class": "GenericError", "desc": "x"}
    assert QMPError("y", "CommandNotFound").to_json() == {"class": "CommandNotFound",
                                                          "desc": "y"}


# ------------------------------------------- replies are strict JSON (issue 20, item 5)


def _strict(line: bytes) -> Any:
    """Parse one reply as a strict JSON parser (QEMU's, qemu.qmp's) does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


async def _strict_replies(c: Client, raw: bytes, count: int) -> list[Any]:
    """Send ``raw``; read ``count`` reply lines and parse each strictly."""
    await c.send(raw)
    return [_strict(await asyncio.wait_for(c.reader.readline(), 10)) for _ in range(count)]


@pytest.mark.asyncio
async def test_ids_beyond_a_double_or_not_numbers_are_refused_with_valid_json(
    harness: Harness
) -> None:
    # 1e400 decodes to inf in Python and was echoed as "id": Infinity.
    c = await _connect(harness)
    replies = await _strict_replies(
        c,
        b'{"execute": "query-version", "id": 1e400}'
        b'{"execute": "query-version", "id": -1e400}'
        b'{"execute": "query-version", "id": [1, {"x": 2e308}]}'
        b'{"execute": "query-version", "id": NaN}'
        b'{"execute": "query-version", "id": Infinity}'
        b'{"execute": "query-version", "id": -Infinity}'
        b'{"execute": "echo", "arguments": {"text": "t", "count": 1E999}, "id": 7}'
        b'{"execute": "echo", "arguments": {"text": "t"}, "id": 1e-400}',
        8,
    )
    descs = [r["error"]["desc"] for r in replies[:7]]
    assert all(r == {"error": {"class": "GenericError", "desc": d}}
               for r, d in zip(replies, descs, strict=False))
    assert descs[:3] == ["JSON parse error, number 1e400 is out of range",
                         "JSON parse error, number -1e400 is out of range",
                         "JSON parse error, number 2e308 is out of range"]
    assert descs[3:6] == ["JSON parse error, invalid keyword 'NaN'",
                          "JSON parse error, invalid keyword 'Infinity'",
                          "JSON parse error, invalid keyword '-Infinity'"]
    assert descs[6] == "JSON parse error, number 1E999 is out of range"
    assert replies[7] == {"return": {"text": "t"}, "id": 0.0}  # underflow is a number
    long = b"9" * 500 + b"e400"
    (reply,) = await _strict_replies(c, b'{"execute": "query-version", "id": ' + long + b"}", 1)
    assert reply["error"]["desc"] == f"JSON parse error, number {'9' * 37}... is out of range"


async def _nan() -> float:
    return float("nan")


async def _unencodable() -> Any:
    return {"when": {1, 2}}


@pytest.mark.asyncio
async def test_a_reply_that_is_not_json_becomes_an_internal_error_for_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emitted: list[BaseException] = []
    server: QMPServer

    async def _bad_event() -> None:
        for data in ({"x": float("inf")}, {"x": object()}):
            try:
                server.emit("BAD", data)
            except (ValueError, TypeError) as exc:
                emitted.append(exc)

    server = QMPServer([Command("nan", _nan), Command("set", _unencodable),
                        Command("bad-event", _bad_event)],
                       version=(7, 2, 0), package="test")
    path = str(tmp_path / "qmp.sock")
    listener = await server.start_unix_server(path)
    try:
        c = Client(*await asyncio.open_unix_connection(path))
        await c.recv()
        assert await c.call({"execute": "qmp_capabilities"}) == {"return": {}}
        with caplog.at_level(logging.ERROR, logger="aioqloop.qmp"):
            replies = await _strict_replies(
                c,
                b'{"execute": "nan", "id": {"n": 1}}{"execute": "set"}'
                b'{"execute": "bad-event", "id": 3}',
                3,
            )
        assert replies[0]["id"] == {"n": 1}
        assert replies[0]["error"]["class"] == "GenericError"
        assert replies[0]["error"]["desc"].startswith(
            "internal error: the reply is not valid JSON: ValueError")
        assert "id" not in replies[1]
        assert replies[1]["error"]["desc"].startswith(
            "internal error: the reply is not valid JSON: TypeError")
        # The event refused loudly to its emitter, and no connection got a bad line:
        # the next line after the reply of bad-event is that reply itself.
        assert replies[2] == {"return": {}, "id": 3}
        assert [type(e) for e in emitted] == [ValueError, TypeError]
        assert len([r for r in caplog.records if r.name == "aioqloop.qmp"]) == 2
        assert await c.call({"execute": "query-version", "id": 4}) == {
            "return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"},
            "id": 4}
    finally:
        listener.close()
        server.close_connections()
        await listener.wait_closed()
