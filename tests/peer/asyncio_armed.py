"""CPython's ``test.test_asyncio`` on aioqloop loops, under the pytest plugin's hang detectors.

A pytest plugin (``-p tests.peer.asyncio_armed``) for running the ``test.test_asyncio``
package that CPython installs (``--pyargs test.test_asyncio...``) with every loop those
tests make being an aioqloop loop from the plugin's own `aioqloop.pytest_plugin.loop_factory`,
so the plugin's stuck-loop tools arm it exactly as they arm a user's test loop:

* ``--aioqloop-hang-timeout=S`` puts a `ProgressWatch` on each real-clock loop;
* ``--asyncio-armed-virtual-clock`` puts each loop on a fresh `VirtualClock`, whose stuck
  detector the plugin arms with ``--aioqloop-stuck-grace`` (default 1 s; 0 turns it off).

The loops test_asyncio makes: through the event loop policy (``asyncio.new_event_loop``,
``asyncio.run``, ``IsolatedAsyncioTestCase``, the subprocess tests' ``policy.new_event_loop``)
and through the methods of the test classes that make a selector loop of their own
(`OWN_LOOP_METHODS`: the epoll classes of ``test_events``, ``test_sock_lowlevel`` and
``test_sendfile``, the selector classes of ``test_server``, ``test_buffered_proto`` and
``test_sslproto``).  The poll and select variants of the epoll classes are deselected (the
same tests on a selector aioqloop replaces).  Tests that make their loops otherwise
(``TestLoop``, ``BaseEventLoop`` with mocks) still run: their results say how many
aioqloop loops each made.  The plugin sets an exception handler on its loops (errors fail
a user's test); here it is removed again, since test_asyncio checks what asyncio's default
handler does.  On the uvloop base, test_asyncio's ``TestCase.close_loop`` is given a form
that does not read ``loop._default_executor`` (uvloop hides it).

``--asyncio-armed-results=FILE`` writes one JSON line per test: its node id, its outcome
(``passed``, ``failed``, ``skipped``), its real duration, how many aioqloop loops it
made, and whether a detector fired during it (``hang``, with its ``reports``).
``.ci/asyncio-hang-check.sh`` runs the same tests with and without the detectors and
compares the files (`main`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

#: Test classes that make a selector loop of their own, by (module, class): the method
#: that makes it, which here returns an aioqloop loop.
OWN_LOOP_METHODS = {
    ("test_events", "EPollEventLoopTests"): "create_event_loop",
    ("test_sock_lowlevel", "EPollEventLoopTests"): "create_event_loop",
    ("test_sendfile", "EPollEventLoopTests"): "create_event_loop",
    ("test_server", "SelectorStartServerTests"): "new_loop",
    ("test_buffered_proto", "BufferedProtocolSelectorTests"): "new_loop",
    ("test_sslproto", "SelectorStartTLSTests"): "new_loop",
}
EPOLL_MODULES = ("test_events", "test_sock_lowlevel", "test_sendfile")
#: Tests skipped on a virtual clock, by (module, test or class), with the reason.
VIRTUAL_CLOCK_SKIPS = {
    # They run the loop until a call_later that a VirtualClock reaches at once, while a
    # real-time SIGALRM (signal.setitimer) is still on its way; it then arrives after the
    # test removed its handler and kills the whole run.
    ("test_events", "test_signal_handling_args"): "real-time SIGALRM (setitimer)",
    ("test_events", "test_signal_handling_while_selecting"): "real-time SIGALRM (setitimer)",
    # The loop waits on run_in_executor(target) while target waits on a coroutine that
    # sleeps: a VirtualClock does not move while an executor call is out, so each test
    # waits for pytest-timeout, armed or not.
    ("test_tasks", "RunCoroutineThreadsafeTests"): (
        "a VirtualClock does not move while the executor call waits for a sleeping task"),
}
#: Their variants on other selectors: the same tests, deselected.
OTHER_SELECTORS = ("PollEventLoopTests", "SelectEventLoopTests", "KqueueEventLoopTests")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncio-armed", "test_asyncio on aioqloop loops")
    group.addoption("--asyncio-armed-base", default="asyncio", choices=("asyncio", "uvloop"),
                    help="base of the aioqloop loops test_asyncio gets")
    group.addoption("--asyncio-armed-virtual-clock", action="store_true",
                    help="put each loop on a fresh VirtualClock (stock base)")
    group.addoption("--asyncio-armed-results", default=None, metavar="FILE",
                    help="write one JSON line per test (outcome, hang report) to FILE")


class _Factory:
    """The policy's loop factory: an aioqloop loop from the pytest plugin."""

    def __init__(self, base: str, virtual_clock: bool) -> None:
        from aioqloop.pytest_plugin import loop_factory

        self._make = loop_factory(base, virtual_clock=virtual_clock)

        #: Loops made so far (a test that made none ran on no aioqloop loop).
        self.made = 0

    def __call__(self, *_selector: Any) -> asyncio.AbstractEventLoop:
        loop = self._make()
        self.made += 1
        # test_asyncio asserts on asyncio's own default handler (logging, mocks).
        loop.set_exception_handler(None)
        return loop


