"""The ``aioqloop`` command: ``python -m aioqloop demo`` and ``python -m aioqloop bench``.

Each subcommand's own options follow its name and are parsed by that subcommand's
``main(argv)``; ``python -m aioqloop demo --help`` lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ("main",)

_COMMANDS = {
    "demo": ("aioqloop.demo", "run a toy QEMU-style machine and print its statistics"),
    "bench": ("aioqloop.bench", "run the benchmarks against asyncio, uvloop and GLib"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioqloop",
        description="GLib's main loop and QEMU's big lock, native to Python's asyncio.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in _COMMANDS.items():
        # add_help=False: "demo --help" must reach the subcommand's own parser.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; ``argv`` excludes the program name.  Returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args:
        parser.print_help()
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
