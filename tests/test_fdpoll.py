"""`FdPoller`: the private epoll set alone — pipes, regular files, closed and reused fds."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from aioqloop import IOCondition, Source
from aioqloop._fdpoll import MAX_WAIT, FdPoller, clamp_wait
from aioqloop._waker import Waker


class Marks:
    def __init__(self) -> None:
        self.sources: list[Source] = []

    def __call__(self, src: Source) -> None:
        self.sources.append(src)


@pytest.fixture
def poller() -> Iterator[tuple[FdPoller, Waker]]:
    w = Waker()
    p = FdPoller(w.fd)
    yield p, w
    p.close()
    w.close()


def watch(p: FdPoller, fd: int, events: IOCondition) -> tuple[Source, object]:
    src = Source()
    tag = src.add_unix_fd(fd, events)  # not attached: the record is only built
    p.add(tag)
    return src, tag


def test_pipe_readiness_and_exact_revents(poller: tuple[FdPoller, Waker]) -> None:
    p, _w = poller
    r, w = os.pipe()
    try:
        src, tag = watch(p, r, IOCondition.IN)
        marks = Marks()
        assert p.poll(0, marks) == 0 and marks.sources == []
        os.write(w, b"x")
        assert p.poll(0, marks) == 1
        assert marks.sources == [src] and tag.revents == IOCondition.IN  # type: ignore[attr-defined]
        os.close(w)
        w = -1
        marks.sources.clear()
        p.poll(0, marks)
        assert tag.revents == IOCondition.IN | IOCondition.HUP  # type: ignore[attr-defined]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_wake_fd_is_reported_as_minus_one(poller: tuple[FdPoller, Waker]) -> None:
    p, w = poller
    w.notify(force=True)
    assert p.poll(0, Marks()) == -1


def test_regular_file_is_always_ready(
    poller: tuple[FdPoller, Waker], tmp_path: os.PathLike[str]
) -> None:
    p, _w = poller
    fd = os.open(os.path.join(tmp_path, "f"), os.O_RDWR | os.O_CREAT)
    try:
        src, tag = watch(p, fd, IOCondition.IN | IOCondition.OUT)
        assert p.always and p.always_ready_pending()
        marks = Marks()
        p.report_always_ready(marks)
        assert marks.sources == [src]
        assert tag.revents == IOCondition.IN | IOCondition.OUT  # type: ignore[attr-defined]
        p.remove(tag)  # type: ignore[arg-type]
        assert not p.always and not p.watching
    finally:
        os.close(fd)


def test_closed_fd_is_reported_nval_by_the_audit(
    poller: tuple[FdPoller, Waker],
    pipe: tuple[int, int],
) -> None:
    p, _w = poller
    r, w = pipe
    src, tag = watch(p, r, IOCondition.IN)
    os.close(r)
    os.close(w)
    marks = Marks()
    assert p.audit_wait(10.0, 1.0, marks) == 1.0  # audited now; next in 1 s
    assert marks.sources == [src] and tag.revents == IOCondition.NVAL  # type: ignore[attr-defined]
    assert p.audit_wait(10.5, 1.0, Marks()) == pytest.approx(0.5)


def test_reused_number_with_a_dup_alive_reports_only_the_new_file(
    poller: tuple[FdPoller, Waker],
) -> None:
    p, _w = poller
    r1, w1 = os.pipe()
    os.write(w1, b"x")  # the old pipe is readable
    keep = os.dup(r1)  # keeps the old file (and its epoll entry) alive
    _src_old, tag_old = watch(p, r1, IOCondition.IN)
    os.close(r1)  # closed behind the watch's back
    r2, w2 = os.pipe()
    try:
        if r2 != r1:
            os.dup2(r2, r1)
            os.close(r2)
            r2 = r1
        p.remove(tag_old)  # type: ignore[arg-type]
        src_new, _tag_new = watch(p, r2, IOCondition.IN)
        marks = Marks()
        assert p.poll(0, marks) == 0, "the old file's readiness leaked to the new number"
        assert marks.sources == []
        assert p.rebuilds >= 1
        os.write(w2, b"y")
        p.poll(0, marks)
        assert marks.sources == [src_new]
    finally:
        for fd in (keep, w1, r2, w2):
            os.close(fd)


def test_blocked_watchers_are_unpolled_and_repolled(
    poller: tuple[FdPoller, Waker],
    pipe: tuple[int, int],
) -> None:
    p, _w = poller
    r, w = pipe
    src, _tag = watch(p, r, IOCondition.IN)
    os.write(w, b"x")
    src._blocked = True
    p.unpoll_blocked([src])
    assert p.poll(0, Marks()) == 0
    src._blocked = False
    p.repoll(src)
    marks = Marks()
    assert p.poll(0, marks) == 1 and marks.sources == [src]


def test_clamp_wait() -> None:
    assert clamp_wait(None) is None
    assert clamp_wait(-1.0) == 0.0
    assert clamp_wait(0.25) == 0.25
    assert clamp_wait(1e300) == MAX_WAIT
    assert clamp_wait(float("inf")) == MAX_WAIT


def test_mirror_gets_the_merged_mask_and_zero_on_removal(
    poller: tuple[FdPoller, Waker],
    pipe: tuple[int, int],
) -> None:
    import select

    p, _w = poller
    seen: list[tuple[int, int]] = []
    p.mirror = lambda fd, mask: seen.append((fd, mask))
    r, _ = pipe
    _s1, t1 = watch(p, r, IOCondition.IN)
    _s2, t2 = watch(p, r, IOCondition.PRI)
    always = select.EPOLLERR | select.EPOLLHUP
    assert seen == [(r, select.EPOLLIN | always),
                    (r, select.EPOLLIN | select.EPOLLPRI | always)]
    assert p.mirrored() == [(r, select.EPOLLIN | select.EPOLLPRI | always)]
    p.remove(t2)  # type: ignore[arg-type]
    p.remove(t1)  # type: ignore[arg-type]
    assert seen[-2:] == [(r, select.EPOLLIN | always), (r, 0)]
    assert p.mirrored() == []


def test_opened_on_first_watch_with_the_openers_wake_fd() -> None:
    w = Waker(lazy=True)
    p = FdPoller(opener=w.open)
    r, wr = os.pipe()
    try:
        assert p.epoll is None and p.generation == 0
        assert p.poll(0.0, Marks()) == 0  # a look needs no set
        assert p.epoll is None and not w.has_fd
        src, _tag = watch(p, r, IOCondition.IN)
        assert p.epoll is not None and w.has_fd and p.generation == 1
        os.write(wr, b"x")
        marks = Marks()
        assert p.poll(0.0, marks) == 1 and marks.sources == [src]
        w.notify(force=True)
        assert p.poll(0.0, Marks()) == -1  # the wake-up fd is in the set
        p.rebuild()
        assert p.generation == 2
    finally:
        p.close()
        w.close()
        os.close(r)
        os.close(wr)
    with pytest.raises(RuntimeError, match="closed"):
        p.ensure_open()
