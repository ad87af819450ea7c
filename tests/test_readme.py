"""The README's Python examples stay true: they type-check and they run.

Every ```python block of README.md is written out as a module.  All of them go through
one ``mypy --strict`` run (with the project's mypy settings), and, when pyright is
installed, one pyright run.  Then the blocks run: a block with tests in it (``def test_``)
as one pytest session with the project's pytest settings, any other block as a script.
A block preceded by ``<!-- not run: reason -->`` is type-checked but not run (it needs
something the suite does not have, such as a running QEMU); such blocks stay rare.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIME_LIMIT = 120.0  # seconds for a whole run (a type checker, or all blocks together)
#: pytest-timeout's limit for those tests: above TIME_LIMIT, so the run's own report wins.
_SLOW = pytest.mark.timeout(TIME_LIMIT + 30)
#: Blocks that may go unrun, each with its reason in the README.
MAX_NOT_RUN = 1

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One ```python block: where it starts, its code, why it is not run (if so)."""

    line: int
    code: str
    not_run: str | None

    @property
    def is_test_module(self) -> bool:
        return re.search(r"^\s*(async\s+)?def test_", self.code, re.MULTILINE) is not None

    @property
    def filename(self) -> str:
        prefix = "test_readme" if self.is_test_module else "readme"
        return f"{prefix}_line{self.line}.py"


def readme_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, dedented, with their ``not run`` marks."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, indent, lang = i, m["indent"], m["lang"]
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang != "python":
            continue
        prev = lines[start - 1] if start > 0 else ""
        mark = _NOT_RUN.match(prev)
        code = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
        blocks.append(Block(start + 1, code + "\n", mark["reason"] if mark else None))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The blocks as module files in a fresh directory."""
    where = tmp_path_factory.mktemp("readme")
    for block in BLOCKS:
        (where / block.filename).write_text(block.code, encoding="utf-8")
    return where


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIME_LIMIT, check=False)


def test_the_readme_has_python_examples_and_few_unrun() -> None:
    # the quick start, core concepts, the big lock and the pytest examples at least
    assert len(BLOCKS) >= 4
    not_run = [b for b in BLOCKS if b.not_run is not None]
    assert len(not_run) <= MAX_NOT_RUN, [(b.line, b.not_run) for b in not_run]


def test_block_extraction() -> None:
    text = textwrap.dedent("""\
        ```console
        $ ls
        ```
        <!-- not run: needs a QEMU -->
        ```python
        x = 1
        ```
        - a list item:

          ```python
          def test_y() -> None:
              pass
          ```
        """)
    first, second = readme_blocks(text)
    assert (first.line, first.code, first.not_run) == (5, "x = 1\n", "needs a QEMU")
    assert first.filename == "readme_line5.py"
    assert second.code == "def test_y() -> None:\n    pass\n"
    assert second.not_run is None and second.is_test_module


@_SLOW
def test_examples_pass_mypy_strict(written: Path) -> None:
    files = [str(written / b.filename) for b in BLOCKS]
    # The project's settings (strict, python_version) and its cache, so a warm run is fast.
    proc = _run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                 "--strict", "--no-error-summary", *files], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@_SLOW
@pytest.mark.skipif(importlib.util.find_spec("pyright") is None,
                    reason="pyright is not installed (pip install pyright)")
def test_examples_pass_pyright(written: Path) -> None:
    files = [str(written / b.filename) for b in BLOCKS]
    proc = _run([sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *files],
                cwd=written)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@_SLOW
def test_example_scripts_run(written: Path) -> None:
    scripts = [b for b in BLOCKS if b.not_run is None and not b.is_test_module]
    assert scripts
    procs = {b.line: subprocess.Popen([sys.executable, b.filename], cwd=written, env=_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
             for b in scripts}
    failed = []
    for line, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failed.append(f"README line {line}: timed out\n{out}")
            continue
        if proc.returncode != 0:
            failed.append(f"README line {line}: exit status {proc.returncode}\n{out}")
    assert not failed, "\n".join(failed)


@_SLOW
def test_example_test_modules_pass(written: Path) -> None:
    modules = [b.filename for b in BLOCKS if b.not_run is None and b.is_test_module]
    assert modules
    # The project's pytest settings (warnings are errors, strict markers, timeouts).
    proc = _run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
                 "--rootdir", str(written), "-q", "-p", "no:randomly", *modules],
                cwd=written)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
