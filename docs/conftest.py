"""Run the documentation's code blocks as tests (sybil), so the pages cannot drift.

- ```` ```python ```` blocks run in page order, in one namespace per page.
- ```` ```pytest ```` blocks are test files: each is written to a directory of its own and
  run by pytest in a fresh process (with this package's plugin, as a user would).  Every
  test in it must pass, except those whose name says ``fail``, which must fail.
- ``<!-- skip: next -->`` before a block marks one that cannot run here; ``console``
  blocks are shell transcripts and are not run.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys
import tempfile

from sybil import Example, Sybil
from sybil.parsers.myst import CodeBlockParser, PythonCodeBlockParser, SkipParser


def run_test_file(example: Example) -> None:
    source = str(example.parsed)
    names = [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp, "test_page_example.py")
        path.write_text(source)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
             "-p", "no:hypothesispytest", "-o", "asyncio_default_fixture_loop_scope=function",
             str(path)],
            cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
        )
    report = proc.stdout + proc.stderr
    outcomes = {
        m.group(2): m.group(1)
        for m in re.finditer(r"^(PASSED|FAILED|ERROR|SKIPPED) \S*::(test_\w+)", report, re.M)
    }
    for name in names:
        want = "FAILED" if "fail" in name else "PASSED"
        found = {o for n, o in ((k.split("[")[0], v) for k, v in outcomes.items()) if n == name}
        assert found == {want}, f"{name}: expected {want}, got {found or 'nothing'}\n{report}"


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(),
        CodeBlockParser(language="pytest", evaluator=run_test_file),
        SkipParser(),
    ],
    patterns=["*.md"],
    excludes=["changelog.md", "contributing.md"],
).pytest()
