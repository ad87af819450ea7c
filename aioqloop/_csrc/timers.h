/* aioqloop._cengine, part timers.h: Timers: g_timeout_add_full / g_timeout_source_new,
 * the driver's deadline notification, the deadlines-only prepare and the loop clock
 * (the ready-time heap itself is deadlines.h).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ======================================================================== timers */
/* The timer paths in C: timeout_add and TimeoutSource's __init__ (GLib's
 * g_timeout_add_full / g_timeout_source_new), the driver's deadline notification, the
 * deadlines-only prepare (g_main_context_prepare when only ready times need a look), and
 * the loop clock of the stock base.  Each one has its Python twin (sources.py,
 * context.py, bridge.py) and falls back
 * to it in any state it does not know, so that a timeout costs no Python frame but its
 * callback. */

/* BaseEventLoop.time() is ``time.monotonic()``: read that clock here, the same way
 * (nanoseconds to seconds as CPython rounds them), while nobody replaced either. */
static int
timers_fast_clock(ModState *st, PyObject *clock, double *out)
{
    if (st->tm_loop_time == NULL || !PyMethod_Check(clock)
            || PyMethod_GET_FUNCTION(clock) != st->tm_loop_time
            || !PyFunction_Check(st->tm_loop_time))
        return 0;
    PyObject *g = PyFunction_GET_GLOBALS(st->tm_loop_time);
    PyObject *mod = g ? PyDict_GetItemWithError(g, st->s_tm_time) : NULL;
    if (mod == NULL || mod != st->tm_time_module || !PyModule_Check(mod)) {
        PyErr_Clear();
        return 0;
    }
    PyObject *fn = PyDict_GetItemWithError(PyModule_GetDict(mod), st->s_tm_monotonic);
    if (fn == NULL || fn != st->tm_monotonic) {
        PyErr_Clear();
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) < 0) {
        PyErr_Clear();
        return 0;
    }
    *out = PyTime_AsSecondsDouble(t);
#else
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    volatile double d;
    if (ns % 1000000000LL == 0) {
        d = (double)(ns / 1000000000LL);
    }
    else {
        d = (double)ns;
        d /= 1e9;
    }
    *out = d;
#endif
    return 1;
}

/* The earliest ready time changed to ``when``: tell the driver, unless its method is the
 * base's (does nothing) or the plain driver's that would return at once (a timer is
 * armed as early already, or the driver is closed). */
