"""Model-based test: random source operations on a stand-alone context against a reference.

The reference is GLib's rule in a few lines: each iteration dispatches the ready sources of
the single most urgent ready priority, in list order (attach order; a priority change moves
the source to the tail of its new list); a callback returning False destroys its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from conftest import machine_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from aioqloop import IdleSource, MainContext, Source

PRIORITIES = st.sampled_from([-100, 0, 0, 100, 200, 300])


@dataclass
class Model:
    kind: str  # "idle" or "rt" (ready while its ready time is 0)
    priority: int
    order: int
    ready: bool
    keep: bool
    alive: bool = True
    source: Source = field(default_factory=Source)


class ContextMachine(RuleBasedStateMachine):
    sources = Bundle("sources")

    def __init__(self) -> None:
        super().__init__()
        self.ctx = MainContext(_driver="standalone")
        self.models: list[Model] = []
        self.seq = 0
        self.dispatched: list[int] = []

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _attach(self, kind: str, priority: int, ready: bool, keep: bool) -> int:
        index = len(self.models)
        src: Source = IdleSource(priority=priority) if kind == "idle" else Source(priority=priority)
        m = Model(kind, priority, self._next(), kind == "idle" or ready, keep, source=src)

        def cb() -> bool:
            self.dispatched.append(index)
            return m.keep

        src.set_callback(cb)
        if kind == "rt":
            src.set_ready_time(0 if ready else -1)
        src.attach(self.ctx)
        self.models.append(m)
        return index

    @rule(target=sources, priority=PRIORITIES, keep=st.booleans())
    def add_idle(self, priority: int, keep: bool) -> int:
        return self._attach("idle", priority, True, keep)

    @rule(target=sources, priority=PRIORITIES, ready=st.booleans(), keep=st.booleans())
    def add_ready_time_source(self, priority: int, ready: bool, keep: bool) -> int:
        return self._attach("rt", priority, ready, keep)

    @rule(index=consumes(sources))
    def destroy(self, index: int) -> None:
        m = self.models[index]
        m.source.destroy()
        m.alive = False

    @rule(index=sources, priority=PRIORITIES)
    def change_priority(self, index: int, priority: int) -> None:
        m = self.models[index]
        if not m.alive or m.priority == priority:
            return
        m.source.priority = priority
        m.priority = priority
        m.order = self._next()  # GLib re-adds it at the tail of its new list

    @rule(index=sources, ready=st.booleans())
    def set_ready(self, index: int, ready: bool) -> None:
        m = self.models[index]
        if not m.alive or m.kind != "rt":
            return
        m.source.set_ready_time(0 if ready else -1)
        m.ready = ready

    @rule(index=sources, keep=st.booleans())
    def set_keep(self, index: int, keep: bool) -> None:
        self.models[index].keep = keep

    @precondition(lambda self: bool(self.models))
    @rule()
    def iterate(self) -> None:
        ready = [m for m in self.models if m.alive and m.ready]
        expected: list[int] = []
        if ready:
            best = min(m.priority for m in ready)
            batch = sorted((m for m in ready if m.priority == best), key=lambda m: m.order)
            expected = [self.models.index(m) for m in batch]
        self.dispatched.clear()
        result = self.ctx.iteration(False)
        assert self.dispatched == expected
        assert result is bool(expected)
        for i in expected:
            m = self.models[i]
            if not m.keep:
                m.alive = False

    @invariant()
    def sources_agree(self) -> None:
        for m in self.models:
            assert m.source.is_destroyed is (not m.alive)
            if m.alive:
                assert self.ctx.find_source_by_id(m.source.id) is m.source
                assert m.source.priority == m.priority

    def teardown(self) -> None:
        self.ctx.close()


ContextMachine.TestCase.settings = machine_settings(60)
TestContextModel = ContextMachine.TestCase


def test_the_machines_run_fixed_programs_unless_asked_to_hunt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIOQLOOP_FUZZ", raising=False)
    fixed = machine_settings(60)
    assert (fixed.max_examples, fixed.derandomize, fixed.stateful_step_count) == (60, True, 40)
    monkeypatch.setenv("AIOQLOOP_FUZZ", "5000")
    hunt = machine_settings(60)
    assert (hunt.max_examples, hunt.derandomize, hunt.stateful_step_count) == (5000, False, 60)
    monkeypatch.setenv("AIOQLOOP_FUZZ", "lots")
    with pytest.raises(ValueError, match="AIOQLOOP_FUZZ must be a positive number"):
        machine_settings(60)
