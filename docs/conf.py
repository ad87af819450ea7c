"""Sphinx configuration for aioqloop's documentation (built with ``-W``: warnings fail)."""

from __future__ import annotations

import aioqloop

project = "aioqloop"
author = "The aioqloop developers"
copyright = "the aioqloop developers"
release = aioqloop.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "conftest.py"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Single backticks in docstrings name Python objects (`MainContext.default`).
default_role = "py:obj"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"

# Offline builds must not warn: the inventories are looked up only when asked for.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "furo"
html_title = f"aioqloop {release}"


def setup(app: object) -> None:
    """```` ```pytest ```` blocks are Python test files (run as such by conftest.py)."""
    from pygments.lexers.python import PythonLexer

    app.add_lexer("pytest", PythonLexer)  # type: ignore[attr-defined]
