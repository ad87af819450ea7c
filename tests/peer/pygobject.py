"""Run PyGObject's own main-loop test files on `aioqloop.glib` and on real GLib.

The test files come from the sdist of a pinned PyGObject release, downloaded at test
time from PyPI (checked against its published sha256) and cached outside git under
``.cache/pygobject`` at the repository root (``AIOQLOOP_PEER_CACHE`` overrides it).
Nothing of PyGObject is committed.

`build_tree` copies the selected files (and PyGObject's ``helper.py``, which they import)
into a scratch package with our own ``conftest.py`` (``pgconftest.py``); `run` runs
pytest on it in a subprocess, either with the ``gi`` shim of ``gi_shim/`` first on the
path (``impl="aioqloop"``: ``gi.repository.GLib`` is `aioqloop.glib`) or with a Python
whose ``gi`` is real PyGObject (``impl="real"``), and returns ``{test id: outcome}``.

Two releases' files run (`SDISTS`): 3.50.1's on aioqloop.glib and on real PyGObject 3.50.1,
and the current release's (3.58.1) on aioqloop.glib, each with its own exclusions.

Also a script: ``python -m tests.peer.pygobject`` prints the side-by-side counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from tests.peer import exclusions

#: The releases whose test files run here: ``{version: (sdist URL, sha256)}``.  3.50.1 is
#: the release real PyGObject is built from (``.ci/glib-differential.sh``); 3.58.1 is the
#: current one (policy-less gi.events), which needs a newer GLib than Debian's to build,
#: so its files run on aioqloop.glib only.
SDISTS: dict[str, tuple[str, str]] = {
    "3.50.1": (
        "https://files.pythonhosted.org/packages/71/eb/"
        "53106840011df907781891a4968a35cfde42aef0e80f74c060367402a468/pygobject-3.50.1.tar.gz",
        "a4df4e7adef7f4f01685a763d138eac9396585bfc68a7d31bbe4fbca2de0d7cb",
    ),
    "3.58.1": (
        "https://files.pythonhosted.org/packages/65/1e/"
        "d590f82e14db75945b03f6b63e0f19662e0340babd8f574fdb1bb5a015e2/pygobject-3.58.1.tar.gz",
        "4c80598ade17fbaa7798e01a25d0bf29ce109740786026a074c5c62bb3e79d23",
    ),
}
#: The release real PyGObject is built from (the recorded real passes are of its files).
VERSION = "3.50.1"
CURRENT = "3.58.1"

#: PyGObject's test files that exercise the main loop (issue list), in report order.
FILES = (
    "test_source.py",
    "test_mainloop.py",
    "test_glib.py",
    "test_iochannel.py",
    "test_subprocess.py",
    "test_overrides_glib.py",
    "test_ossig.py",
    "test_events.py",
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHIM = HERE / "gi_shim"


class Unavailable(Exception):
    """The sdist cannot be had (no network and no cached copy)."""


def cache_dir() -> Path:
    return Path(os.environ.get("AIOQLOOP_PEER_CACHE", ROOT / ".cache" / "pygobject"))


def sdist_tests(version: str = VERSION) -> Path:
    """The ``tests/`` directory of ``version``'s sdist, downloaded and unpacked once."""
    url, sha256 = SDISTS[version]
    cache = cache_dir()
    unpacked = cache / f"pygobject-{version}" / "tests"
    if (unpacked / "helper.py").is_file():
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"pygobject-{version}.tar.gz"
    if not archive.is_file():
        # `pip download --no-binary :all:` would fetch this same file but then build the
        # package's metadata (meson, a C toolchain, GLib headers) just to name it; the
        # pinned URL and hash are what PyPI's index lists for the release.
        part = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as f:
                shutil.copyfileobj(resp, f)
        except OSError as exc:
            raise Unavailable(f"cannot download PyGObject {version} sdist: {exc}") from exc
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        if digest != sha256:
            part.unlink()
            raise Unavailable(f"PyGObject sdist hash mismatch: {digest}")
        part.replace(archive)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"pygobject-{version}/tests/")]
        tar.extractall(cache, members=members)
    return unpacked


