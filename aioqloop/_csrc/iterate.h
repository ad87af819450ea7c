/* aioqloop._cengine, part iterate.h: Iteration: g_main_context_prepare (its fast part), query, check and
 * g_main_context_iterate itself; the context's cached time, has_work and the earliest
 * ready time.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* The most urgent ready priority (a new reference), or inf. */
static PyObject *
best_priority(ContextObject *self)
{
    PyObject *best = self->nrq ? self->rq[0].key : self->st->float_inf;
    Py_INCREF(best);
    return best;
}

/* MainContext._best_ready(): the most urgent priority with ready sources (inf if none). */
static PyObject *
ctx_best_ready(ContextObject *self, PyObject *unused)
{
    return best_priority(self);
}


/* An fd record of a source (an FdTagCore: add_unix_fd's tag), or NULL with a TypeError. */
static FdTagObject *
fd_record(ModState *st, PyObject *rec)
{
    if (!PyObject_TypeCheck(rec, st->FdTagType)) {
        PyErr_Format(PyExc_TypeError, "expected an fd record, not %.100s",
                     Py_TYPE(rec)->tp_name);
        return NULL;
    }
    return (FdTagObject *)rec;
}

static void
fd_record_clear(FdTagObject *rec)
{
    rec->revents = 0;
}

static long
fd_record_revents(FdTagObject *rec)
{
    return rec->revents;
}

/* Truth of the poller's unpolled fds (FdPoller.unpolled); -1 with an exception. */
static int
fds_unpolled(ContextObject *self)
{
    FdPollerObject *fp = ctx_fdpoller(self);
    PyObject *set = fp != NULL ? fp->unpolled : NULL;
    if (set == NULL) {
        PyErr_SetString(PyExc_TypeError, "MainContext._fds must be an initialised FdPoller");
        return -1;
    }
    return PyAnySet_CheckExact(set) ? PySet_GET_SIZE(set) != 0 : truth(set);
}

static int
bh_pending(ContextObject *self)
{
    PyObject *bh = self->bh;
    if (bh == NULL || bh == Py_None)
        return 0;
    if (!PyObject_TypeCheck(bh, self->st->BHCarrierType)) {
        PyErr_SetString(PyExc_TypeError, "MainContext._bh must be a BHCarrierCore or None");
        return -1;
    }
    return ((BHCarrierObject *)bh)->pending != 0;
}

