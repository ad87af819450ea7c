"""A minimal ``gi`` package for running PyGObject's main-loop tests on `aioqloop.glib`.

Only what those test files import: ``gi.repository.GLib`` is `aioqloop.glib` itself,
``gi.events`` is `aioqloop.glib.events`, and ``gi.PyGIDeprecationWarning`` is the
warning class `aioqloop.glib` raises.  Nothing else of PyGObject is imitated.
"""

from __future__ import annotations

import os

from aioqloop import glib as _glib

PyGIDeprecationWarning = _glib.PyGIDeprecationWarning
PyGIWarning = _glib.PyGIWarning
# The release whose test files run (tests/peer/pygobject.py sets it).
__version__ = os.environ.get("AIOQLOOP_PEER_VERSION", "3.50.1")
version_info = tuple(int(part) for part in __version__.split("."))


def require_version(namespace: str, version: str) -> None:
    """Accepted for GLib 2.0 (the only namespace this shim serves)."""


def require_versions(versions: dict[str, str]) -> None:
    """Accepted for GLib 2.0 (the only namespace this shim serves)."""
