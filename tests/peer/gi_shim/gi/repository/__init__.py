"""``gi.repository``: ``GLib`` is `aioqloop.glib`; ``Gio`` is an empty stand-in.

``Gio`` exists only so that a test module importing it can be collected; any test that
uses it fails (and is listed as excluded: Gio is not GLib's main loop).
"""

from __future__ import annotations

import sys
import types

from aioqloop import glib as GLib

Gio = types.ModuleType("gi.repository.Gio", "Not provided: Gio is not part of aioqloop.glib.")
sys.modules["gi.repository.GLib"] = GLib
sys.modules["gi.repository.Gio"] = Gio

__all__ = ("GLib", "Gio")
