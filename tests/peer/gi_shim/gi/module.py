"""``gi.module``: PyGObject's introspection machinery, deliberately not provided.

The name exists so that a test module importing it can be collected; the tests that use
it are excluded (see ``tests/peer/exclusions.py``).
"""

from __future__ import annotations

from typing import Any


def get_introspection_module(namespace: str) -> Any:
    """Not provided: aioqloop.glib is not built from GObject introspection."""
    raise NotImplementedError("gi.module is PyGObject's introspection; aioqloop has none")
