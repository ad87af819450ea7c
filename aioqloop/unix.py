"""Unix signal and child-process sources (placeholder until implemented)."""

from __future__ import annotations

from .source import Source

__all__ = ("ChildWatchSource", "SignalSource", "child_watch_add", "signal_add")


class SignalSource(Source):
    """Placeholder."""


class ChildWatchSource(Source):
    """Placeholder."""


def signal_add(*args: object, **kwargs: object) -> int:
    """Placeholder."""
    raise NotImplementedError


def child_watch_add(*args: object, **kwargs: object) -> int:
    """Placeholder."""
    raise NotImplementedError
