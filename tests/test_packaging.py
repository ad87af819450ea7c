"""What ``python -m build`` makes and what the command line says about the installation.

One build (sdist and wheel, by hatchling into an empty directory, as ``python -m build``
does into ``dist/``) serves every packaging test here.
"""

from __future__ import annotations

import email
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import aioqloop
from aioqloop import __main__ as cli
from aioqloop import _engine, bench

ROOT = Path(__file__).resolve().parent.parent


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_aioqloop_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one build of the sdist and the wheel."""
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=110,
    )
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    (wheel,) = dist.glob("aioqloop-*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.timeout(120)
def test_build_leaves_only_the_packages(dist: Path) -> None:
    """The core is compiled elsewhere: no ``core-build/`` next to the wheel."""
    names = sorted(p.name for p in dist.iterdir())
    assert len(names) == 2, names
    assert sorted(Path(n).suffix for n in names) == [".gz", ".whl"], names


@pytest.mark.timeout(120)
def test_wheel_ships_the_workloads(dist: Path) -> None:
    """``pip install aioqloop && aioqloop bench`` needs the workloads inside the wheel."""
    names = set(_wheel(dist).namelist())
    shipped = {n for n in names if n.startswith("aioqloop/_benchmarks/")}
    expected = {f"aioqloop/_benchmarks/bench_{w}.py" for w in bench.WORKLOADS}
    expected |= {"aioqloop/_benchmarks/_benchlib.py", "aioqloop/_benchmarks/_glib_worker.py"}
    assert expected <= shipped
    assert not [n for n in shipped if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.timeout(120)
def test_sdist_carries_the_ci_scripts(dist: Path) -> None:
    """The README and the GLib tests' skip messages point to ``.ci/``."""
    (sdist,) = dist.glob("aioqloop-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        run = tar.getmember(f"{tar.getnames()[0].split('/')[0]}/.ci/run")
        assert run.mode & 0o100, oct(run.mode)  # still executable
    assert {".ci/run", ".ci/glib-differential.sh"} <= names
    # What the suite (tests/test_docs.py) and the metadata's Changelog URL point to.
    assert {"docs/index.md", "docs/conf.py", "CHANGELOG.md", "CONTRIBUTING.md"} <= names


@pytest.mark.timeout(120)
def test_sdist_has_every_core_source_and_the_wheel_none(dist: Path) -> None:
    """A wheel built from the sdist compiles the core from all its parts; an installed
    wheel's build is not checked against sources at import, so it ships none of them."""
    (sdist,) = dist.glob("aioqloop-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    parts = {f"aioqloop/{p.relative_to(ROOT / 'aioqloop')}"
             for p in (ROOT / "aioqloop" / "_csrc").glob("*.h")}
    assert len(parts) > 5
    assert {"aioqloop/_cengine.c", "hatch_build.py", *parts} <= names
    assert {f"aioqloop/{name}" for name in _engine.HASHED} <= names
    shipped = set(_wheel(dist).namelist())
    assert not [n for n in shipped if n == "aioqloop/_cengine.c" or "/_csrc/" in n]


@pytest.mark.timeout(120)
def test_metadata_has_project_urls_and_no_required_rich(dist: Path) -> None:
    wheel = _wheel(dist)
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    msg = email.message_from_bytes(wheel.read(meta))
    urls = dict(u.split(", ", 1) for u in msg.get_all("Project-URL") or [])
    base = "https://github.com/aioqloop/aioqloop"
    assert urls == {
        "Source": base,
        "Documentation": "https://aioqloop.readthedocs.io",
        "Changelog": f"{base}/blob/main/CHANGELOG.md",
        "Issues": f"{base}/issues",
    }
    requires = msg.get_all("Requires-Dist") or []
    unconditional = [r for r in requires if "extra ==" not in r]
    assert all(r.startswith("backports") for r in unconditional), unconditional
    assert "rich>=13; extra == 'rich'" in requires
    assert "rich" in (msg.get_all("Provides-Extra") or [])


@pytest.mark.timeout(120)
def test_wheel_with_the_core_is_tagged_manylinux(dist: Path) -> None:
    wheel = _wheel(dist)
    cores = [n for n in wheel.namelist() if re.fullmatch(r"aioqloop/_cengine\..*\.so", n)]
    (info,) = [n for n in wheel.namelist() if n.endswith(".dist-info/WHEEL")]
    tags = [line.split(": ", 1)[1] for line in wheel.read(info).decode().splitlines()
            if line.startswith("Tag: ")]
    assert len(tags) == 1
    assert Path(wheel.filename or "").name.endswith(f"-{tags[0]}.whl")
    if not cores:
        assert tags[0] == "py3-none-any"  # no compiler: the pure engine
        return
    m = re.fullmatch(r"cp\d+-cp\d+t?-manylinux_(\d+)_(\d+)_(\w+)", tags[0])
    assert m, tags
    assert (int(m.group(1)), int(m.group(2))) >= (2, 17)


_READELF = """
Dynamic section at offset 0x17dd8 contains 22 entries:
  Tag        Type                         Name/Value
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
{extra}
Version needs section '.gnu.version_r' contains 1 entry:
 Addr: 0x0000000000000a10  Offset: 0x000a10  Link: 4 (.dynstr)
  000000: Version: 1  File: libc.so.6  Cnt: 2
  0x0010:   Name: GLIBC_2.2.5  Flags: none  Version: 3
  0x0020:   Name: {newest}  Flags: none  Version: 2
"""


@pytest.mark.parametrize(("extra", "newest", "tag"), [
    ("", "GLIBC_2.4", "manylinux_2_17_x86_64"),  # never below manylinux2014
    ("", "GLIBC_2.34", "manylinux_2_34_x86_64"),
    (" 0x1 (NEEDED)             Shared library: [libm.so.6]", "GLIBC_2.29",
     "manylinux_2_29_x86_64"),
    (" 0x1 (NEEDED)             Shared library: [libssl.so.3]", "GLIBC_2.4", None),
    ("", "GLIBC_PRIVATE", None),
])
def test_manylinux_tag_follows_the_glibc_versions(extra: str, newest: str,
                                                  tag: str | None) -> None:
    found, why = _hook().glibc_tag(_READELF.format(extra=extra, newest=newest), "x86_64")
    assert found == tag, why


def test_without_readelf_the_wheel_keeps_the_local_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No claim that cannot be checked: no manylinux tag without the symbol versions."""
    hook = _hook()
    monkeypatch.setenv("PATH", str(tmp_path))  # no readelf on it
    if hook.platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    found, why = hook.manylinux_platform(Path(sys.executable))
    assert found is None
    assert "readelf" in why


# ------------------------------------------------------------------ the command line


def _run(*args: str, engine: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if engine is not None:
        env["AIOQLOOP_ENGINE"] = engine
    return subprocess.run([sys.executable, "-m", "aioqloop", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=True)


def test_version_names_the_pure_engine_and_why() -> None:
    lines = _run("--version", engine="python").stdout.splitlines()
    assert lines[0] == f"aioqloop {aioqloop.__version__}"
    assert lines[1] == ("engine: python (the pure-Python engine, because asked for with "
                        "AIOQLOOP_ENGINE=python)")
    assert lines[2].startswith(f"python: {sys.implementation.name} ")


def test_version_names_the_compiled_core() -> None:
    try:
        _run("--version", engine="c")
    except subprocess.CalledProcessError as exc:
        assert "compiled core" in exc.stderr  # AIOQLOOP_ENGINE=c says why not
        pytest.skip("the compiled core is not built or not current here")
    out = _run("--version", engine="c").stdout
    assert "engine: c (the compiled core: built and current)" in out


@pytest.mark.parametrize(("engine", "reason", "shown"), [
    ("python", "the compiled core is not built (no C compiler at install time?)",
     "because the compiled core is not built (no C compiler at install time?)"),
    ("python", "a free-threaded interpreter (the compiled core assumes the GIL)",
     "because this is a free-threaded interpreter"),
    ("python", "the compiled core x.so is stale: the sources changed since it was built",
     "because the compiled core x.so is stale"),
])
def test_version_explains_each_fallback(monkeypatch: pytest.MonkeyPatch, engine: str,
                                        reason: str, shown: str) -> None:
    monkeypatch.setattr(_engine, "ENGINE", engine)
    monkeypatch.setattr(_engine, "REASON", reason)
    text = cli.version_text()
    assert f"engine: python (the pure-Python engine, {shown}" in text


def test_version_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version", "demo"])
    assert info.value.code == 2
    assert "--version takes no arguments" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_usage_lines_name_one_program(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m aioqloop X`` and the ``aioqloop`` script both say ``aioqloop X``."""
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: aioqloop {command} ")
    assert _run(command, "--help").stdout.startswith(f"usage: aioqloop {command} ")
    assert _run("--help").stdout.startswith("usage: aioqloop ")
