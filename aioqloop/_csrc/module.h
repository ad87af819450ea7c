/* aioqloop._cengine, part module.h: The module: configure() and configure_timers() (the Python objects the core compares
 * against or calls), the module definition and its initialisation.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

#ifndef AIOQLOOP_SOURCE_HASH
#define AIOQLOOP_SOURCE_HASH ""
#endif
/* 1: built in place (an editable install, a checkout), whose sources may change under
 * the build, so aioqloop._engine compares SOURCE_HASH at import; 0: built for a wheel. */
#ifndef AIOQLOOP_INPLACE
#define AIOQLOOP_INPLACE 0
#endif

/* ------------------------------------------------------------------------ module */
static int
set_ref(PyObject **slot, PyObject *kw, const char *name)
{
    PyObject *v = PyDict_GetItemString(kw, name);
    if (v == NULL)
        return 0;
    if (strcmp(name, "conditions") == 0
            && (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 64)) {
        PyErr_SetString(PyExc_ValueError, "conditions must be a tuple of 64 entries");
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(*slot, v);
    return 1;
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    if (kw == NULL)
        Py_RETURN_NONE;
    static const char *names[] = {"default_dispatch", "timeout_dispatch", "fd_dispatch",
                                  "conditions", "tls", "warn_slow", "order_key",
                                  "default_attached", "timeout_attached", "default_finalize",
                                  "default_maybe_finalize", "heappush", "heappop",
                                  "default_destroy", "default_set_ready_time"};
    PyObject **slots[] = {&default_dispatch, &timeout_dispatch, &fd_dispatch, &conditions,
                          &tls, &warn_slow, &order_key, &default_attached, &timeout_attached,
                          &default_finalize, &default_maybe_finalize, &heappush, &heappop,
                          &default_destroy, &default_set_ready_time};
    Py_ssize_t used = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = set_ref(slots[i], kw, names[i]);
        if (r < 0)
            return NULL;
        used += r;
    }
    PyObject *sf = PyDict_GetItemString(kw, "shared_select");
    if (sf != NULL) {
        Py_INCREF(sf);
        Py_XSETREF(shared_select_func, sf);
        used++;
    }
    PyObject *rep = PyDict_GetItemString(kw, "reportable");
    if (rep != NULL) {
        if (!PyTuple_Check(rep) || PyTuple_GET_SIZE(rep) != 4) {
            PyErr_SetString(PyExc_ValueError, "reportable must be a tuple of 4 masks");
            return NULL;
        }
        for (int i = 0; i < 4; i++) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(rep, i));
            if (v == -1 && PyErr_Occurred())
                return NULL;
            reportable[i] = v;
        }
        used++;
    }
    PyObject *mw = PyDict_GetItemString(kw, "max_wait");
    if (mw != NULL) {
        double v = PyFloat_AsDouble(mw);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        MAX_WAIT = v;
        used++;
    }
    PyObject *floor = PyDict_GetItemString(kw, "slow_floor");
    if (floor != NULL) {
        double v = PyFloat_AsDouble(floor);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        SLOW_FLOOR = v;
        used++;
    }
    if (used != PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "configure() got an unknown keyword argument");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure($module, /, **refs)\n--\n\n"
     "Give the core the Python objects it compares against or calls (once, at import)."},
    {"configure_timers", (PyCFunction)(void (*)(void))timers_configure,
     METH_VARARGS | METH_KEYWORDS,
     "configure_timers($module, /, **refs)\n--\n\n"
     "Give the timer paths the Python objects they compare against or call."},
    {"timeout_init", (PyCFunction)(void (*)(void))timers_timeout_init, METH_FASTCALL,
     "timeout_init($module, src, interval, priority, name, /)\n--\n\n"
     "TimeoutSource.__init__ in C; False if the class's __init__ chain is not the plain one."},
    {"timeout_add", (PyCFunction)(void (*)(void))timers_timeout_add, METH_FASTCALL,
     "timeout_add($module, interval, callback, args, priority, context, /)\n--\n\n"
     "sources.timeout_add in C: make, attach and return the id of a TimeoutSource."},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "aioqloop._cengine",
    "The compiled core of aioqloop's engine (see the C source's header).", -1,
    module_methods,
};

