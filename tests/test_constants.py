"""GLib's priority numbers, callback return values and poll(2) condition bits."""

from __future__ import annotations

import enum
import select

import aioqloop
from aioqloop import constants


def test_priorities_match_glib() -> None:
    assert aioqloop.PRIORITY_HIGH == -100
    assert aioqloop.PRIORITY_DEFAULT == 0
    assert aioqloop.PRIORITY_HIGH_IDLE == 100
    assert aioqloop.PRIORITY_DEFAULT_IDLE == 200
    assert aioqloop.PRIORITY_LOW == 300
    order = [aioqloop.PRIORITY_HIGH, aioqloop.PRIORITY_DEFAULT, aioqloop.PRIORITY_HIGH_IDLE,
             aioqloop.PRIORITY_DEFAULT_IDLE, aioqloop.PRIORITY_LOW]
    assert order == sorted(order)


def test_source_return_values() -> None:
    assert aioqloop.SOURCE_CONTINUE is True
    assert aioqloop.SOURCE_REMOVE is False


def test_iocondition_holds_poll_values() -> None:
    cond = aioqloop.IOCondition
    assert issubclass(cond, enum.IntFlag)
    assert [m.name for m in cond] == ["IN", "PRI", "OUT", "ERR", "HUP", "NVAL"]
    assert cond.IN == select.POLLIN == 1
    assert cond.PRI == select.POLLPRI == 2
    assert cond.OUT == select.POLLOUT == 4
    assert cond.ERR == select.POLLERR == 8
    assert cond.HUP == select.POLLHUP == 16
    assert cond.NVAL == select.POLLNVAL == 32
    assert cond(select.POLLIN | select.POLLHUP) == cond.IN | cond.HUP


def test_module_exports() -> None:
    for name in constants.__all__:
        assert getattr(aioqloop, name) is getattr(constants, name)
