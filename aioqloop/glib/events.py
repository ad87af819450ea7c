"""PyGObject 3.50's ``gi.events`` face (placeholder)."""

from __future__ import annotations

GLibEventLoop = None
GLibEventLoopPolicy = None
GLibTask = None