static int
timers_deadline_changed(ContextObject *self, double when)
{
    ModState *st = self->st;
    PyObject *driver = REQUIRED(self, driver, "_driver");
    if (driver == NULL)
        return -1;
    Py_INCREF(driver);
    /* a driver's method (its class's: drivers are the project's own classes) */
    PyObject *fn = _PyType_Lookup(Py_TYPE(driver), st->s_deadline_changed);
    int skip = fn != NULL && fn == st->tm_noop_deadline;
    if (!skip && fn != NULL && fn == st->tm_plain_deadline && PyObject_TypeCheck(driver, st->PlainType)) {
        PlainObject *p = (PlainObject *)driver;
        skip = !(when < p->timer_when) || p->closed;
    }
    int rc = 0;
    if (!skip && fn == NULL) {
        PyErr_Format(PyExc_AttributeError, "%.100s has no deadline_changed",
                     Py_TYPE(driver)->tp_name);
        rc = -1;
    }
    else if (!skip) {
        PyObject *w = PyFloat_FromDouble(when);
        Py_INCREF(fn);
        PyObject *r = w ? call_class_attr(fn, driver, w) : NULL;
        Py_DECREF(fn);
        Py_XDECREF(w);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_DECREF(driver);
    return rc;
}

/* MainContext._prepare_slow when only ready times need a look (no prepare hooks, no fd
 * watches, nothing queued): collect, then the wait until the earliest ready time.
 * NotImplemented (a new reference) when that is not the case: the Python method. */
static PyObject *
timers_prepare(ContextObject *self, int deferred)
{
    ModState *st = self->st;
    int other = FDS_ALWAYS(self);
    if (other == 0)
        other = FDS_MASKS(self);
    if (other < 0)
        return NULL;
    if (other)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *t = ctx_collect(self, NULL);
    if (t == NULL)
        return NULL;
    Py_DECREF(t);
    /* an operation posted by another thread may have attached a hooked source or an fd
     * watch: the Python method then does the rest (collecting again changes nothing) */
    other = hooks_pending(self->prepare_prios);
    if (other == 0)
        other = FDS_ALWAYS(self);
    if (other == 0)
        other = FDS_MASKS(self);
    if (other < 0)
        return NULL;
    if (other)
        Py_RETURN_NOTIMPLEMENTED;
    if (self->nrq && !deferred) {
        Py_INCREF(st->float_zero);
        return st->float_zero;
    }
    double deadline = dl_next_deadline(self);
    if (isinf(deadline))
        Py_RETURN_NONE;
    double wait = deadline - self->now;
    return PyFloat_FromDouble(wait > 0.0 ? wait : 0.0);
}


/* Waker.notify() (QEMU's aio_notify): nothing to do unless the loop may sleep and no
 * wake-up is outstanding, which is the common case here.  The flags are read without
 * taking the lock when no thread holds it: the GIL is not released between that look
 * and the reads, so no thread can be inside the lock meanwhile.  Else the method. */
static int
timers_notify(ModState *st, PyObject *wakerobj)
{
    WakerObject *w = waker_of(st, wakerobj);
    if (w == NULL)
        return -1;
    /* The loop is not about to sleep: nothing to wake.  (The loop writes this flag
     * without the lock on GIL builds, the only ones the core runs on, so looking
     * at it under the lock would tell nothing more.) */
    if (!w->poll_waiting)
        return 0;
    WakerLockObject *lock = waker_lock(w);
    if (lock == NULL)
        return -1;
    int held = lock->held;
    if (!held && (w->closed || w->notified))
        return 0;
    return upcall_void(st->tm_waker_notify, "tm_waker_notify", wakerobj, NULL, NULL);
}

/* Call a Python check that raises (or returns the value to use): new reference. */
static PyObject *
timers_check(PyObject *check, PyObject *value)
{
    if (check == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine timers are not configured");
        return NULL;
    }
    return PyObject_CallOneArg(check, value);
}

/* TimeoutSource.__init__ + Source.__init__ on a fresh source: 0, or -1 with the
 * exception the Python code raises, in the same order (interval, name, priority). */
static int
timers_fill(SourceObject *src, PyObject *interval, PyObject *priority, PyObject *name)
{
    ModState *st = src->st;
    double iv = -1.0;
    if (PyFloat_CheckExact(interval)) {
        iv = PyFloat_AS_DOUBLE(interval);
    }
    else if (PyLong_CheckExact(interval)) {
        iv = PyLong_AsDouble(interval);
        if (iv == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            iv = -1.0;
        }
    }
    if (!(iv >= 0.0 && iv < INFINITY)) {
        PyObject *v = timers_check(st->tm_check_interval, interval);
        if (v == NULL)
            return -1;
        iv = PyFloat_AsDouble(v);
        Py_DECREF(v);
        if (iv == -1.0 && PyErr_Occurred())
            return -1;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyObject *v = timers_check(st->tm_check_name, name);
        if (v == NULL)
            return -1;
        Py_DECREF(v);
    }
    Py_INCREF(priority);
    if (!PyLong_CheckExact(priority)) {
        Py_SETREF(priority, timers_check(st->tm_check_priority, priority));
        if (priority == NULL)
            return -1;
    }
    else {
        int overflow;
        long long p = PyLong_AsLongLongAndOverflow(priority, &overflow);
        if (overflow || p < -0x80000000LL || p > 0x7FFFFFFFLL) {
            Py_SETREF(priority, timers_check(st->tm_check_priority, priority));
            if (priority == NULL)
                return -1;
        }
    }
    src->interval = iv;
    Py_XSETREF(src->priority, priority);
    Py_INCREF(name);
    Py_XSETREF(src->name, name);
    return 0;
}

/* Is ``type``'s __init__ chain after TimeoutSource the plain Source one? */
static int
timers_plain_init(ModState *st, PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    if (st->tm_timeout_class == NULL || st->tm_source_class == NULL || mro == NULL
            || !PyTuple_Check(mro))
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(mro);
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (PyTuple_GET_ITEM(mro, i) == st->tm_timeout_class)
            return PyTuple_GET_ITEM(mro, i + 1) == st->tm_source_class;
    }
    return 0;
}

