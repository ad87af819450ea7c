"""PyGObject tests that `tests/test_glib_pygobject.py` does not require of aioqloop.glib.

Every entry names a test of the pinned release and why it is out of scope: it does not
exercise GLib's main loop.  ``KNOWN_GAPS`` lists main-loop tests that pass on real GLib
and do not pass yet on aioqloop.glib: the test fails if one of them starts passing (so the
list only shrinks) or if any other main-loop test regresses.
"""

from __future__ import annotations

_UTIL = "GLib utility outside the main loop"
_VARIANT = "GVariant"
_SPAWN = "GLib.spawn_async (process spawning, not the main loop)"
_PRIVATE = "PyGObject-private helper (gi._ossighelper)"

EXCLUDED: dict[str, str] = {
    "test_glib.py::TestGLib::test_find_program_in_path": _UTIL,
    "test_glib.py::TestGLib::test_markup_escape_text": _UTIL,
    "test_glib.py::TestGLib::test_progname": _UTIL,
    "test_glib.py::TestGLib::test_appname": _UTIL,
    "test_glib.py::TestGLib::test_xdg_dirs": _UTIL,
    "test_glib.py::TestGLib::test_filenames": _UTIL,
    "test_glib.py::TestGLib::test_uri_extract": _UTIL,
    "test_glib.py::TestGLib::test_timezone_constructor": _UTIL + " (TimeZone)",
    "test_glib.py::TestGLib::test_pyglib_version": "PyGObject's own version number",
    "test_overrides_glib.py::TestConstants::test_basic_types_limits": _UTIL + " (C type limits)",
    "test_subprocess.py::TestProcess::test_child_watch_no_data": _SPAWN,
    "test_subprocess.py::TestProcess::test_child_watch_with_data": _SPAWN,
    "test_subprocess.py::TestProcess::test_spawn_async_envp": _SPAWN,
    "test_subprocess.py::TestProcess::test_spawn_async_fds": _SPAWN,
    "test_subprocess.py::TestProcess::test_spawn_async_with_pipes": _SPAWN,
    "test_subprocess.py::TestProcess::test_backwards_compat_flags": _SPAWN + " (SpawnFlags)",
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_basic": _PRIVATE,
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_in_thread": _PRIVATE,
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_gio_application": "Gio.Application",
    "test_ossig.py::TestSigintFallback::test_replace_handler_and_restore_nested": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_no_replace_if_not_default": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_noop_in_threads": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_no_replace_if_set_by_glib": _PRIVATE,
}

#: Whole classes out of scope (every test in them).
EXCLUDED_CLASSES: dict[str, str] = {
    "test_overrides_glib.py::TestGVariant::": _VARIANT,
}

#: Main-loop tests passing on real GLib, not yet on aioqloop.glib (must only shrink).
KNOWN_GAPS: dict[str, str] = {}


_INTROSPECTION = "gi.module (PyGObject's introspection machinery, not the main loop)"
_GIO = "Gio.Application (Gio is not GLib's main loop)"

#: PyGObject 3.58.1's files (no real PyGObject of that release runs here: it needs a
#: newer GLib than Debian's to build).  Every one of its tests not listed here must pass
#: on aioqloop.glib, or skip by the file's own decision.
EXCLUDED_CURRENT: dict[str, str] = {
    **{k: v for k, v in EXCLUDED.items() if not k.startswith("test_ossig.py::")},
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_basic": _PRIVATE,
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_gio_application": _GIO,
    "test_ossig.py::TestSigintFallback::test_replace_handler_and_restore_nested": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_no_replace_if_not_default": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_noop_in_threads": _PRIVATE,
    "test_ossig.py::TestSigintFallback::test_no_replace_if_set_by_glib": _PRIVATE,
    "test_subprocess.py::test_spawn_async_fds_with_child_setup": _SPAWN,
    "test_subprocess.py::test_pid_is_a_number": _SPAWN + " (GLib.Pid)",
    "test_subprocess.py::test_pid_can_be_closed_multiple_times": _SPAWN + " (GLib.Pid)",
    "test_subprocess.py::test_os_kill_with_pid": _SPAWN + " (GLib.Pid)",
    "test_subprocess.py::test_close_pid_when_deleted": _SPAWN + "; " + _INTROSPECTION,
    "test_events.py::GLibEventLoopPolicyTests::test_application": _GIO,
}

#: On the uvloop base, PyGObject 3.58.1's policy tests that may fail there (every other
#: test of test_events.py is held to what plain uvloop does).
UVLOOP_POLICY_GAPS: dict[str, str] = {
    "test_events.py::GLibEventLoopPolicyTests::test_inside_context_iteration": (
        "raw nested g_main_context_iteration cannot reach uvloop's ready queue "
        "(docs/tutorial/pygobject.md)"
    ),
    "test_events.py::GLibEventLoopPolicyTests::test_glib_task_prio": (
        "the uvloop base is not strict against asyncio's own queue: a task set to "
        "PRIORITY_DEFAULT steps in uvloop's queue, the others in the context "
        "(docs/tutorial/uvloop.md)"
    ),
    "test_events.py::GLibEventLoopPolicyTests::test_implicit_close": (
        "uvloop's own __del__ warns differently (plain uvloop fails it too)"
    ),
}


def excluded(test_id: str, version: str = "3.50.1") -> str | None:
    """The reason ``test_id`` (``file::Class::test``) of ``version``'s files is out of
    scope, or None."""
    table = EXCLUDED if version == "3.50.1" else EXCLUDED_CURRENT
    if test_id in table:
        return table[test_id]
    for prefix, reason in EXCLUDED_CLASSES.items():
        if test_id.startswith(prefix):
            return reason
    return None


#: Tests whose outcome on real GLib varies from run to run here (not counted when the
#: recorded list of real passes is compared with a fresh run).
FLAKY_ON_REAL: dict[str, str] = {
    "test_ossig.py::TestOverridesWakeupOnAlarm::test_gio_application": (
        "Gio.Application (excluded); its outcome on real GLib varied under the harness's "
        "former signal-based timeouts, and the recorded list predates the change"
    ),
}
