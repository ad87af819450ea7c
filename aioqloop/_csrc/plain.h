/* aioqloop._cengine, part plain.h: PlainCore: the plain driver -- a GMainContext iterated from loop callbacks (the uvloop
 * base, any asyncio loop), like g_main_loop_run's loop turned inside out.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ------------------------------------------------------------------- PlainCore */
/* The plain driver (aioqloop.bridge.PlainDriver): a context driven from loop callbacks
 * through public loop API (the uvloop base, any asyncio loop).  Its per-iteration
 * methods are here; arming timers and closing stay in Python on the subclass. */
struct PlainObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    PyObject *ctx, *loop, *handle, *timer, *timeout, *run_cb;
    /* _prepare_prios: the priorities of the context's prepare hooks (PriorityIndex.prios,
     * one list for the context's life, changed in place) */
    PyObject *prepare_prios;
    double timer_when, slack;
    Py_ssize_t iterations_run, empty_iterations;  /* figures for statistics() */
    char closed, owned;
    char batch;  /* 0 outside _run; 1 in its batch; 2: one more iteration was asked for */
};

/* The most iterations one loop callback runs while sources stay ready (bridge.BATCH). */
#define PLAIN_BATCH 64


#define PLAIN_FIELDS(X) \
    X(ctx) X(loop) X(handle) X(timer) X(timeout) X(run_cb) X(prepare_prios)
GC_FUNCTIONS(plain, PlainObject, PLAIN_FIELDS)

static PyObject *
plain_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    PlainObject *self = (PlainObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    self->timer_when = INFINITY;
    return (PyObject *)self;
}


static int
plain_kick(PlainObject *self)
{
    ModState *st = self->st;
    /* inside a batch the batch itself looks again: no call_soon per source made ready */
    if (!IS_NONE(self->handle) || self->closed || self->batch)
        return 0;
    /* _run_cb: the bound _run, made by PlainDriver.__init__ */
    PyObject *run_cb = REQUIRED(self, run_cb, "_run_cb");
    PyObject *loop = run_cb ? REQUIRED(self, loop, "_loop") : NULL;
    if (loop == NULL)
        return -1;
    /* held: call_soon runs Python code that may replace the fields */
    Py_INCREF(loop);
    Py_INCREF(run_cb);
    /* any asyncio loop (uvloop's too), whose class a tool may swap: looked up by name */
    PyObject *h = PyObject_CallMethodOneArg(loop, st->s_call_soon, run_cb);
    Py_DECREF(run_cb);
    if (h == NULL) {
        /* A closed loop has nothing to run (new work is refused up front, see
         * MainContext._check_loop_open): a notification in the middle of a change
         * must let the change finish (PlainDriver._kick). */
        int is_closed = -1;
        if (PyErr_ExceptionMatches(PyExc_RuntimeError)) {
            PyObject *exc = PyErr_GetRaisedException();
            is_closed = upcall_truth(st->plain_soon_refused, "plain_soon_refused",
                                     (PyObject *)self, NULL, NULL);
            if (is_closed == 0)
                PyErr_SetRaisedException(exc);  /* open loop: the original error goes on */
            else  /* closed: nothing to report; is_closed() failed: that error goes on */
                Py_XDECREF(exc);
        }
        Py_DECREF(loop);
        return is_closed > 0 ? 0 : -1;
    }
    Py_DECREF(loop);
    Py_XSETREF(self->handle, h);
    return 0;
}