class _Armed:
    """Registered by `pytest_configure`: the patches, the deselection, the results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.base = config.getoption("asyncio_armed_base")
        self.virtual = bool(config.getoption("asyncio_armed_virtual_clock"))
        self.factory = _Factory(self.base, self.virtual)
        path = config.getoption("asyncio_armed_results")
        self.results = open(path, "w", encoding="utf-8") if path else None
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.reports: list[str] = []
        self._patch_policy()
        self._count_reports()

    def _patch_policy(self) -> None:
        # Every policy test_asyncio makes (set_event_loop_policy(None) in tearDownModule
        # makes a new DefaultEventLoopPolicy) builds its loops with the class's factory.
        policy_class: Any = asyncio.DefaultEventLoopPolicy
        self._saved = policy_class.__dict__.get("_loop_factory")
        factory = self.factory
        policy_class._loop_factory = staticmethod(lambda: factory())

    def _count_reports(self) -> None:
        # Every time a detector fires, the plugin builds its report with _hang.hang_report.
        # Counted here, not read from the failure: a unittest test's failure shows the
        # CancelledError the plugin used to unwind it, not the report.
        from aioqloop import _hang

        self._hang_report = original = _hang.hang_report
        reports = self.reports

        def counted(loop: asyncio.AbstractEventLoop, why: str) -> str:
            text = original(loop, why)
            reports.append(text)
            return text

        _hang.hang_report = counted

    def unpatch(self) -> None:
        from aioqloop import _hang

        policy_class: Any = asyncio.DefaultEventLoopPolicy
        policy_class._loop_factory = self._saved
        _hang.hang_report = self._hang_report

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        factory = self.factory
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            cls = getattr(item, "cls", None)
            module = getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]
            if cls is not None and cls.__name__ in OTHER_SELECTORS \
                    and module in EPOLL_MODULES:
                dropped.append(item)
                continue
            method = OWN_LOOP_METHODS.get((module, getattr(cls, "__name__", "")))
            if method is not None:
                setattr(cls, method, lambda self: factory())
            skip = _uvloop_skip(module, item.name) if self.base == "uvloop" else None
            if self.virtual:
                skip = VIRTUAL_CLOCK_SKIPS.get(
                    (module, item.name),
                    VIRTUAL_CLOCK_SKIPS.get((module, getattr(cls, "__name__", "")), skip))
            if skip is not None:
                item.add_marker(pytest.mark.skip(reason=skip))
            kept.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None
                                ) -> Iterator[None]:
        self.outcomes[item.nodeid] = {"outcome": "passed", "hang": False}
        made = self.factory.made
        self.reports.clear()
        start = time.monotonic()
        result = yield
        entry = {"test": _test_id(item), **self.outcomes.pop(item.nodeid),
                 "loops": self.factory.made - made,
                 "seconds": round(time.monotonic() - start, 3)}
        if self.reports:
            entry["hang"] = True
            entry["reports"] = list(self.reports)
        if self.results is not None:
            self.results.write(json.dumps(entry) + "\n")
            self.results.flush()
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.outcomes.get(report.nodeid)
        if entry is None:
            return
        if report.skipped and report.when in ("setup", "call") \
                and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
        if report.failed:
            entry["outcome"] = "failed"

    def pytest_unconfigure(self) -> None:
        self.unpatch()
        if self.results is not None:
            self.results.close()


def _test_id(item: pytest.Item) -> str:
    """``module::Class::test`` (``--pyargs`` node ids of files outside the rootdir lose
    the module)."""
    module = getattr(getattr(item, "module", None), "__name__", "?")
    cls = getattr(item, "cls", None)
    return "::".join([module, *([cls.__name__] if cls is not None else []), item.name])


def _uvloop_skip(module: str, name: str) -> str | None:
    """On the uvloop base: the tests plain uvloop itself fails or hangs in (the
    conformance suite's measured list), skipped with its reason."""
    limits: dict[str, str] = {}
    try:
        from tests import test_conformance as conf
    except Exception:  # run from elsewhere: nothing skipped
        return None
    if module == "test_events":
        limits = conf.UVLOOP_EVENTS_LIMITS
    elif module == "test_subprocess":
        limits = conf.UVLOOP_SUBPROCESS_LIMITS
    return limits.get(name.split("[", 1)[0])


def close_loop(loop: Any) -> None:
    """``test_utils.TestCase.close_loop`` without ``loop._default_executor``, which
    uvloop hides (also tests/test_conformance.py's, on both bases)."""
    executor = getattr(loop, "_default_executor", None)
    if executor is not None:
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        else:
            executor.shutdown(wait=True)
    loop.close()


def pytest_configure(config: pytest.Config) -> None:
    if sys.platform == "win32":  # pragma: no cover - aioqloop is Unix-only
        raise pytest.UsageError("test_asyncio on aioqloop needs a Unix platform")
    if config.getoption("asyncio_armed_base") == "uvloop":
        from test.test_asyncio import utils

        utils.TestCase.close_loop = staticmethod(close_loop)  # type: ignore[assignment]
    config.pluginmanager.register(_Armed(config), "asyncio-armed")


# ------------------------------------------------------------------ comparison
def load(path: str) -> dict[str, dict[str, Any]]:
    """A results file as {node id: {"outcome": ..., "hang": ...}}."""
    out: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                out[entry.pop("test")] = entry
    return out


def compare(unarmed: dict[str, dict[str, Any]], armed: dict[str, dict[str, Any]]
            ) -> tuple[dict[str, str], dict[str, int]]:
    """The suspects of an armed run against the same tests unarmed, {test: why}: each
    test that passed unarmed and failed armed, each armed hang report, and each test the
    armed run did not get to; and counts."""
    suspects: dict[str, str] = {}
    for test, entry in sorted(armed.items()):
        before = unarmed.get(test)
        if entry["hang"]:
            was = before["outcome"] if before else "not run"
            suspects[test] = f"hang report when armed (unarmed: {was})"
        elif before is not None and before["outcome"] == "passed" \
                and entry["outcome"] == "failed":
            suspects[test] = f"passed unarmed, {entry['outcome']} armed"
    for test in sorted(set(unarmed) - set(armed)):
        suspects[test] = "ran unarmed, not armed"
    both = set(unarmed) & set(armed)
    counts = {
        "tests": len(both),
        "passed both": sum(1 for t in both if unarmed[t]["outcome"] == "passed"
                           and armed[t]["outcome"] == "passed"),
        "on aioqloop loops": sum(1 for t in both if armed[t].get("loops")),
        "failed unarmed": sum(1 for t in both if unarmed[t]["outcome"] == "failed"),
        "skipped unarmed": sum(1 for t in both if unarmed[t]["outcome"] == "skipped"),
    }
    return suspects, counts


#: Armed reruns of a suspect (`judge`): a test whose own timing races (CPython's
#: ``test_blocking_put_wait`` arms a 10 ms timer that must run after a task's first step;
#: under load it runs first and the test deadlocks for real) is reported once, and then
#: passes each rerun; a detector that misjudges fires again.
RERUNS = 3


#: Options after the armed ones that turn both detectors off again (the last one wins).
UNARMED = ("--aioqloop-hang-timeout=0", "--aioqloop-stuck-grace=0")


def _rerun(test: str, pytest_args: list[str], times: int) -> tuple[int, list[str]]:
    """Run ``test`` alone ``times`` times: how many times it did not fail (passed or
    skipped itself) with no report, and the reports."""
    import os
    import subprocess
    import tempfile

    passed = 0
    reports: list[str] = []
    for _ in range(times):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "rerun.jsonl")
            subprocess.run([sys.executable, "-m", "pytest", *pytest_args, "-q",
                            f"--asyncio-armed-results={path}", "--pyargs", test],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            entry = load(path).get(test) if os.path.exists(path) else None
        if entry is not None and entry["outcome"] != "failed" and not entry["hang"]:
            passed += 1
        elif entry is not None:
            reports.extend(entry.get("reports", []))
    return passed, reports


def judge(test: str, why: str, pytest_args: list[str]) -> tuple[bool, str]:
    """Is a suspect the detector's false positive?  Run alone, armed `RERUNS` times: a
    detector that fires again is; a test that passes every time raced its own timing in
    the full run.  One that fails armed without a report is run alone unarmed too: if it
    fails that way as well, the failure is the test's, not the detector's."""
    passed, reports = _rerun(test, pytest_args, RERUNS)
    said = f"{test}: {why}; alone, armed: {passed} of {RERUNS} passed"
    if reports:
        return True, said + "".join(f"\n      {line}" for report in reports
                                    for line in report.splitlines())
    if passed == RERUNS:
        return False, said
    unarmed_passed, _ = _rerun(test, [*pytest_args, *UNARMED], 1)
    said += f", unarmed: {unarmed_passed} of 1 passed"
    return unarmed_passed > 0, said


def main(argv: list[str]) -> int:
    """``python -m tests.peer.asyncio_armed UNARMED.jsonl ARMED.jsonl LABEL [PYTEST_ARGS]``:
    compare; with ``PYTEST_ARGS`` (the armed run's own options) each suspect is `judge`d.
    Exit 1 on a false positive (every suspect is one without ``PYTEST_ARGS``)."""
    unarmed, armed = load(argv[0]), load(argv[1])
    label = argv[2] if len(argv) > 2 else argv[1]
    pytest_args = argv[3:]
    suspects, counts = compare(unarmed, armed)
    false_positives: list[str] = []
    not_ours: list[str] = []
    for test, why in suspects.items():
        if pytest_args:
            bad, said = judge(test, why, pytest_args)
        else:
            bad, said = True, f"{test}: {why}"
        if bad:
            false_positives.append(said)
        else:
            first = armed.get(test, {}).get("reports", [])
            not_ours.append(said + "".join(f"\n      {line}" for report in first[:1]
                                           for line in report.splitlines()))
    print(f"{label}: " + ", ".join(f"{n} {what}" for what, n in counts.items())
          + f"; {len(false_positives)} false positive(s), {len(not_ours)} flaky test(s)")
    for line in false_positives:
        print(f"  !! {line}")
    for line in not_ours:
        print(f"  ~~ flaky, not the detector's: {line}")
    return 1 if false_positives or counts["tests"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
