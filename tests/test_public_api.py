"""The public surface: every contract name is exported, __all__ is exact, internals are private."""

from __future__ import annotations

import importlib

import pytest

import aioqloop

CORE = """PRIORITY_HIGH PRIORITY_DEFAULT PRIORITY_HIGH_IDLE PRIORITY_DEFAULT_IDLE PRIORITY_LOW
SOURCE_CONTINUE SOURCE_REMOVE IOCondition Source TimeoutSource IdleSource FdSource SignalSource
ChildWatchSource BottomHalf timeout_add idle_add fd_add signal_add child_watch_add source_remove
MainContext MainLoop main_depth current_source new_event_loop run EventLoopPolicy get_main_context
BigLock bql VirtualClock""".split()

GLIB = """MainLoop MainContext Source Idle Timeout timeout_add timeout_add_seconds idle_add
source_remove unix_fd_add_full unix_signal_add child_watch_add main_depth main_current_source
get_monotonic_time PRIORITY_HIGH PRIORITY_DEFAULT PRIORITY_HIGH_IDLE PRIORITY_DEFAULT_IDLE
PRIORITY_LOW SOURCE_CONTINUE SOURCE_REMOVE IOCondition""".split()


@pytest.mark.parametrize("name", CORE)
def test_core_name_exported(name: str) -> None:
    assert name in aioqloop.__all__
    assert getattr(aioqloop, name) is not None


@pytest.mark.parametrize("name", GLIB)
def test_glib_name_exported(name: str) -> None:
    glib = importlib.import_module("aioqloop.glib")
    assert hasattr(glib, name)


def test_all_is_a_tuple_of_existing_names() -> None:
    assert isinstance(aioqloop.__all__, tuple)
    assert len(set(aioqloop.__all__)) == len(aioqloop.__all__)
    for name in aioqloop.__all__:
        assert hasattr(aioqloop, name), name


def test_priority_values_match_glib() -> None:
    assert (
        aioqloop.PRIORITY_HIGH,
        aioqloop.PRIORITY_DEFAULT,
        aioqloop.PRIORITY_HIGH_IDLE,
        aioqloop.PRIORITY_DEFAULT_IDLE,
        aioqloop.PRIORITY_LOW,
    ) == (-100, 0, 100, 200, 300)
    assert aioqloop.SOURCE_CONTINUE is True
    assert aioqloop.SOURCE_REMOVE is False


def test_iocondition_holds_poll_values() -> None:
    import select

    c = aioqloop.IOCondition
    assert (c.IN, c.PRI, c.OUT, c.ERR, c.HUP, c.NVAL) == (
        select.POLLIN,
        select.POLLPRI,
        select.POLLOUT,
        select.POLLERR,
        select.POLLHUP,
        select.POLLNVAL,
    )


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aioqloop.nope  # type: ignore[attr-defined]  # the missing name is the test


def test_event_loop_policy_is_built_lazily_and_makes_aioqloop_loops() -> None:
    policy_cls = aioqloop.EventLoopPolicy
    assert policy_cls is aioqloop.EventLoopPolicy
    loop = policy_cls().new_event_loop()
    try:
        assert hasattr(loop, "main_context")
    finally:
        loop.close()
    with pytest.raises(ValueError, match="base must be"):
        policy_cls(base="tk")
