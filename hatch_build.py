"""Build hook: compile aioqloop's C core (``aioqloop/_cengine.c``) when a compiler exists.

`pip install .` and `pip install -e .` run it through hatchling.  The extension is
optional: without a working C compiler (or with ``AIOQLOOP_NO_EXTENSION=1``) the build
says so and installs the pure-Python engine, which passes the same tests.  The build
records a hash of the sources it mirrors, so a stale build is never used silently
(`aioqloop._engine`).  ``python hatch_build.py`` rebuilds the in-place copy of a checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
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
    flags = ["-O2", "-fPIC", "-shared", "-Wall", "-Wno-deprecated-declarations",
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


def _note(why: str) -> None:
    print(f"aioqloop: not building the compiled core: {why}; the pure-Python engine "
          "will be used (same behaviour, slower).", file=sys.stderr)


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CoreBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling hook: a platform wheel with the core, or a pure wheel without it."""

    PLUGIN_NAME = "custom"

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
        built = compile_core(Path(self.directory) / "core-build")
        if built is not None:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            build_data["force_include"][str(built)] = f"aioqloop/{built.name}"


if __name__ == "__main__":
    path = compile_core(PKG, inplace=True)
    print(path if path else "not built")
    sys.exit(0 if path else 1)
