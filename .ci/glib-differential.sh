#!/bin/sh
# Differential tests of aioqloop.glib against real GLib (Debian's python3-gi).
#
# Idempotent: installs python3-gi if it is missing (needs root and apt), builds a venv on
# the system Python with --system-site-packages (so gi is importable) under .tox/glibvenv,
# installs the project with its test extra, and runs tests/test_glib_differential.py.
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

cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests/test_glib_differential.py -p no:cacheprovider -q "$@"
