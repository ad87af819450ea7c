"""Random main-loop programs written once against PyGObject's ``GLib`` API.

`generate` makes a program from a seed: sources of four kinds (an idle, a custom source
ready by a ready time of 0, a custom source never ready by itself, a 0 ms timeout) at
several priorities, added to the context or as children; priority and ready-time
changes; destroys; iterations.  Each callback does one thing when it runs: keeps its
source, removes it, or changes the next live source (destroys it, moves its ready time
to -1 or to 0, gives it another priority), or iterates the context again from inside.

`run` plays a program on a GLib-like module (``gi.repository.GLib`` or ``aioqloop.glib``)
and returns what it observed: every callback, every iteration's result, the final states.
Nothing depends on time beyond order: ready times are 0 ("now") or -1, timeouts 0 ms.
`tests/test_glib_differential.py` plays many on both and compares.

Only calls GLib accepts quietly are made: nothing on a destroyed source, no priority
change on a child (GLib refuses both with a critical warning where aioqloop raises).
PyGObject 3.42's conventions hold as in ``_glib_scenarios``: one user-data argument to
``set_callback``, custom sources define ``prepare`` and ``check``, every source stays
referenced until the program destroys it.
"""

from __future__ import annotations

import random
from typing import Any

KINDS = ("idle", "due", "never", "timeout")
PRIORITIES = (-100, 0, 0, 100, 200, 300)
MODES = ("keep", "keep", "remove", "destroy_next", "unready_next", "ready_next",
         "reprioritise_next", "nest")

Op = tuple[Any, ...]


def generate(seed: int, steps: int = 40) -> list[Op]:
    """A program of about ``steps`` operations, the same for the same seed."""
    rng = random.Random(seed)
    ops: list[Op] = []
    made = 0
    for _ in range(steps):
        r = rng.random()
        if made < 2 or r < 0.22:
            ops.append(("add", rng.choice(KINDS), rng.choice(PRIORITIES), rng.choice(MODES)))
            made += 1
        elif r < 0.32:
            ops.append(("child", rng.randrange(made), rng.choice(KINDS), rng.choice(MODES)))
            made += 1
        elif r < 0.42:
            ops.append(("priority", rng.randrange(made), rng.choice(PRIORITIES)))
        elif r < 0.54:
            ops.append(("ready_time", rng.randrange(made), rng.choice((0, -1))))
        elif r < 0.60:
            ops.append(("destroy", rng.randrange(made)))
        else:
            ops.append(("iterate",))
    ops += [("iterate",)] * 3
    return ops


def run(GLib: Any, ops: list[Op]) -> list[Any]:
    """Play ``ops`` on a new context of ``GLib``; the observations, in order."""
    ctx = GLib.MainContext()
    log: list[Any] = []
    srcs: list[Any] = []  # by handle
    roots: set[int] = set()  # handles of sources that are not children

    def live(h: int) -> bool:
        return not srcs[h].is_destroyed()

    def next_live(h: int) -> int | None:
        for k in range(1, len(srcs) + 1):
            other = (h + k) % len(srcs)
            if live(other):
                return other
        return None

    def act(h: int, mode: str) -> bool:
        log.append(("cb", h))
        if mode == "remove":
            return False
        other = next_live(h)
        if mode == "nest":
            log.append(("nested", h, bool(ctx.iteration(False))))
        elif other is None or mode == "keep":
            pass
        elif mode == "destroy_next":
            srcs[other].destroy()
        elif mode == "unready_next":
            srcs[other].set_ready_time(-1)
        elif mode == "ready_next":
            srcs[other].set_ready_time(0)
        elif mode == "reprioritise_next" and other in roots:
            srcs[other].set_priority(srcs[other].get_priority() + 100)
        return True

    class Custom(GLib.Source):  # type: ignore[misc]  # GLib: a module given at run time
        def __init__(self, h: int, mode: str) -> None:
            super().__init__()
            self.h = h
            self.mode = mode

        def prepare(self) -> tuple[bool, int]:
            return (False, -1)

        def check(self) -> bool:
            return False

        def dispatch(self, callback: Any, args: Any) -> bool:
            return act(self.h, self.mode)

    def make(kind: str, mode: str) -> Any:
        h = len(srcs)
        if kind in ("due", "never"):
            src = Custom(h, mode)
            if kind == "due":
                src.set_ready_time(0)
        else:
            src = GLib.Idle() if kind == "idle" else GLib.Timeout(0)
            src.set_callback(lambda handle: act(handle, mode), h)
        srcs.append(src)
        return src

    for op in ops:
        what = op[0]
        if what == "add":
            _, kind, priority, mode = op
            src = make(kind, mode)
            src.set_priority(priority)
            roots.add(len(srcs) - 1)
            src.attach(ctx)
        elif what == "child":
            _, parent, kind, mode = op
            child = make(kind, mode)
            if live(parent):
                srcs[parent].add_child_source(child)
            else:
                child.destroy()  # a handle like any other, never attached
        elif what == "priority":
            _, h, priority = op
            if live(h) and h in roots:
                srcs[h].set_priority(priority)
        elif what == "ready_time":
            _, h, when = op
            if live(h):
                srcs[h].set_ready_time(when)
        elif what == "destroy":
            srcs[op[1]].destroy()
        else:
            log.append(("iteration", bool(ctx.iteration(False))))
    log.append(("destroyed", [src.is_destroyed() for src in srcs]))
    for src in srcs:
        src.destroy()
    return log


#: The programs every run plays (seeds), on real GLib where PyGObject is installed
#: (`tests/test_glib_differential.py`) and against `RECORDED` everywhere else.
SEEDS = range(400)


def digest(GLib: Any, seeds: range = SEEDS) -> str:
    """One SHA-256 over the observations of every program of ``seeds``."""
    import hashlib

    h = hashlib.sha256()
    for seed in seeds:
        h.update(repr(run(GLib, generate(seed))).encode())
    return h.hexdigest()


#: `digest` of `SEEDS` on real GLib 2.74 / PyGObject 3.42 (Debian bookworm's python3-gi);
#: `tests/test_glib_differential.py` checks that it still describes real GLib.
RECORDED = "41f6f93ac3f838c676bbc485a0dc8f1cda5d85e02f7a9a2effb8f55d18d76ebb"
