"""``gi._ossighelper``: PyGObject-private helpers, deliberately not provided.

The names exist so that a test module importing them can be collected; the tests of
these helpers themselves are excluded (see ``tests/peer/exclusions.py``).
"""

from __future__ import annotations

from typing import Any


def _missing(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("gi._ossighelper is PyGObject-private; aioqloop has no equivalent")


wakeup_on_signal = _missing
register_sigint_fallback = _missing