#define INTERN(var, text) if (((var) = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC
PyInit__cengine(void)
{
    INTERN(s_current, "current");
    INTERN(s_idle, "_idle");
    INTERN(s_survives, "_survives_escape");
    INTERN(s_dispatch, "dispatch");
    INTERN(s_ctx_dispatch, "_dispatch");
    INTERN(s_tap_order, "order");
    INTERN(s_tap_dispatched, "dispatched");
    INTERN(s_count_waited, "_count_waited");
    INTERN(s_enter, "enter");
    INTERN(s_between, "between");
    INTERN(s_leave, "leave");
    INTERN(s_block, "_block");
    INTERN(s_unblock, "_unblock");
    INTERN(s_report, "_report");
    INTERN(s_callback, "callback");
    INTERN(s_maybe_finalize, "_maybe_finalize");
    INTERN(s_slow_threshold, "slow_threshold");
    INTERN(s_destroy, "destroy");
    INTERN(s_run_check_hooks, "_run_check_hooks");
    INTERN(s_deferred, "deferred");
    INTERN(s_give_back, "give_back");
    INTERN(s_entries, "entries");
    INTERN(s_prios, "prios");
    INTERN(s_ops, "ops");
    INTERN(s_pending, "pending");
    INTERN(s_prepare_slow, "_prepare_slow");
    INTERN(s_masks, "masks");
    INTERN(s_poll_waiting, "poll_waiting");
    INTERN(s_loop, "loop");
    INTERN(s_loop_class, "loop_class");
    INTERN(s_rebind, "rebind");
    INTERN(s_poll, "poll");
    INTERN(s_place, "place");
    INTERN(s_block_kw, "block");
    INTERN(s_dispatch_kw, "dispatch");
    INTERN(s_phase_dispatch, "dispatch");
    INTERN(s_set_ready_time, "set_ready_time");
    INTERN(s_revents, "revents");
    INTERN(s_key, "key");
    INTERN(s_sort, "sort");
    INTERN(s_unpolled, "unpolled");
    INTERN(s_records, "records");
    INTERN(s_wake_fd, "_wake_fd");
    INTERN(s_events, "events");
    INTERN(s_source, "source");
    INTERN(s_drain, "drain");
    INTERN(s_epoll, "epoll");
    INTERN(s_last_audit, "last_audit");
    INTERN(s_audit, "audit");
    INTERN(s_audit_interval, "fd_audit_interval");
    INTERN(s_always, "always");
    INTERN(s_mark_ready, "_mark_ready");
    INTERN(s_poll_ready_name, "_poll_ready");
    INTERN(s_apply_polled_name, "_apply_polled");
    INTERN(s_ready_q, "_ready");
    INTERN(s_scheduled, "_scheduled");
    INTERN(s_timer_due, "_timer_due");
    INTERN(s_urgent, "_urgent");
    INTERN(s_dispatch_postponed, "_dispatch_postponed");
    INTERN(s_woken, "_woken");
    INTERN(s_raw, "raw");
    INTERN(s_take_raw, "take_raw");
    INTERN(s_take_epfd, "_take_epfd");
    INTERN(s_poll_clock, "_poll_clock");
    INTERN(s_expose_deadline, "_expose_deadline");
    INTERN(s_sources, "_sources");
    INTERN(s_append, "append");
    INTERN(s_clear, "clear");
    INTERN(s_select_name, "select");
    INTERN(s_stale, "stale");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_has_prepare, "_has_prepare");
    INTERN(s_run_ops, "run_ops");
    INTERN(s_bh, "_bh");
    INTERN(s_queue, "queue");
    INTERN(s_pending_attr, "pending");
    INTERN(s_notify_locked, "notify_locked");
    INTERN(s_waker_attr, "_waker");
    INTERN(s_closing_attr, "_closing");
    INTERN(s_next_id, "_next_id");
    INTERN(s_post_insert, "_post_insert");
    INTERN(s_lock, "lock");
    INTERN(s_owner, "_owner");
    INTERN(s_closed_attr, "_closed");
    INTERN(s_check_loop_open, "_check_loop_open");
    INTERN(s_is_closed, "is_closed");
    INTERN(s_owned_by_loop, "_owned_by_loop");
    INTERN(s_notify, "notify");
    INTERN(s_bh_source, "source");
    INTERN(s_stale_attr, "_stale");
    INTERN(s_release, "release");
    INTERN(s_has_check, "_has_check");
    INTERN(s_attached, "_attached");
    INTERN(s_finalize, "finalize");
    INTERN(s_insert_tree, "_insert_tree");
    INTERN(s_remove, "_remove");
    INTERN(s_seq_attr, "_seq");
    INTERN(s_drop, "drop");
    INTERN(s_driver, "_driver");
    INTERN(s_run, "_run");
    INTERN(s_cancel, "cancel");
    INTERN(s_acquire, "acquire");
    INTERN(s_deadline_changed, "deadline_changed");
    INTERN(s_always_ready_pending, "always_ready_pending");
    INTERN(s_next_deadline, "next_deadline");
    INTERN(s_rebuild, "rebuild");
    INTERN(s_ep, "_ep");
    INTERN(s_fd_to_key, "_fd_to_key");
    INTERN(s_ctx_mask, "_ctx_mask");
    INTERN(s_events_attr, "events");
    if ((empty_events = PyTuple_New(0)) == NULL)
        return NULL;
    if ((float_zero = PyFloat_FromDouble(0.0)) == NULL)
        return NULL;
    if ((float_inf = PyFloat_FromDouble(INFINITY)) == NULL)
        return NULL;
    if (PyType_Ready(&StatsType) < 0 || PyType_Ready(&SourceType) < 0
            || PyType_Ready(&ContextType) < 0 || PyType_Ready(&HookType) < 0
            || PyType_Ready(&PlainType) < 0 || PyType_Ready(&BHType) < 0)
        return NULL;
    plain_poll_descr = PyDict_GetItem(PlainType.tp_dict, s_poll);
    plain_place_descr = PyDict_GetItem(PlainType.tp_dict, s_place);
    if (plain_poll_descr == NULL || plain_place_descr == NULL)
        return NULL;
    if (timers_init() < 0)
        return NULL;
    hook_poll_descr = PyDict_GetItem(HookType.tp_dict, s_poll);
    hook_place_descr = PyDict_GetItem(HookType.tp_dict, s_place);
    if (hook_poll_descr == NULL || hook_place_descr == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&StatsType);
    Py_INCREF(&SourceType);
    Py_INCREF(&ContextType);
    Py_INCREF(&HookType);
    Py_INCREF(&PlainType);
    Py_INCREF(&BHType);
    if (PyModule_AddObject(m, "SourceStatistics", (PyObject *)&StatsType) < 0
            || PyModule_AddObject(m, "SourceCore", (PyObject *)&SourceType) < 0
            || PyModule_AddObject(m, "ContextCore", (PyObject *)&ContextType) < 0
            || PyModule_AddObject(m, "HookCore", (PyObject *)&HookType) < 0
            || PyModule_AddObject(m, "PlainCore", (PyObject *)&PlainType) < 0
            || PyModule_AddObject(m, "BHCore", (PyObject *)&BHType) < 0
            || PyModule_AddStringConstant(m, "SOURCE_HASH", AIOQLOOP_SOURCE_HASH) < 0
            || PyModule_AddIntConstant(m, "INPLACE", AIOQLOOP_INPLACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
