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


static int
bh_pending(ContextObject *self)
{
    ModState *st = self->st;
    return nonempty_attr(self->bh, st->s_pending);
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

/* MainContext._check: GLib's check; the priority to dispatch (inf if none). */
static PyObject *
check(ContextObject *self)
{
    ModState *st = self->st;
    int entries = self->ndl > 0;
    int hooks = nonempty_attr(self->check_hooks, st->s_prios);
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
        hooks = nonempty_attr(self->check_hooks, st->s_prios);
        if (hooks < 0 || (hooks && call_method_void((PyObject *)self, st->s_run_check_hooks,
                                                    NULL, NULL, NULL) < 0))
            return NULL;
    }
    else if (self->nrq) {
        if (read_clock(self) < 0)
            return NULL;
    }
    if (!IS_NONE(self->gate)) {
        PyObject *gate = self->gate;
        Py_INCREF(gate);
        int deferred = attr_truth(gate, st->s_deferred);
        if (deferred < 0 || (deferred == 0 && self->nrq == 0
                             && call_method_void(gate, st->s_give_back, NULL, NULL, NULL) < 0)) {
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
    PyObject *iv = PyObject_GetAttr((PyObject *)self, st->s_audit_interval);
    double interval = iv ? PyFloat_AsDouble(iv) : -1.0;
    Py_XDECREF(iv);
    if (interval == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *fds = REQUIRED(self, fds, "_fds");
    if (fds == NULL)
        return NULL;
    Py_INCREF(fds);
    double last;
    if (fds_last_audit(self, &last) < 0)
        goto fail;
    if (now - last >= interval) {
        PyObject *mark = PyObject_GetAttr((PyObject *)self, st->s_mark_ready);
        PyObject *t = mark ? PyFloat_FromDouble(now) : NULL;
        int rc = t ? call_method_void(fds, st->s_audit, t, mark, NULL) : -1;
        Py_XDECREF(t);
        Py_XDECREF(mark);
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
    int deferred = 0;
    if (!IS_NONE(self->gate) && (deferred = attr_truth(self->gate, st->s_deferred)) < 0)
        return NULL;
    int queued = waker_ops_pending(self);
    if (queued == 0)
        queued = bh_pending(self);
    if (queued < 0)
        return NULL;
    int hooks = nonempty_attr(self->prepare_hooks, st->s_prios);
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
    return PyObject_CallMethodOneArg((PyObject *)self, st->s_prepare_slow,
                                     deferred ? Py_True : Py_False);
}

static PyObject *
ctx_prepare(ContextObject *self, PyObject *unused)
{
    return prepare(self);
}

/* Re-bind the clock if the loop's class was swapped (looptime does it). */
static int
follow_clock(ContextObject *self)
{
    ModState *st = self->st;
    PyObject *port = REQUIRED(self, port, "_port");
    if (port == NULL)
        return -1;
    Py_INCREF(port);
    PyObject *loop = PyObject_GetAttr(port, st->s_loop);
    PyObject *loop_class = loop ? PyObject_GetAttr(port, st->s_loop_class) : NULL;
    int swapped = loop_class != NULL && (PyObject *)Py_TYPE(loop) != loop_class;
    Py_XDECREF(loop);
    Py_XDECREF(loop_class);
    int rc = loop_class == NULL ? -1 : 0;
    if (rc == 0 && swapped) {
        PyObject *clock = PyObject_CallMethodNoArgs(port, st->s_rebind);
        if (clock == NULL)
            rc = -1;
        else
            Py_XSETREF(self->clock, clock);
    }
    Py_DECREF(port);
    return rc;
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
    Py_INCREF(waker);
    WakerObject *cw = ctx_waker(self);  /* its flag is a C field: no lookups */
    PyObject *was_waiting = cw ? PyBool_FromLong(cw->poll_waiting)
                               : PyObject_GetAttr(waker, st->s_poll_waiting);
    if (was_waiting == NULL) {
        Py_DECREF(waker);
        return -1;
    }
    if (follow_clock(self) < 0)  /* the loop's class was swapped (e.g. looptime) */
        goto fail;
    /* "May sleep" is published before the last look at the queues (the GIL orders a
     * plain store; free-threaded builds use the pure engine). */
    if (cw != NULL)
        cw->poll_waiting = 1;
    else if (PyObject_SetAttr(waker, st->s_poll_waiting, Py_True) < 0)
        goto fail;
    PyObject *timeout = prepare(self);
    PyObject *r = NULL;
    if (timeout != NULL) {
        r = driver_poll(st, driver, block ? timeout : st->float_zero);
        Py_DECREF(timeout);
    }
    {
        /* finally: the flag goes back, whatever prepare and the poll did */
        PyObject *saved = PyErr_GetRaisedException();
        int restored = 0;
        if (cw != NULL)
            cw->poll_waiting = (char)(was_waiting == Py_True);
        else
            restored = PyObject_SetAttr(waker, st->s_poll_waiting, was_waiting);
        if (finish_cleanup(saved, restored) < 0) {
            Py_XDECREF(r);
            goto fail;
        }
    }
    Py_DECREF(was_waiting);
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
fail:
    Py_DECREF(was_waiting);
    Py_DECREF(waker);
    return -1;
}


/* MainContext._iterate(driver, *, block, dispatch): g_main_context_iterate. */
static PyObject *
ctx_iterate(ContextObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    ModState *st = self->st;
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
        if (k == st->s_block_kw || PyUnicode_Compare(k, st->s_block_kw) == 0) {
            block = v;
            seen_block = 1;
        }
        else if (k == st->s_dispatch_kw || PyUnicode_Compare(k, st->s_dispatch_kw) == 0) {
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
    if (!IS_NONE(self->gate)) {
        int deferred = attr_truth(self->gate, st->s_deferred);
        if (deferred != 0)
            return deferred < 0 ? -1 : 0;
    }
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
        r = call_truth(self->fds, st->s_always_ready_pending);
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
