#!/usr/bin/env bash
# No false positives from the pytest plugin's hang detectors on CPython's test_asyncio.
#
# Runs the test.test_asyncio package that CPython installs with its interpreter on aioqloop
# loops (tests/peer/asyncio_armed.py makes every loop those tests create an aioqloop loop
# from the plugin's loop_factory), each configuration twice: unarmed, then armed, and fails
# if any test that passed unarmed fails armed, or if an armed run reports a hang, unless
# that test, run alone, is not reported again and either passes three armed reruns (it raced
# its own timers) or fails unarmed as well: `judge` in tests/peer/asyncio_armed.py; those
# are listed as flaky.
# Configurations (each on both engines unless ENGINES says otherwise):
#   real clock, stock base:   armed = --aioqloop-hang-timeout=$HANG_TIMEOUT (ProgressWatch)
#   real clock, uvloop base:  the same (skipped, with a note, if uvloop is not installed)
#   VirtualClock, stock base: unarmed = --aioqloop-stuck-grace=0, armed = the default
#                             stuck detector (grace $STUCK_GRACE s)
#
# Environment:
#   PYTHON        interpreter with aioqloop and its test extra installed (default: .venv's)
#   ENGINES       "c python" (default) or one of them
#   CONFIGS       "asyncio uvloop virtual" (default) or a subset
#   MODULES       test_asyncio modules for every configuration, e.g. "test_tasks test_streams"
#                 (default: the whole package; on uvloop, UVLOOP_MODULES)
#   UVLOOP_MODULES  the uvloop base's default: the modules whose loops come from the event
#                 loop policy.  Left out: the transport-level ones (test_events, test_sendfile,
#                 test_sock_lowlevel, test_server, test_ssl, test_sslproto, test_subprocess,
#                 test_buffered_proto), whose CPython harness plain uvloop does not fit (child
#                 watchers, selector internals, uvloop's own transports: most fail unarmed,
#                 some only by timing out), and test_runners (its interrupt tests time out
#                 with uvloop imported).  tests/test_conformance.py runs the test_events and
#                 test_subprocess mixins on uvloop with that harness adapted.
#   VIRTUAL_SKIP  modules left out on the virtual clock (default: test_ssl test_sslproto,
#                 whose TLS peers run in threads on real-time timeouts: on a clock that jumps
#                 they fail unarmed, each only after those timeouts ran out in real time)
#   HANG_TIMEOUT  real seconds without progress that fail a test (default 1)
#   STUCK_GRACE   real seconds a stuck VirtualClock loop waits for threads (default 1)
#   OUT           directory for the per-test results and logs (default: a temporary one)
# Exits non-zero on a false positive, or when a configuration ran no test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
ENGINES=${ENGINES:-c python}
CONFIGS=${CONFIGS:-asyncio uvloop virtual}
HANG_TIMEOUT=${HANG_TIMEOUT:-1}
STUCK_GRACE=${STUCK_GRACE:-1}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if ! "$PYTHON" -c 'import test.test_asyncio.utils' >/dev/null 2>&1; then
    echo "!! asyncio-hang-check: CPython's test package (test.test_asyncio) is not" \
         "installed for $PYTHON: NOT CHECKED" >&2
    exit 1
fi
VIRTUAL_SKIP=${VIRTUAL_SKIP:-test_ssl test_sslproto}
UVLOOP_MODULES=${UVLOOP_MODULES:-test_base_events test_context test_futures test_futures2
    test_locks test_pep492 test_protocols test_queues test_streams test_taskgroups
    test_tasks test_threads test_timeouts test_transports test_unix_events test_waitfor}
# The pytest targets of one configuration: the MODULES given, else its default.
targets_for() {
    local modules=${MODULES:-}
    if [ -z "$modules" ] && [ "$1" = uvloop ]; then
        modules=$UVLOOP_MODULES
    fi
    if [ -z "$modules" ] && [ "$1" = virtual ]; then
        modules=$("$PYTHON" -c 'import pkgutil, sys, test.test_asyncio as t
skip = set(sys.argv[1:])
print(" ".join(m.name for m in pkgutil.iter_modules(t.__path__)
               if m.name.startswith("test_") and m.name not in skip))' $VIRTUAL_SKIP)
    fi
    if [ -z "$modules" ]; then
        echo test.test_asyncio
        return
    fi
    local m
    for m in $modules; do
        # (test_waitfor and others exist on some Pythons only)
        if "$PYTHON" -c "import test.test_asyncio.$m" >/dev/null 2>&1; then
            echo "test.test_asyncio.$m"
        fi
    done
}

start=$SECONDS
status=0
summary=()
for engine in $ENGINES; do
    for config in $CONFIGS; do
        base=$config
        extra=()
        armed=(--aioqloop-hang-timeout="$HANG_TIMEOUT")
        unarmed=(--aioqloop-hang-timeout=0)
        if [ "$config" = virtual ]; then
            base=asyncio
            extra=(--asyncio-armed-virtual-clock)
            armed=(--aioqloop-stuck-grace="$STUCK_GRACE")
            unarmed=(--aioqloop-stuck-grace=0)
        fi
        if [ "$base" = uvloop ] && ! "$PYTHON" -c 'import uvloop' >/dev/null 2>&1; then
            summary+=("!! $engine/$config: uvloop is not installed, not checked")
            continue
        fi
        label="$engine/$config"
        mapfile -t targets < <(targets_for "$config")
        for arm in unarmed armed; do
            if [ "$arm" = armed ]; then opts=("${armed[@]}"); else opts=("${unarmed[@]}"); fi
            t0=$SECONDS
            # A failing test is expected in either run (compare judges); a crashed run is not.
            set +e
            AIOQLOOP_ENGINE=$engine "$PYTHON" -m pytest -c tests/peer/asyncio_armed.ini \
                --rootdir="$ROOT" -q --pyargs "${targets[@]}" \
                --asyncio-armed-base="$base" "${extra[@]}" "${opts[@]}" \
                --asyncio-armed-results="$OUT/$engine-$config-$arm.jsonl" \
                > "$OUT/$engine-$config-$arm.log" 2>&1
            rc=$?
            set -e
            echo "   $label $arm: $(tail -n 1 "$OUT/$engine-$config-$arm.log") ($(( SECONDS - t0 )) s)"
            if [ "$rc" -gt 1 ]; then
                echo "!! $label $arm: pytest exited with $rc (see $OUT/$engine-$config-$arm.log)" >&2
                status=1
            fi
        done
        # Suspects are run again alone (with the armed run's options) to tell a detector's
        # misjudgement from a test that races its own timers.
        if line=$(AIOQLOOP_ENGINE=$engine "$PYTHON" -m tests.peer.asyncio_armed \
                  "$OUT/$engine-$config-unarmed.jsonl" "$OUT/$engine-$config-armed.jsonl" \
                  "$label" -c tests/peer/asyncio_armed.ini --rootdir="$ROOT" \
                  --asyncio-armed-base="$base" "${extra[@]}" "${armed[@]}"); then
            summary+=("$line")
        else
            summary+=("$line")
            status=1
        fi
    done
done
echo "== test_asyncio with the hang detectors armed (hang timeout ${HANG_TIMEOUT} s, stuck grace ${STUCK_GRACE} s; results in $OUT)"
for line in "${summary[@]}"; do echo "   $line"; done
echo "   wall time: $(( SECONDS - start )) s"
exit $status
