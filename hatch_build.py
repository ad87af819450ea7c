"""Build hook: compile aioqloop's C core (``aioqloop/_cengine.c``) when a compiler exists.

`pip install .` and `pip install -e .` run it through hatchling.  The extension is
optional: without a working C compiler (or with ``AIOQLOOP_NO_EXTENSION=1``) the build
says so and installs the pure-Python engine, which passes the same tests.  The build
records a hash of the sources it mirrors, so a stale build is never used silently
(`aioqloop._engine`).  ``python hatch_build.py`` rebuilds the in-place copy of a checkout.

A wheel with the core is tagged ``manylinux_2_X_<arch>``, what PyPI accepts, when that is
true of the module built: it links no library but glibc's, and ``X`` is the newest glibc
symbol version it needs (read with binutils' ``readelf``; 17 at least, manylinux2014's
baseline).  Otherwise it keeps the local ``linux_<arch>`` tag, and says so: such a wheel
goes through ``auditwheel repair`` before an upload.  CI (``.ci/run``) checks the tag
against ``auditwheel show``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
PKG = ROOT / "aioqloop"
SOURCE = PKG / "_cengine.c"


def _hash() -> str:
    # aioqloop/_corehash.py, loaded by path: the package itself may not be importable in
    # the build environment.
    spec = importlib.util.spec_from_file_location("_aioqloop_corehash", PKG / "_corehash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    digest: str = module.source_hash(PKG)
    return digest


def compile_core(out_dir: Path, *, inplace: bool = False) -> Path | None:
    """Compile the core into ``out_dir``; the path of the module, or None (reason printed).

    ``inplace``: the build stays next to its sources (an editable install, a checkout),
    which may change under it, so it is checked against them at import; a wheel's is not.
    """
    if os.environ.get("AIOQLOOP_NO_EXTENSION", "") not in ("", "0"):
        _note("AIOQLOOP_NO_EXTENSION is set")
        return None
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"_cengine{suffix}"
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    # -Wextra without -Wunused-parameter: CPython's calling conventions fix the
    # signatures of methods and slots, whose arguments a core function may not need.
    flags = ["-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Wno-unused-parameter",
             f"-I{include}", f'-DAIOQLOOP_SOURCE_HASH="{_hash()}"',
             f"-DAIOQLOOP_INPLACE={int(inplace)}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    cmd = [*cc, *flags, str(SOURCE), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        _note(f"no C compiler ({cc[0]}: {exc.strerror})")
        return None
    if proc.returncode != 0:
        _note(f"the C compiler failed:\n{proc.stderr.strip()}")
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, target)  # atomic: a running interpreter keeps its mapped copy
    return target


#: The libraries a manylinux wheel may link without bundling them (PEP 600: glibc's own).
_GLIBC_LIBS = frozenset({"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
                         "librt.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"})
#: The oldest glibc a tag claims: manylinux2014's, the oldest policy on every architecture.
_MIN_GLIBC = (2, 17)


def manylinux_platform(module: Path) -> tuple[str | None, str]:
    """The ``manylinux_2_X_<arch>`` tag ``module`` qualifies for, or None; and why.

    It qualifies when it runs on glibc, links only glibc's libraries and needs symbol
    versions no newer than ``GLIBC_2.X`` (PEP 600); the versions are those ``readelf``
    lists in the module's version-needs section.
    """
    libc, _ = platform.libc_ver()
    if not sys.platform.startswith("linux") or libc != "glibc":
        return None, f"not a glibc system ({sys.platform}, {libc or 'libc unknown'})"
    try:
        proc = subprocess.run(["readelf", "--wide", "--dynamic", "--version-info", str(module)],
                              capture_output=True, text=True, check=False)
    except OSError as exc:
        return None, f"readelf (binutils) is not available: {exc.strerror}"
    if proc.returncode != 0:
        return None, f"readelf failed: {proc.stderr.strip()}"
    return glibc_tag(proc.stdout, sysconfig.get_platform().partition("-")[2])


def glibc_tag(readelf: str, arch: str) -> tuple[str | None, str]:
    """The manylinux tag for ``readelf -d -V`` output of a module built for ``arch``."""
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf))
    foreign = sorted(needed - _GLIBC_LIBS)
    if foreign:
        return None, f"it links {', '.join(foreign)}, which manylinux does not allow"
    newest = _MIN_GLIBC
    library = None
    for line in readelf.splitlines():
        file = re.search(r"\bFile: (\S+)", line)
        if file:
            library = file.group(1)
            continue
        name = re.search(r"\bName: (\S+)", line)
        if name is None or library is None:
            continue
        version = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", name.group(1))
        if library not in _GLIBC_LIBS or version is None:
            return None, f"it needs {name.group(1)} from {library}"
        newest = max(newest, (int(version.group(1)), int(version.group(2))))
    if not arch:
        return None, "unknown architecture"
    return f"manylinux_{newest[0]}_{newest[1]}_{arch.replace('-', '_')}", "glibc only"


def _note(why: str) -> None:
    print(f"aioqloop: not building the compiled core: {why}; the pure-Python engine "
          "will be used (same behaviour, slower).", file=sys.stderr)


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CoreBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling hook: a platform wheel with the core, or a pure wheel without it.

    The core is compiled in a temporary directory removed in `finalize`: the output
    directory (``dist/``) gets the wheel and nothing else.
    """

    PLUGIN_NAME = "custom"
    _scratch: Path | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if version == "editable":
            # in place: the editable install imports from here
            built = compile_core(PKG, inplace=True)
            if built is not None:
                build_data["pure_python"] = False
                build_data["infer_tag"] = True
            return
        self._scratch = Path(tempfile.mkdtemp(prefix="aioqloop-core-"))
        built = compile_core(self._scratch)
        if built is None:
            self._clean()
            return
        build_data["pure_python"] = False
        build_data["force_include"][str(built)] = f"aioqloop/{built.name}"
        plat, why = manylinux_platform(built)
        if plat is None:
            print(f"aioqloop: the wheel keeps a local platform tag ({why}); run "
                  "'auditwheel repair' on it before an upload", file=sys.stderr)
            build_data["infer_tag"] = True
            return
        from packaging.tags import sys_tags  # hatchling's own dependency

        best = next(iter(sys_tags()))
        build_data["tag"] = f"{best.interpreter}-{best.abi}-{plat}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._clean()

    def _clean(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


if __name__ == "__main__":
    path = compile_core(PKG, inplace=True)
    print(path if path else "not built")
    sys.exit(0 if path else 1)