def build_tree(dest: Path, version: str = VERSION) -> Path:
    """A package ``pgtests`` in ``dest`` holding ``version``'s selected files."""
    src = sdist_tests(version)
    pkg = dest / "pgtests"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(src / "helper.py", pkg / "helper.py")
    for name in FILES:
        shutil.copy(src / name, pkg / name)
    shutil.copy(HERE / "pgconftest.py", pkg / "conftest.py")
    # pytest-timeout's "signal" method arms ITIMER_REAL, and test_ossig.py's idle callback
    # returns what setitimer() returns, the old timer's (delay, interval): a non-zero
    # delay keeps the idle source alive, so it re-arms the 1 ms alarm every iteration and
    # the alarm fires only if an iteration happens to take over 1 ms, on any GLib.
    (dest / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider -p no:aioqloop -p no:randomly\n"
        "timeout = 30\ntimeout_method = thread\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pkg


def real_python() -> str | None:
    """A Python whose ``gi`` is real PyGObject and that has pytest, or None."""
    candidates = [
        os.environ.get("AIOQLOOP_REAL_GLIB_PYTHON", ""),
        # PyGObject VERSION itself, built by .ci/glib-differential.sh on Debian's GLib:
        str(ROOT / ".tox" / "pygobject" / "bin" / "python"),
    ]
    probe = "import gi, pytest; gi.require_version('GLib', '2.0'); from gi.repository import GLib"
    for py in candidates:
        if py and os.access(py, os.X_OK):
            ok = subprocess.run(
                [py, "-W", "ignore", "-c", probe], capture_output=True, timeout=60
            ).returncode
            if ok == 0:
                return py
    return None


def run(
    impl: str, python: str | None = None, base: str = "asyncio",
    files: tuple[str, ...] = FILES, timeout: int | None = None, version: str = VERSION,
) -> dict[str, str]:
    """Run ``version``'s ``files`` on ``impl`` ("aioqloop" or "real"); ``{test id: outcome}``.

    ``base`` is the loop gi.events is served on: "asyncio", "uvloop", or "uvloop-plain"
    (plain uvloop, no aioqloop: the control for the uvloop run).  ``timeout``: seconds a
    test may take (the tree's default is 30).
    """
    if impl == "real":
        python = python or real_python()
        if python is None:
            raise Unavailable("no Python with real PyGObject and pytest")
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="aioqloop-pygobject-") as tmp:
        build_tree(Path(tmp), version)
        results = Path(tmp) / "results.json"
        env = dict(os.environ)
        env["AIOQLOOP_PEER_IMPL"] = impl
        env["AIOQLOOP_PEER_RESULTS"] = str(results)
        env["AIOQLOOP_GLIB_EVENTS_BASE"] = base
        env["AIOQLOOP_PEER_VERSION"] = version
        env.pop("PYTHONPATH", None)
        if timeout is not None:
            env["PYTEST_ADDOPTS"] = f"--timeout {timeout}"
        if impl == "aioqloop":
            env["PYTHONPATH"] = os.pathsep.join([str(SHIM), str(ROOT)])
        outcomes: dict[str, str] = {}
        for name in files:
            # One process per file, as each file leaves the default context to the next
            # one in whatever state it likes (real GLib hangs in test_source.py after
            # test_events.py).
            outcomes.update(_run_file(python, f"pgtests/{name}", Path(tmp), env, results))
        return outcomes


def _run_file(
    python: str, path: str, tmp: Path, env: dict[str, str], results: Path
) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    deselect: list[str] = []
    for _attempt in range(20):
        args = [python, "-m", "pytest", "-q", "--continue-on-collection-errors", path]
        for nodeid in deselect:
            args += ["--deselect", nodeid]
        _run_in_own_group(args, path, tmp, env)
        if not results.is_file():
            raise RuntimeError(f"running {path} on {env['AIOQLOOP_PEER_IMPL']} wrote no results")
        state = json.loads(results.read_text())
        outcomes.update(state["outcomes"])
        results.unlink()
        if state["finished"]:
            break
        # The interpreter died (or pytest broke down) inside this test: count it as
        # crashed and run the rest of the file.
        if state["running"] is not None:
            outcomes[state["running"]] = "crashed"
        deselect = [k for k in outcomes if "<collection>" not in k]
    return outcomes


def _group_members(pgid: int) -> list[int]:
    """The processes still in process group ``pgid`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after it
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry.name))
    return members


def _run_in_own_group(args: list[str], path: str, cwd: Path, env: dict[str, str]) -> None:
    """Run one pytest process in a process group of its own, and end whatever it leaves
    running there: CPython's subprocess tests (through PyGObject's test_events.py) start
    hour-long ``time.sleep`` children, and a test that fails before killing its child
    would leave it behind.  The count is written to stderr."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=900)
    finally:
        left = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
        if left:
            print(f"{path}: {len(left)} process(es) left behind, killed", file=sys.stderr)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def by_file(outcomes: dict[str, str]) -> dict[str, Counter[str]]:
    table: dict[str, Counter[str]] = {name: Counter() for name in FILES}
    for nodeid, outcome in outcomes.items():
        name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        table.setdefault(name, Counter())[outcome] += 1
    return table


def _main_loop_only(outcomes: dict[str, str], version: str) -> dict[str, str]:
    return {k: v for k, v in outcomes.items()
            if exclusions.excluded(k.removeprefix("pgtests/"), version) is None}


def report(aio: dict[str, str], real: dict[str, str] | None, version: str = VERSION) -> str:
    """Side-by-side pass counts per file: all tests, and the main-loop ones (those not
    excluded by `tests.peer.exclusions`, which every GLib main loop should pass)."""
    lines = [f"PyGObject {version}'s test files",
             f"{'':<24} {'all tests':^27} {'main-loop tests':^27}",
             f"{'file':<24} {'aioqloop.glib':>13} {'real GLib':>13} "
             f"{'aioqloop.glib':>13} {'real GLib':>13}"]
    ta, tr = by_file(aio), by_file(real or {})
    ma = by_file(_main_loop_only(aio, version))
    mr = by_file(_main_loop_only(real or {}, version))

    def cell(table: dict[str, Counter[str]], name: str, present: bool) -> str:
        c = table.get(name, Counter())
        return f"{c['passed']:>7}/{sum(c.values()):<5}" if present else f"{'-':>13}"

    for table in (ta, tr, ma, mr):
        table["total"] = sum((table.get(n, Counter()) for n in FILES), Counter())
    for name in (*FILES, "total"):
        lines.append(
            f"{name:<24} {cell(ta, name, True)} {cell(tr, name, real is not None)} "
            f"{cell(ma, name, True)} {cell(mr, name, real is not None)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    everything: dict[str, Any] = {}
    for release in SDISTS:
        aio_out = run("aioqloop", version=release)
        real_out: dict[str, str] | None = None
        if release == VERSION:
            try:
                real_out = run("real")
            except Unavailable:
                pass
        print(report(aio_out, real_out, release))
        everything[release] = {"aioqloop": aio_out, "real": real_out}
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(everything, indent=1))
