#!/bin/sh
# Differential tests of aioqloop.glib against real GLib (Debian's python3-gi).
#
# Idempotent: installs python3-gi if it is missing (needs root and apt), builds a venv on
# the system Python with --system-site-packages (so gi is importable) under .tox/glibvenv,
# installs the project with its test extra, builds real PyGObject 3.50.1 under .tox/pygobject,
# and runs tests/test_glib_differential.py and tests/test_glib_pygobject.py (PyGObject's own
# main-loop test files on aioqloop.glib and on real GLib).
# Exits non-zero on any failure.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SYSPY=${SYSPY:-/usr/bin/python3}
VENV=${GLIB_VENV:-$ROOT/.tox/glibvenv}

if ! "$SYSPY" -c 'import gi; gi.require_version("GLib", "2.0"); from gi.repository import GLib' \
        >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "glib-differential: python3-gi is missing and we are not root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-gi gir1.2-glib-2.0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$SYSPY" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install -q -e "$ROOT[test]"

# Real PyGObject of the release whose test files tests/test_glib_pygobject.py runs, built
# against Debian's GLib (tests/peer/pygobject.py looks for it under .tox/pygobject), and
# CPython's test package for the asyncio mixins its test_events.py uses.
PGVENV=$ROOT/.tox/pygobject
if ! "$PGVENV/bin/python" -c 'import gi, pytest; assert gi.__version__ == "3.50.1"' \
        >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        pyver=$("$SYSPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgirepository1.0-dev \
            libcairo2-dev pkg-config "libpython$pyver-testsuite" >/dev/null
    fi
    rm -rf "$PGVENV"
    "$SYSPY" -m venv "$PGVENV"
    "$PGVENV/bin/python" -m pip install -q pygobject==3.50.1 pytest pytest-timeout pytest-asyncio
fi

cd "$ROOT"
AIOQLOOP_PEER=1 exec "$VENV/bin/python" -m pytest tests/test_glib_differential.py \
    tests/test_glib_pygobject.py -p no:cacheprovider -q "$@"
