"""The built API reference documents every public name (it builds the site itself)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import aioqloop
import aioqloop.glib

inventory = pytest.importorskip("sphinx.util.inventory")

DOCS = pathlib.Path(__file__).parent


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("html")
    # A process of its own: the build's own deprecation warnings are not this suite's.
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "objects.inv", "rb") as f:
        inv = inventory.InventoryFile.load(f, "", lambda base, uri: uri)
    items = inv.data if hasattr(inv, "data") else inv  # Sphinx 8.2+ / older
    return {name for kind, objs in items.items() if kind.startswith("py:") for name in objs}


@pytest.mark.parametrize(
    ("module", "names"),
    [("aioqloop", aioqloop.__all__), ("aioqloop.glib", aioqloop.glib.__all__)],
)
def test_every_public_name_is_in_the_api_reference(
    documented: set[str], module: str, names: tuple[str, ...]
) -> None:
    missing = [n for n in names if f"{module}.{n}" not in documented]
    assert not missing, f"not in the API reference: {missing}"


def test_glib_events_is_in_the_api_reference(documented: set[str]) -> None:
    from aioqloop.glib import events

    missing = [n for n in events.__all__ if f"aioqloop.glib.events.{n}" not in documented]
    assert not missing