static PyObject *
plain_kick_meth(PlainObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "_kick() takes at most one argument");
        return NULL;
    }
    if (plain_kick(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._rearm(timeout): the earliest of the next deadline and the prepare
 * phase's wait becomes the timer (Python's deadline_changed arms it). */
static int
plain_rearm(PlainObject *self, PyObject *timeout)
{
    ModState *st = self->st;
    if (self->closed)
        return 0;
    if (!is_context(st, self->ctx)) {
        PyErr_SetString(PyExc_TypeError, "the driver's context is not a MainContext");
        return -1;
    }
    ContextObject *ctx = (ContextObject *)self->ctx;
    double deadline;
    if (next_deadline(ctx, &deadline) < 0)
        return -1;
    if (!IS_NONE(timeout)) {
        double t = PyFloat_AsDouble(timeout), now;
        if ((t == -1.0 && PyErr_Occurred()) || context_time(ctx, &now) < 0)
            return -1;
        if (now + t < deadline)
            deadline = now + t;
    }
    if (deadline < self->timer_when) {
        PyObject *d = PyFloat_FromDouble(deadline);
        int rc = d ? upcall_void(st->plain_deadline_changed, "plain_deadline_changed",
                                 (PyObject *)self, d, NULL) : -1;
        Py_XDECREF(d);
        return rc;
    }
    return 0;
}

static PyObject *
plain_rearm_meth(PlainObject *self, PyObject *timeout)
{
    if (plain_rearm(self, timeout) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._iterate_once: one iteration; 1 if another is due now, 0 once the timer
 * is armed for the next, -1 on error. */
static int
plain_iterate_once(PlainObject *self, ContextObject *ctx)
{
    Py_CLEAR(self->timeout);
    self->iterations_run++;
    int r = iterate_impl(ctx, (PyObject *)self, 1, 1);
    if (r < 0)
        return -1;
    if (r == 0)
        self->empty_iterations++;
    /* re-check after publishing "may sleep" (QEMU's notify_me handshake) */
    int again = self->batch == 2;
    self->batch = 1;
    int work = again ? 1 : has_work(ctx);
    if (work != 0)
        return work;
    PyObject *wait = self->timeout ? self->timeout : Py_None;
    if (r == 1 && PyFloat_Check(wait) && PyFloat_AS_DOUBLE(wait) == 0.0) {
        /* Prepare's zero said "something is ready", and the dispatch ran it: re-arming
         * it would fire an empty iteration right away.  Only a new prepare knows the
         * wait of prepare hooks, or of the fd audit when no timer is armed for it
         * (MainContext._wait_needs_prepare). */
        PyObject *prios = REQUIRED(self, prepare_prios, "_prepare_prios");
        if (prios == NULL)
            return -1;
        int needs = truth(prios);
        if (needs == 0 && isinf(self->timer_when))
            needs = FDS_MASKS(ctx);
        if (needs < 0)
            return -1;
        if (needs == 0)
            wait = Py_None;
    }
    Py_INCREF(wait);
    int rc = plain_rearm(self, wait);
    Py_DECREF(wait);
    return rc < 0 ? -1 : 0;
}

/* PlainDriver._run: GLib iterations without a wait while sources are ready (at most
 * PLAIN_BATCH in one loop callback), then arrange for the next. */
static PyObject *
plain_run(PlainObject *self, PyObject *unused)
{
    ModState *st = self->st;
    Py_CLEAR(self->handle);
    if (self->closed)  /* closing the context closes its driver first */
        Py_RETURN_NONE;
    PyObject *ctxo = self->ctx;
    if (!is_context(st, ctxo)) {
        PyErr_SetString(PyExc_TypeError, "the driver's context is not a MainContext");
        return NULL;
    }
    Py_INCREF(ctxo);
    ContextObject *ctx = (ContextObject *)ctxo;
    if (!self->owned) {
        /* the loop's thread owns the context from its first iteration on */
        int ok = upcall_truth(st->plain_acquire, "plain_acquire", (PyObject *)self, NULL, NULL);
        if (ok <= 0) {
            int rc = -1;
            if (ok == 0) {
                PyObject *again = PyFloat_FromDouble(0.01);
                rc = again ? plain_rearm(self, again) : -1;  /* look again soon */
                Py_XDECREF(again);
            }
            Py_DECREF(ctxo);
            if (rc < 0)
                return NULL;
            Py_RETURN_NONE;
        }
        self->owned = 1;
    }
    int more = 1;
    self->batch = 1;  /* sources made ready meanwhile need no call_soon: we look again */
    for (int i = 0; i < PLAIN_BATCH; i++) {
        if (i > 0) {
            /* GLib polls in every iteration: fd events and wake-ups that came meanwhile
             * compete with the sources that stayed ready. */
            FdPollerObject *fp = ctx_fdpoller_required(ctx);
            if (fp == NULL) {
                more = -1;
                break;
            }
            if (!IS_NONE(fp->epoll) && ctx_call_poll_ready(st, ctxo) < 0) {
                more = -1;
                break;
            }
        }
        more = plain_iterate_once(self, ctx);
        if (more <= 0 || self->closed)
            break;
    }
    self->batch = 0;
    Py_DECREF(ctxo);
    /* finally: after a KeyboardInterrupt/SystemExit the iteration is unfinished (a
     * prepare hook may not have said how long to wait): iterate again when the loop
     * runs again.  A spent batch lets the loop's own callbacks run first. */
    if (more != 0) {
        PyObject *saved = PyErr_GetRaisedException();
        if (finish_cleanup(saved, plain_kick(self)) < 0)
            return NULL;
    }
    if (more < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._on_readable: dispatch right here, as an add_reader callback would. */
static PyObject *
plain_on_readable(PlainObject *self, PyObject *unused)
{
    ModState *st = self->st;
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the driver has no context");
        return NULL;
    }
    if (!IS_NONE(self->handle) || self->batch) {
        /* the queued iteration (or this batch) looks next: keep FIFO order */
        if (ctx_call_poll_ready(st, ctx) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    /* The batch flag is up while the poll records readiness: the iteration runs right
     * below, so no call_soon is queued for it (nor cancelled again). */
    self->batch = 1;
    Py_INCREF(ctx);  /* the poll runs Python code that may replace self->ctx */
    int rc = ctx_call_poll_ready(st, ctx);
    Py_DECREF(ctx);
    if (rc < 0) {
        self->batch = 0;
        /* what the poll recorded before it failed still gets its turn */
        PyObject *saved = PyErr_GetRaisedException();
        finish_cleanup(saved, plain_kick(self));
        return NULL;
    }
    return plain_run(self, NULL);
}

static PyObject *
plain_poll(PlainObject *self, PyObject *timeout)
{
    /* asyncio did the waiting; the prepare phase's wait is re-armed as a timer after */
    Py_INCREF(timeout);
    Py_XSETREF(self->timeout, timeout);
    Py_RETURN_NONE;
}

static PyObject *
plain_place(PlainObject *self, PyObject *priority)
{
    ModState *st = self->st;
    if (ctx_call_dispatch(st, self->ctx, priority) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef plain_methods[] = {
    {"_kick", (PyCFunction)(void (*)(void))plain_kick_meth, METH_FASTCALL,
     "_kick($self, _priority=0, /)\n--\n\n"
     "Queue one iteration (a source became ready)."},
    {"_rearm", (PyCFunction)plain_rearm_meth, METH_O,
     "_rearm($self, timeout, /)\n--\n\n"
     "Arm the timer for the next deadline or the prepare phase's wait."},
    {"_run", (PyCFunction)plain_run, METH_NOARGS,
     "_run($self, /)\n--\n\n"
     "One GLib iteration without a wait; then arrange for the next."},
    {"_on_readable", (PyCFunction)plain_on_readable, METH_NOARGS,
     "_on_readable($self, /)\n--\n\n"
     "The context's fd is readable: record it and iterate."},
    {"poll", (PyCFunction)plain_poll, METH_O,
     "poll($self, timeout, /)\n--\n\n"
     "The driver's poll (asyncio did the waiting)."},
    {"place", (PyCFunction)plain_place, METH_O,
     "place($self, priority, /)\n--\n\n"
     "Dispatch the ready priority now."},
    {NULL}
};

#define PM(name, type, field) {name, type, offsetof(PlainObject, field), 0, NULL}
static PyMemberDef plain_members[] = {
    PM("_ctx", T_OBJECT, ctx),
    PM("_loop", T_OBJECT, loop),
    PM("_handle", T_OBJECT, handle),
    PM("_timer", T_OBJECT, timer),
    PM("_timeout", T_OBJECT, timeout),
    PM("_run_cb", T_OBJECT, run_cb),
    PM("_prepare_prios", T_OBJECT, prepare_prios),
    PM("_timer_when", T_DOUBLE, timer_when),
    PM("_slack", T_DOUBLE, slack),
    PM("_closed", T_BOOL, closed),
    PM("_owned", T_BOOL, owned),
    PM("_iterations_run", T_PYSSIZET, iterations_run),
    PM("_empty_iterations", T_PYSSIZET, empty_iterations),
    PM("_batch", T_BYTE, batch),
    {NULL}
};

CORE_SPEC(plain, PlainObject, "PlainCore",
    "The plain driver's per-iteration methods, as C (base of PlainDriver).",
    plain_new)

/* The driver's poll and place (MainContext._iterate's driver): the hook's and the plain
 * driver's in C (no subclass overrides them); another driver (the context's own, for
 * iteration() and pending()) by name. */
static PyObject *
driver_poll(ModState *st, PyObject *driver, PyObject *timeout)
{
    if (PyObject_TypeCheck(driver, st->HookType))
        return hook_poll((HookObject *)driver, timeout);
    if (PyObject_TypeCheck(driver, st->PlainType))
        return plain_poll((PlainObject *)driver, timeout);
    return PyObject_CallMethodOneArg(driver, st->s_poll, timeout);
}

static PyObject *
driver_place(ModState *st, PyObject *driver, PyObject *prio)
{
    if (PyObject_TypeCheck(driver, st->HookType))
        return hook_place((HookObject *)driver, prio);
    if (PyObject_TypeCheck(driver, st->PlainType))
        return plain_place((PlainObject *)driver, prio);
    return PyObject_CallMethodOneArg(driver, st->s_place, prio);
}
