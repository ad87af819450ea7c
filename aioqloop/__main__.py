"""The ``aioqloop`` command: ``aioqloop demo``, ``aioqloop bench`` and ``aioqloop --version``.

``python -m aioqloop`` is the same command; both call themselves ``aioqloop`` in their
usage lines.  Each subcommand's own options follow its name and are parsed by that
subcommand's ``main(argv)``; ``aioqloop demo --help`` lists them.  ``--version`` prints
the version and which engine runs, and why (`aioqloop._engine`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: The program name in every usage line, whether run as ``python -m aioqloop`` or as the
#: ``aioqloop`` console script.
PROG = "aioqloop"

__all__ = ("main",)

_COMMANDS = {
    "demo": ("aioqloop.demo", "run a toy QEMU-style machine and print its statistics"),
    "bench": ("aioqloop.bench", "run the benchmarks against asyncio, uvloop and GLib"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="GLib's main loop and QEMU's big lock, native to Python's asyncio.",
    )
    parser.add_argument("--version", action="store_true",
                        help="print the version and which engine runs, and why")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in _COMMANDS.items():
        # add_help=False: "demo --help" must reach the subcommand's own parser.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def version_text() -> str:
    """What ``--version`` prints: the version, the engine that runs and why."""
    import aioqloop
    from aioqloop import _engine

    reason = _engine.REASON
    if _engine.ENGINE == "c":
        engine = f"c (the compiled core: {reason})"
    else:
        if reason.startswith("AIOQLOOP_ENGINE="):
            reason = f"asked for with {reason}"
        elif reason.startswith("a free-threaded"):
            reason = f"this is {reason}"
        engine = f"python (the pure-Python engine, because {reason})"
    impl = f"{sys.implementation.name} {sys.version.split()[0]}"
    return f"{PROG} {aioqloop.__version__}\nengine: {engine}\npython: {impl} ({sys.executable})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; ``argv`` excludes the program name.  Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args:
        parser.print_help()
        return 0
    if args[0] == "--version":
        if len(args) > 1:
            parser.error(f"--version takes no arguments: {' '.join(args[1:])}")
        print(version_text())
        return 0
    if args[0] not in _COMMANDS:
        parser.parse_args(args[:1])  # prints usage and exits 2 for an unknown command
        return 2
    module_name = _COMMANDS[args[0]][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a dependency of the subcommand is missing: show the real error
        print(
            f"aioqloop: the '{args[0]}' command is not available in this installation "
            f"({module_name} is missing)",
            file=sys.stderr,
        )
        return 1
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
