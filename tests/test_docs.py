"""The documentation's API pages name every public name (a check of the sources).

The docs build itself (Sphinx, with warnings as errors) checks the built reference the
same way against its object inventory: ``docs/test_api_reference.py``, run by the docs CI
step.  This test needs no Sphinx, so the main suite catches a new public name that has
no place in the reference.
"""

from __future__ import annotations

import pathlib
import re

import aioqloop
import aioqloop.glib

API = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api"

# ``.. autoclass:: Name`` (under ``.. currentmodule:: aioqloop``), ``.. data:: A`` with
# continuation lines naming more objects of the same description.
_DIRECTIVE = re.compile(
    r"^\.\. (?:auto)?(?:class|function|data|exception)::[ \t]+(\S+)((?:\n[ \t]{6,}\S+)*)",
    re.M,
)


def _declared(text: str) -> set[str]:
    names: set[str] = set()
    for m in _DIRECTIVE.finditer(text):
        names.add(m.group(1))
        names.update(m.group(2).split())
    return names


def test_every_name_of_aioqloop_all_has_an_api_entry() -> None:
    declared: set[str] = set()
    for page in API.glob("*.rst"):
        text = page.read_text()
        if ".. currentmodule:: aioqloop\n" in text:
            declared |= _declared(text)
    missing = [n for n in aioqloop.__all__ if n not in declared]
    assert not missing, f"add these to a page of docs/api/: {missing}"


def test_every_name_of_glib_all_has_an_api_entry() -> None:
    text = (API / "glib.rst").read_text()
    auto = re.search(
        r"^\.\. automodule:: aioqloop\.glib\n((?:[ \t]+:.*\n(?:[ \t]{6,}.*\n)*)+)", text, re.M
    )
    assert auto is not None and ":members:" in auto.group(1)
    excluded_m = re.search(r":exclude-members:(.*?)(?=\n[ \t]*(?::|\n))", auto.group(1), re.S)
    excluded = set(re.split(r"[,\s]+", excluded_m.group(1).strip())) if excluded_m else set()
    # What the automodule leaves out must be described by hand, on the same page.
    declared = _declared(text.split(".. currentmodule:: aioqloop.glib", 1)[-1])
    assert excluded <= declared, f"excluded but not described: {sorted(excluded - declared)}"
    # The automodule documents the rest of __all__ (the built inventory is checked by
    # docs/test_api_reference.py); an excluded name must still be a public one.
    assert excluded <= set(aioqloop.glib.__all__), sorted(excluded - set(aioqloop.glib.__all__))