/* timeout_init(src, interval, priority, name): TimeoutSource.__init__ in C; False when
 * the class's __init__ chain is not the plain one (the Python code runs then). */
static PyObject *
timers_timeout_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ModState *st = module_state(module);
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "timeout_init() takes 4 arguments");
        return NULL;
    }
    if (!Source_Check(st, args[0]) || !timers_plain_init(st, Py_TYPE(args[0])))
        Py_RETURN_FALSE;
    if (timers_fill((SourceObject *)args[0], args[1], args[2], args[3]) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* timeout_add(interval, callback, args, priority, context): sources.timeout_add in C. */
static PyObject *
timers_timeout_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ModState *st = module_state(module);
    if (nargs != 5 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "timeout_add() takes 5 arguments, args a tuple");
        return NULL;
    }
    if (st->tm_timeout_class == NULL || !PyType_Check(st->tm_timeout_class)
            || st->tm_default_context == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine timers are not configured");
        return NULL;
    }
    PyObject *interval = args[0], *callback = args[1], *context = args[4];
    PyTypeObject *type = (PyTypeObject *)st->tm_timeout_class;
    PyObject *srcobj = type->tp_new(type, st->empty_tuple, NULL);
    if (srcobj == NULL)
        return NULL;
    if (!Source_Check(st, srcobj)) {
        Py_DECREF(srcobj);
        PyErr_SetString(PyExc_TypeError, "TimeoutSource is not a source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    if (timers_fill(src, interval, args[3], Py_None) < 0) {
        Py_DECREF(srcobj);
        return NULL;  /* as TimeoutSource(...) raising: no source was made */
    }
    PyObject *result = NULL, *ctx = NULL;
    /* sources._attach: any failure from here on destroys the source */
    if (!PyCallable_Check(callback)) {
        PyObject *r = timers_check(st->tm_check_callback, callback);
        Py_XDECREF(r);
        if (r != NULL)
            PyErr_SetString(PyExc_TypeError, "callback must be callable");
        goto fail;
    }
    Py_INCREF(callback);
    Py_XSETREF(src->callback, callback);
    Py_INCREF(args[2]);
    Py_XSETREF(src->args, args[2]);
    if (context == Py_None) {
        ctx = PyObject_CallNoArgs(st->tm_default_context);
        if (ctx == NULL)
            goto fail;
    }
    else {
        PyObject *cls = st->tm_context_class;  /* unset until aioqloop.context is imported */
        int ok = IS_NONE(cls) ? 0 : PyObject_IsInstance(context, cls);
        if (ok < 0)
            goto fail;
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "context must be a MainContext, not %.200s",
                         _PyType_Name(Py_TYPE(context)));
            goto fail;
        }
        Py_INCREF(context);
        ctx = context;
    }
    /* a MainContext is a ContextCore, whose _attach no class overrides */
    if (!is_context(st, ctx))
        PyErr_Format(PyExc_TypeError, "context must be a MainContext, not %.200s",
                     _PyType_Name(Py_TYPE(ctx)));
    else
        result = ctx_attach((ContextObject *)ctx, srcobj);
    if (result == NULL)
        goto fail;
    Py_DECREF(ctx);
    Py_DECREF(srcobj);
    return result;
fail:
    Py_XDECREF(ctx);
    {
        /* the destroy's own error replaces the pending one, as in Python */
        PyObject *saved = PyErr_GetRaisedException();
        (void)finish_cleanup(saved, source_call_destroy(st, srcobj));
    }
    Py_DECREF(srcobj);
    return NULL;
}

/* configure_timers(**refs): the Python objects the timer paths compare against. */
static PyObject *
timers_configure(PyObject *module, PyObject *args, PyObject *kw)
{
    ModState *st = module_state(module);
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure_timers() takes keyword arguments only");
        return NULL;
    }
    if (kw == NULL)
        Py_RETURN_NONE;
    Py_ssize_t used = 0;
    int r;
#define SET_TIMER_REF(field, keyword)                  \
    if ((r = set_ref(&st->field, kw, keyword)) < 0)    \
        return NULL;                                   \
    used += r;
    CORE_TIMER_CONFIG(SET_TIMER_REF)
#undef SET_TIMER_REF
    if (used != PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "configure_timers() got an unknown keyword argument");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ==================================================================== end timers */