/* The loop's time in seconds through the context's clock (not cached); -1 on error. */
static int
clock_now(ContextObject *self, double *out)
{
    ModState *st = self->st;
    PyObject *clock = REQUIRED(self, clock, "_clock");
    if (clock == NULL)
        return -1;
    if (timers_fast_clock(st, clock, out))
        return 0;
    Py_INCREF(clock);  /* the call may replace the field */
    PyObject *t = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (t == NULL)
        return -1;
    double v = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* Read the clock into the iteration's cached time. */
static int
read_clock(ContextObject *self)
{
    return clock_now(self, &self->now);
}

/* Truth of a hook index's priorities (PriorityIndex.prios, the list the context holds
 * from its construction: never replaced); 0 if unset. */
static inline int
hooks_pending(PyObject *prios)
{
    return IS_NONE(prios) ? 0 : truth(prios);
}

/* MainContext._check: GLib's check; the priority to dispatch (inf if none). */
static PyObject *
check(ContextObject *self)
{
    ModState *st = self->st;
    int entries = self->ndl > 0;
    int hooks = hooks_pending(self->check_prios);
    int ops = hooks < 0 ? -1 : waker_ops_pending(self);
    int bh = ops < 0 ? -1 : bh_pending(self);
    if (bh < 0)
        return NULL;
    if (entries || hooks || ops || bh) {
        PyObject *t = ctx_collect(self, NULL);
        if (t == NULL)
            return NULL;
        Py_DECREF(t);
        /* again: an operation posted by another thread may have attached a hooked source */
        hooks = hooks_pending(self->check_prios);
        if (hooks < 0 || (hooks && UPCALL_VOID(st, run_check_hooks, (PyObject *)self,
                                               NULL, NULL) < 0))
            return NULL;
    }
    else if (self->nrq) {
        if (read_clock(self) < 0)
            return NULL;
    }
    int bad;
    GateObject *g = ctx_gate(self, &bad);
    if (bad)
        return NULL;
    if (g != NULL) {
        PyObject *gate = (PyObject *)g;
        Py_INCREF(gate);
        int deferred = g->deferred;
        if (deferred == 0 && self->nrq == 0
                && UPCALL_VOID(st, gate_give_back, gate, NULL, NULL) < 0) {
            Py_DECREF(gate);
            return NULL;
        }
        Py_DECREF(gate);
        if (deferred) {
            Py_INCREF(st->float_inf);
            return st->float_inf;
        }
    }
    return best_priority(self);
}

static PyObject *
ctx_check(ContextObject *self, PyObject *unused)
{
    return check(self);
}

/* _prepare_slow when only fd watches need a look (nothing ready, queued, timed or
 * hooked): the cached time and the NVAL audit, whose due time bounds the wait. */
static PyObject *
prepare_fds_only(ContextObject *self, int deferred)
{
    ModState *st = self->st;
    if (read_clock(self) < 0)
        return NULL;
    double now = self->now;
    double interval = self->audit_interval;
    PyObject *fds = REQUIRED(self, fds, "_fds");
    if (fds == NULL)
        return NULL;
    Py_INCREF(fds);
    double last;
    if (fds_last_audit(self, &last) < 0)
        goto fail;
    if (now - last >= interval) {
        PyObject *t = PyFloat_FromDouble(now);
        int rc = t ? UPCALL_VOID(st, audit_fds, (PyObject *)self, t, NULL) : -1;
        Py_XDECREF(t);
        if (rc < 0)
            goto fail;
        if (fds_last_audit(self, &last) < 0)
            goto fail;
    }
    Py_DECREF(fds);
    double wait = last + interval - now;
    if (wait < 0)
        wait = 0.0;
    if (self->nrq && !deferred) {
        Py_INCREF(st->float_zero);
        return st->float_zero;
    }
    if (isinf(wait))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(wait);
fail:
    Py_DECREF(fds);
    return NULL;
}

/* MainContext._prepare's fast part; the rest is _prepare_slow(deferred) in Python. */
static PyObject *
prepare(ContextObject *self)
{
    ModState *st = self->st;
    self->serial++;
    int deferred = gate_deferred(self);
    if (deferred < 0)
        return NULL;
    int queued = waker_ops_pending(self);
    if (queued == 0)
        queued = bh_pending(self);
    if (queued < 0)
        return NULL;
    int hooks = hooks_pending(self->prepare_prios);
    if (hooks < 0)
        return NULL;
    Py_ssize_t nready = self->nrq;
    if (nready && !deferred && !hooks && !queued) {
        Py_INCREF(st->float_zero);
        return st->float_zero;
    }
    if (!(nready || hooks || queued)) {
        int entries = self->ndl > 0;
        int masks = entries ? entries : FDS_MASKS(self);
        if (masks < 0)
            return NULL;
        if (!masks)
            Py_RETURN_NONE;
        if (!entries) {
            int always = FDS_ALWAYS(self);
            if (always < 0)
                return NULL;
            if (!always)
                return prepare_fds_only(self, deferred);
        }
    }
    if (!hooks && !queued) {
        PyObject *r = timers_prepare(self, deferred);
        if (r != Py_NotImplemented)
            return r;
        Py_DECREF(r);
    }
    return UPCALL(st, prepare_slow, (PyObject *)self, deferred ? Py_True : Py_False, NULL);
}

static PyObject *
ctx_prepare(ContextObject *self, PyObject *unused)
{
    return prepare(self);
}

/* Re-bind the clock if the loop's class was swapped (looptime does it): the context
 * keeps the loop and the class its clock was bound for (_clock_loop, _clock_class),
 * and calls into Python only when they differ. */
static int
follow_clock(ContextObject *self)
{
    PyObject *loop = REQUIRED(self, clock_loop, "_clock_loop");
    if (loop == NULL)
        return -1;
    if ((PyObject *)Py_TYPE(loop) == self->clock_class)
        return 0;
    return UPCALL_VOID(self->st, rebind_clock, (PyObject *)self, NULL, NULL);
}


/* g_main_context_iterate: 1 if a source was ready, 0 if not, -1 on error. */
static int
iterate_impl(ContextObject *self, PyObject *driver, int block, int dispatch)
{
    ModState *st = self->st;
    PyObject *waker = self->waker;
    if (IS_NONE(waker)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext has no waker");
        return -1;
    }
    WakerObject *cw = ctx_waker(self);  /* its flag is a C field: no lookups */
    if (cw == NULL) {
        PyErr_SetString(PyExc_TypeError, "MainContext._waker must be a Waker");
        return -1;
    }
    Py_INCREF(waker);
    char was_waiting = cw->poll_waiting;
    if (follow_clock(self) < 0) {  /* the loop's class was swapped (e.g. looptime) */
        Py_DECREF(waker);
        return -1;
    }
    /* "May sleep" is published before the last look at the queues (the GIL orders a
     * plain store; free-threaded builds use the pure engine). */
    cw->poll_waiting = 1;
    PyObject *timeout = prepare(self);
    PyObject *r = NULL;
    if (timeout != NULL) {
        r = driver_poll(st, driver, block ? timeout : st->float_zero);
        Py_DECREF(timeout);
    }
    /* finally: the flag goes back, whatever prepare and the poll did (a plain store:
     * no code runs, the pending exception stays) */
    cw->poll_waiting = was_waiting;
    Py_DECREF(waker);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyObject *prio = check(self);
    if (prio == NULL)
        return -1;
    if (prio == st->float_inf || (PyFloat_Check(prio) && isinf(PyFloat_AS_DOUBLE(prio)))) {
        Py_DECREF(prio);
        return 0;
    }
    if (dispatch) {
        r = driver_place(st, driver, prio);
        Py_DECREF(prio);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    else {
        Py_DECREF(prio);
    }
    return 1;
}


/* MainContext._iterate(driver, *, block, dispatch): g_main_context_iterate. */
static PyObject *
ctx_iterate(ContextObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int block = 0, dispatch = 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "_iterate() takes one positional argument (driver)");
        return NULL;
    }
    int seen_block = 0, seen_dispatch = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int v = PyObject_IsTrue(args[nargs + i]);
        if (v < 0)
            return NULL;
        /* keyword names are compared as text: no attribute is looked up */
        if (PyUnicode_CompareWithASCIIString(k, "block") == 0) {
            block = v;
            seen_block = 1;
        }
        else if (PyUnicode_CompareWithASCIIString(k, "dispatch") == 0) {
            dispatch = v;
            seen_dispatch = 1;
        }
        else {
            PyErr_Format(PyExc_TypeError, "_iterate() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    if (!seen_block || !seen_dispatch) {
        PyErr_SetString(PyExc_TypeError,
                        "_iterate() needs the keyword arguments 'block' and 'dispatch'");
        return NULL;
    }
    int r = iterate_impl(self, args[0], block, dispatch);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}


/* MainContext.has_work: is anything ready or due without waiting?  -1 on error. */
static int
has_work(ContextObject *self)
{
    ModState *st = self->st;
    int deferred = gate_deferred(self);
    if (deferred != 0)
        return deferred < 0 ? -1 : 0;
    if (self->nrq)
        return 1;
    /* the Python method reads the waker's queue unconditionally: a half-made context
     * says so rather than "nothing to do" */
    if (REQUIRED(self, waker, "_waker") == NULL)
        return -1;
    int r = bh_pending(self);
    if (r == 0)
        r = waker_ops_pending(self);
    if (r != 0)
        return r;
    r = FDS_ALWAYS(self);
    if (r > 0)
        r = UPCALL_TRUTH(st, always_ready, self->fds, NULL, NULL);
    if (r != 0)
        return r;
    if (self->ndl == 0)
        return 0;
    double now;
    if (clock_now(self, &now) < 0)
        return -1;
    return dl_head(self) <= now;  /* possibly stale: a cheap "maybe due", as in Python */
}

static PyObject *
ctx_has_work(ContextObject *self, PyObject *unused)
{
    int r = has_work(self);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* MainContext.next_deadline: the earliest ready time in loop seconds (inf if none). */
static int
next_deadline(ContextObject *self, double *out)
{
    *out = dl_next_deadline(self);
    return 0;
}

static PyObject *
ctx_next_deadline(ContextObject *self, PyObject *unused)
{
    double d;
    return next_deadline(self, &d) < 0 ? NULL : PyFloat_FromDouble(d);
}

/* MainContext.time: cached during an iteration, else the loop's now. */
static int
context_time(ContextObject *self, double *out)
{
    if (self->in_iteration || self->in_hook) {
        *out = self->now;
        return 0;
    }
    return clock_now(self, out);
}

static PyObject *
ctx_time(ContextObject *self, PyObject *unused)
{
    double t;
    return context_time(self, &t) < 0 ? NULL : PyFloat_FromDouble(t);
}
