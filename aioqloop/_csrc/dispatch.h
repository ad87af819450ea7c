/* aioqloop._cengine, part dispatch.h: Dispatch: g_main_dispatch for one priority, with GLib's source blocking
 * (block_source/unblock_source), the dispatch depth, statistics, and QEMU's big-lock
 * hand-over between two dispatches (the Gate).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ---------------------------------------------------------------------- GateCore */
/* The flags of QEMU's big-lock rule that every iteration reads (base of
 * aioqloop._gate.LockGate): ``deferred``, a dispatch waits for the lock to be handed over
 * (nothing counts as ready), and ``handed``, the lock was handed over to the loop
 * thread.  The rule itself (enter, between, leave, give_back) stays in Python and is
 * called through configure()'s functions. */
struct GateObject {
    PyObject_HEAD
    char deferred, handed;
};

#define GATE_FIELDS(X)
GC_FUNCTIONS(gate, GateObject, GATE_FIELDS)

static PyMemberDef gate_members[] = {
    {"deferred", T_BOOL, offsetof(GateObject, deferred), 0,
     "A dispatch waits for the lock to be handed over (nothing counts as ready)."},
    {"handed", T_BOOL, offsetof(GateObject, handed), 0,
     "The lock was handed over to the loop thread and is held for a dispatch."},
    {NULL}
};
static PyMethodDef gate_methods[] = {{NULL}};

CORE_SPEC(gate, GateObject, "GateCore",
    "The flags of a context's big-lock rule as C fields (base of LockGate).",
    PyType_GenericNew)

/* The context's gate (a GateCore), or NULL if it has none; NULL with a TypeError if it
 * is something else. */
static inline GateObject *
ctx_gate(ContextObject *self, int *bad)
{
    PyObject *g = self->gate;
    *bad = 0;
    if (IS_NONE(g))
        return NULL;
    if (!PyObject_TypeCheck(g, self->st->GateType)) {
        PyErr_SetString(PyExc_TypeError, "MainContext._gate must be a LockGate or None");
        *bad = 1;
        return NULL;
    }
    return (GateObject *)g;
}

/* Truth of gate.deferred; 0 without a gate, -1 with an exception. */
static inline int
gate_deferred(ContextObject *self)
{
    int bad;
    GateObject *g = ctx_gate(self, &bad);
    return bad ? -1 : (g != NULL && g->deferred);
}

/* Call a configured function with 1 to 3 arguments; a new reference, or NULL with an
 * exception (a RuntimeError if the module that hands it over was never imported). */
static PyObject *
upcall(PyObject *fn, const char *what, PyObject *a, PyObject *b, PyObject *c)
{
    if (fn == NULL) {
        PyErr_Format(PyExc_RuntimeError, "aioqloop._cengine is not configured (%s)", what);
        return NULL;
    }
    PyObject *argv[3] = {a, b, c};
    size_t n = c ? 3 : b ? 2 : a ? 1 : 0;
    return PyObject_Vectorcall(fn, argv, n, NULL);
}
#define UPCALL(st, field, a, b, c) upcall((st)->field, #field, (a), (b), (c))

/* The same, the result discarded: 0, or -1 with an exception. */
static int
upcall_void(PyObject *fn, const char *what, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *r = upcall(fn, what, a, b, c);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}
#define UPCALL_VOID(st, field, a, b, c) upcall_void((st)->field, #field, (a), (b), (c))

/* The same, the result's truth: 0 or 1, or -1 with an exception. */
static int
upcall_truth(PyObject *fn, const char *what, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *r = upcall(fn, what, a, b, c);
    if (r == NULL)
        return -1;
    int t = truth(r);
    Py_DECREF(r);
    return t;
}
#define UPCALL_TRUTH(st, field, a, b, c) upcall_truth((st)->field, #field, (a), (b), (c))

/* The fd records and the poller are defined later (fdpoll.h): read in iterate.h. */
static FdTagObject *fd_record(ModState *st, PyObject *rec);
static void fd_record_clear(FdTagObject *rec);
static long fd_record_revents(FdTagObject *rec);
static int fds_unpolled(ContextObject *self);

/* Dispatcher.rearm: after a dispatch, clear revents and re-arm, keep or destroy src. */
static int
rearm(ContextObject *self, SourceObject *src, int keep, int premarked)
{
    ModState *st = self->st;
    PyObject *fds = src->fds;
    if (fds != NULL && (PyList_CheckExact(fds) || PyTuple_CheckExact(fds))) {
        Py_INCREF(fds);
        /* setting revents runs no code: the sequence cannot change meanwhile */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fds); i++) {
            FdTagObject *rec = fd_record(st, PySequence_Fast_GET_ITEM(fds, i));
            if (rec == NULL) {
                Py_DECREF(fds);
                return -1;
            }
            fd_record_clear(rec);
        }
        Py_DECREF(fds);
    }
    else if (!IS_NONE(fds)) {
        PyErr_SetString(PyExc_TypeError, "a source's _fds must be a list or a tuple");
        return -1;
    }
    double now = self->now, rt = src->ready_time;
    /* marked again early (premarked, or by its ready time while unblocked during its
     * dispatch) but re-armed for later meanwhile: not ready after all */
    if ((premarked || src->ready_by_time) && src->ready && !src->c_idle
            && !(0 <= rt && rt <= now)) {
        if (unmark_ready(self, src) < 0)
            return -1;
    }
    if (src->destroyed)
        return 0;
    if (!keep)
        return destroy_source(src);
    if (src->c_idle)
        return mark_ready(self, (PyObject *)src);
    rt = src->ready_time;
    if (rt != -1 && !src->in_heap) {
        if (rt <= now) {
            if (!src->ready) {
                if (mark_ready(self, (PyObject *)src) < 0)
                    return -1;
                src->ready_by_time = src->ready;
            }
            else if (src->ready_by_child) {
                /* due itself: ready in its own right, not only through a child */
                src->ready_by_child = 0;
                src->ready_by_time = 1;
            }
        }
        else {
            return schedule_ready_time_c(self, src);
        }
    }
    return 0;
}

/* Dispatcher.end_dispatch. */
static int
end_dispatch(ContextObject *self, SourceObject *src, int blocked, int leaf, double elapsed)
{
    ModState *st = self->st;
    src->dispatching--;
    if (blocked) {
        Py_ssize_t ndue = list_len(self->blocked_due);
        if (ndue < 0)
            return -1;
        int unpolled = 0;
        if (leaf && list_len(src->fds) > 0) {
            /* its fds are unpolled while a nested iteration polled without it */
            unpolled = fds_unpolled(self);
            if (unpolled < 0)
                return -1;
        }
        /* (still dispatching: a nested dispatch of it ends, Dispatcher.unblock decides) */
        if (leaf && !src->ready_while_blocked && ndue == 0 && !unpolled && src->dispatching == 0) {
            src->blocked = 0;
            PyObject *stack = self->blocked;
            Py_ssize_t n;
            if (stack != NULL && PyList_CheckExact(stack) && (n = PyList_GET_SIZE(stack)) > 0
                    && PyList_GET_ITEM(stack, n - 1) == (PyObject *)src) {
                list_drop_last(stack);  /* src is held by the dispatch */
            }
            else if (UPCALL_VOID(st, unblock, (PyObject *)self, (PyObject *)src, NULL) < 0) {
                return -1;
            }
        }
        else if (UPCALL_VOID(st, unblock, (PyObject *)self, (PyObject *)src, NULL) < 0) {
            return -1;
        }
    }
    PyObject *rec = src->stats;
    if (IS_NONE(rec)) {
        /* SourceStatistics(): zeroed counters (its __init__ takes no arguments) */
        rec = st->StatsType->tp_alloc(st->StatsType, 0);
        if (rec == NULL)
            return -1;
        Py_XSETREF(src->stats, rec);
    }
    if (!Py_IS_TYPE(rec, st->StatsType)) {
        PyErr_SetString(PyExc_TypeError, "a source's _stats must be a SourceStatistics or None");
        return -1;
    }
    StatsObject *s = (StatsObject *)rec;
    s->dispatches++;
    s->dispatch_time += elapsed;
    if (elapsed > s->max_dispatch_time)
        s->max_dispatch_time = elapsed;
    /* Source._maybe_finalize (a private method no class overrides) */
    if (src->destroyed && UPCALL_VOID(st, default_maybe_finalize, (PyObject *)src, NULL, NULL) < 0)
        return -1;
    if (elapsed >= st->slow_floor) {
        /* debug mode's "Executing ... took": the port's threshold, looked at in Python */
        PyObject *e = PyFloat_FromDouble(elapsed);
        int rc = e ? UPCALL_VOID(st, slow_dispatch, (PyObject *)self, (PyObject *)src, e) : -1;
        Py_XDECREF(e);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The source's class's set_ready_time (borrowed, NULL if none): the one lookup of the
 * GSourceFuncs-like method users override.  Looked up on the type: instance attributes
 * are not hooks. */
static inline PyObject *
set_ready_time_of(SourceObject *src)
{
    return _PyType_Lookup(Py_TYPE(src), src->st->s_set_ready_time);
}

/* FdSource.dispatch: callback(fileobj, condition, *args), the condition being the
 * watch's revents as an IOCondition (GLib's GIOFunc / GUnixFDSourceFunc). */
static PyObject *
dispatch_fd(SourceObject *src, PyObject *cb, PyObject *args)
{
    ModState *st = src->st;
    PyObject *fileobj = src->fileobj, *tag = src->tag;
    if (fileobj == NULL || tag == NULL) {
        PyErr_SetString(PyExc_AttributeError, "FdSource without a watch");
        return NULL;
    }
    FdTagObject *rec = fd_record(st, tag);
    if (rec == NULL)
        return NULL;
    long bits = fd_record_revents(rec);
    Py_INCREF(fileobj);
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *small[8];
    PyObject **argv = small;
    if (n + 2 > 8) {
        argv = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n + 2));
        if (argv == NULL) {
            Py_DECREF(fileobj);
            return PyErr_NoMemory();
        }
    }
    argv[0] = fileobj;
    argv[1] = PyTuple_GET_ITEM(st->conditions, bits & 0x3F);
    for (Py_ssize_t i = 0; i < n; i++)
        argv[i + 2] = PyTuple_GET_ITEM(args, i);
    PyObject *r = PyObject_Vectorcall(cb, argv, (size_t)(n + 2), NULL);
    if (argv != small)
        PyMem_Free(argv);
    Py_DECREF(fileobj);
    return r;
}

/* TimeoutSource.dispatch during an iteration: the callback, and a repeating timeout
 * re-armed at the iteration's cached time plus its interval (g_timeout_dispatch). */
static PyObject *
dispatch_timeout(SourceObject *src, ContextObject *ctx, PyObject *cb, PyObject *args)
{
    ModState *st = src->st;
    PyObject *r = PyObject_Call(cb, args, NULL);
    if (r == NULL)
        return NULL;
    int keep = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (keep <= 0)
        return keep < 0 ? NULL : PyBool_FromLong(0);
    if (src->destroyed)
        return PyBool_FromLong(keep);
    double when = ctx->now + src->interval;
    if (when == src->ready_time)
        return PyBool_FromLong(keep);  /* set_ready_time: no change */
    if (!src->in_heap && when <= ctx->now && when >= 0) {
        /* Due already (a timeout of 0): no heap entry; rearm marks it ready, which is
         * what the next check would do with the entry. */
        src->ready_time = when;
        return PyBool_FromLong(keep);
    }
    PyObject *w = PyFloat_FromDouble(when);
    if (w == NULL)
        return NULL;
    /* Source.set_ready_time, which run_dispatch found to be the class's */
    PyObject *x = UPCALL(st, default_set_ready_time, (PyObject *)src, w, NULL);
    Py_DECREF(w);
    if (x == NULL)
        return NULL;
    Py_DECREF(x);
    return PyBool_FromLong(keep);
}

/* Run the source's dispatch (GSourceFuncs.dispatch, which users override: the one
 * lookup of it by name); new reference to its result, NULL on error.  Built-in sources
 * run no Python frame but the user's callback. */
static PyObject *
run_dispatch(SourceObject *src, PyObject *cb, PyObject *args)
{
    ModState *st = src->st;
    PyObject *self = (PyObject *)src, *name = st->s_dispatch;
    PyObject *fn = _PyType_Lookup(Py_TYPE(self), name);  /* borrowed: the class's */
    if (fn != NULL && !IS_NONE(cb) && PyTuple_CheckExact(args)) {
        if (fn == st->default_dispatch)
            return PyObject_Call(cb, args, NULL);
        if (fn == st->fd_dispatch)
            return dispatch_fd(src, cb, args);
        ContextObject *ctx = (ContextObject *)src->context;
        if (fn == st->timeout_dispatch && ctx != NULL && st->default_set_ready_time != NULL
                && set_ready_time_of(src) == st->default_set_ready_time
                && PyObject_TypeCheck((PyObject *)ctx, st->ContextType)
                && (ctx->in_iteration || ctx->in_hook))
            return dispatch_timeout(src, ctx, cb, args);
    }
    /* the class's own dispatch(): dispatch_one takes its result's truth */
    return PyObject_CallMethodObjArgs(self, name, IS_NONE(cb) ? Py_None : cb, args, NULL);
}

/* The dispatch tap (Dispatcher's ``_tap``, aioqloop._trace): a test tool that records
 * each dispatch and may reorder the ready sources of one priority.  Kept apart from the
 * dispatch itself; with no tap (None, the default) it costs one pointer test. */

static int
tap_dispatched(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    PyObject *tap = self->tap;
    if (tap == NULL || IS_NONE(tap))
        return 0;
    Py_INCREF(tap);
    int rc = UPCALL_VOID(st, tap_dispatched, tap, srcobj, NULL);
    Py_DECREF(tap);
    return rc;
}

/* Replace *pending (a new list reference) by the tap's order of it. */
static int
tap_order(ContextObject *self, PyObject *priority, PyObject **pending)
{
    ModState *st = self->st;
    PyObject *tap = self->tap;
    if (tap == NULL || IS_NONE(tap))
        return 0;
    Py_INCREF(tap);
    PyObject *r = UPCALL(st, tap_order, tap, priority, *pending);
    Py_DECREF(tap);
    if (r == NULL)
        return -1;
    if (!PyList_CheckExact(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "a dispatch tap's order() must return a list");
        return -1;
    }
    Py_SETREF(*pending, r);
    return 0;
}

/* The start of Dispatcher.dispatch_one: READY cleared (and set again at once for an
 * idle or a due ready time, as GLib keeps such a source ready), then GLib's block_source
 * unless the source may recurse.  0, or -1 with an exception. */
static int
begin_dispatch(ContextObject *self, SourceObject *src, int *blocked, int *premarked,
               int *leaf)
{
    ModState *st = self->st;
    PyObject *srcobj = (PyObject *)src;
    if (tap_dispatched(self, srcobj) < 0)
        return -1;
    if (src->ready) {
        src->ready = src->ready_by_time = src->ready_by_child = 0;
        rq_remove(src);  /* the batch holds a reference */
    }
    src->latched = 0;
    *blocked = !src->can_recurse;
    double rt = src->ready_time;
    *premarked = !*blocked && (src->c_idle || (0 <= rt && rt <= self->now && !src->in_heap));
    if (*premarked && mark_ready(self, srcobj) < 0)
        return -1;
    Py_ssize_t nchildren = list_len(src->children), nfds = list_len(src->fds);
    if (nchildren < 0 || nfds < 0)
        return -1;
    /* Blocking a source without children is one flag and one push (its fds are only
     * unpolled by a nested iteration's poll, which end_dispatch checks). */
    *leaf = !nchildren;
    if (!*blocked)
        return 0;
    if (!*leaf)
        return UPCALL_VOID(st, block, (PyObject *)self, srcobj, NULL);
    src->blocked = 1;
    if (self->blocked == NULL || !PyList_CheckExact(self->blocked)) {
        PyErr_SetString(PyExc_TypeError, "MainContext._blocked must be a list");
        return -1;
    }
    return PyList_Append(self->blocked, srcobj);
}

/* Push src on the thread's dispatch stack (g_main_current_source's): the stack (a new
 * reference), or NULL with an exception.  The stack of the thread that ran the last
 * dispatch is cached with its thread state's id: a context is dispatched by its owner
 * thread, so the thread-local lookup happens once per thread, not once per dispatch. */
static PyObject *
push_current(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    /* a thread state's id is never reused (thread idents are, after a thread ends) */
    uint64_t me = PyThreadState_GetID(PyThreadState_Get());
    PyObject *current = self->current;
    if (current == NULL || self->current_thread != me) {
        current = UPCALL(st, dispatch_stack, NULL, NULL, NULL);
        if (current == NULL)
            return NULL;
        if (!PyList_CheckExact(current)) {
            Py_DECREF(current);
            PyErr_SetString(PyExc_TypeError, "the dispatch stack must be a list");
            return NULL;
        }
        Py_XSETREF(self->current, current);
        self->current_thread = me;
    }
    Py_INCREF(current);
    if (PyList_Append(current, srcobj) < 0) {
        Py_DECREF(current);
        return NULL;
    }
    return current;
}

/* The dispatch raised (the exception is pending).  SystemExit and KeyboardInterrupt
 * escape: *escaped is set and the exception returned, to be raised again after the
 * cleanup.  Any other is reported through MainContext._report (GLib has no exceptions;
 * this is aioqloop's rule), and what _report itself raises is returned.  NULL: reported,
 * nothing to raise. */
static PyObject *
dispatch_error(ContextObject *self, SourceObject *src, int *escaped)
{
    ModState *st = self->st;
    *escaped = PyErr_ExceptionMatches(PyExc_SystemExit)
               || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
    PyObject *exc = PyErr_GetRaisedException();
    if (*escaped)
        return exc;
    /* the callback as it is now (the failed one may have replaced itself) */
    PyObject *now_cb = src->callback ? src->callback : Py_None;
    Py_INCREF(now_cb);  /* _report may destroy and finalize the source */
    PyObject *fnargs[4] = {(PyObject *)self, exc ? exc : Py_None, (PyObject *)src, now_cb};
    PyObject *r = st->report_dispatch ? PyObject_Vectorcall(st->report_dispatch, fnargs, 4, NULL)
                                      : UPCALL(st, report_dispatch, NULL, NULL, NULL);
    Py_DECREF(now_cb);
    Py_XDECREF(exc);
    if (r == NULL)
        return PyErr_GetRaisedException();
    Py_DECREF(r);
    return NULL;
}

/* Dispatcher.dispatch_one.  Returns 0 and sets *t_end, or -1 with an exception. */
static int
dispatch_one(ContextObject *self, SourceObject *src, double t0, double *t_end)
{
    PyObject *srcobj = (PyObject *)src;
    int blocked, premarked, leaf;
    if (begin_dispatch(self, src, &blocked, &premarked, &leaf) < 0)
        return -1;
    PyObject *current = push_current(self, srcobj);
    if (current == NULL)
        return -1;
    self->in_iteration++;
    src->dispatching++;
    int keep = 0, escaped = 0;
    PyObject *cb = src->callback ? src->callback : Py_None;
    PyObject *args = src->args;
    Py_INCREF(cb);
    Py_XINCREF(args);
    Py_INCREF(srcobj);
    PyObject *res = args ? run_dispatch(src, cb, args) : NULL;
    if (args == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_AttributeError, "_args");
    if (res != NULL) {
        /* The result's truth is part of the dispatch: a __bool__ that raises is reported
         * and destroys the source, like any other exception of the dispatch. */
        keep = truth(res);
        Py_DECREF(res);
    }
    PyObject *exc = NULL;  /* raised again after the cleanup */
    if (res == NULL || keep < 0) {
        keep = 0;
        exc = dispatch_error(self, src, &escaped);
    }
    /* finally: */
    double t1 = perf_now();
    self->in_iteration--;
    Py_ssize_t n = PyList_GET_SIZE(current);
    int cleanup_rc = 0;
    if (n > 0)
        list_drop_last(current);  /* an exact list (push_current): may run a __del__ */
    Py_DECREF(current);
    if (cleanup_rc == 0)
        cleanup_rc = end_dispatch(self, src, blocked, leaf, t1 - t0);
    if (cleanup_rc == 0 && escaped)
        cleanup_rc = rearm(self, src, src->c_survives, premarked);
    int rc;
    if (cleanup_rc < 0 || exc != NULL) {
        /* an exception in the cleanup replaces the pending one, as in a finally block */
        rc = finish_cleanup(exc, cleanup_rc);
    }
    else if (keep && src->c_idle && list_len(src->fds) == 0 && !src->destroyed) {
        rc = mark_ready(self, srcobj);  /* a repeating idle, the common case of rearm */
    }
    else {
        rc = rearm(self, src, keep, premarked);
    }
    Py_DECREF(cb);
    Py_XDECREF(args);
    Py_DECREF(srcobj);
    *t_end = t1;
    return rc;
}

/* Dispatcher.dispatch_postponed(): a big lock handed over for a dispatch that does not
 * happen now goes back at once, so the loop never polls holding it. */
static PyObject *
ctx_dispatch_postponed(ContextObject *self, PyObject *unused)
{
    int bad;
    PyObject *gate = (PyObject *)ctx_gate(self, &bad);
    if (bad)
        return NULL;
    if (gate != NULL) {
        Py_INCREF(gate);
        int rc = UPCALL_VOID(self->st, gate_give_back, gate, NULL, NULL);
        Py_DECREF(gate);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* The ready sources of a queue, in order: a new list (the accessor's answer, and the
 * batch a dispatch tap reorders), or NULL with an exception. */
static PyObject *
queue_list(ReadyQueue *q)
{
    PyObject *list = PyList_New(q->count);
    if (list == NULL)
        return NULL;
    Py_ssize_t i = 0;
    for (SourceObject *s = q->head; s != NULL && i < q->count; s = s->rq_next, i++) {
        Py_INCREF(s);
        PyList_SET_ITEM(list, i, (PyObject *)s);
    }
    return list;
}

/* Stack the sources of q on the pending dispatches (g_main_dispatch's batch): references
 * in a reused array, so a dispatch allocates nothing.  0, or -1 with an exception. */
static int
pend_push_queue(ContextObject *self, ReadyQueue *q)
{
    Py_ssize_t need = self->npend + q->count;
    if (need > self->pend_cap) {
        Py_ssize_t cap = self->pend_cap ? self->pend_cap : 8;
        while (cap < need)
            cap *= 2;
        PyObject **pend = PyMem_Realloc(self->pend, (size_t)cap * sizeof(PyObject *));
        if (pend == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pend = pend;
        self->pend_cap = cap;
    }
    for (SourceObject *s = q->head; s != NULL; s = s->rq_next) {
        Py_INCREF(s);
        self->pend[self->npend++] = (PyObject *)s;
    }
    return 0;
}

/* Drop the pending dispatches stacked from base on. */
static void
pend_pop(ContextObject *self, Py_ssize_t base)
{
    while (self->npend > base) {
        PyObject *o = self->pend[--self->npend];
        self->pend[self->npend] = NULL;
        Py_DECREF(o);
    }
}

/* The loop of g_main_dispatch over one batch (``single``, the list ``pending``, or the
 * ``count`` pending dispatches stacked from ``base``): each
 * source still ready, in order, until a nested iteration takes over the rest, as in
 * gmain.c.  With a big lock (*gate), QEMU's rule: the batch's first dispatch comes
 * before any waiter gets the lock, waiters get it between two dispatches, and *gate is
 * cleared when the rest must wait for it (see Dispatcher.dispatch).  0, or -1. */
static int
run_batch(ContextObject *self, PyObject **gate, PyObject *single, PyObject *pending,
          Py_ssize_t base, Py_ssize_t count)
{
    ModState *st = self->st;
    Py_ssize_t serial = self->serial;
    double t = perf_now(), t_start = t;
    int rc = 0, first = 1;
    if (single)
        count = 1;
    else if (pending)
        count = PyList_GET_SIZE(pending);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (self->serial != serial)
            break;  /* a nested iteration took over the rest */
        if (!single && !pending && base + i >= self->npend)
            break;  /* the context was cleared meanwhile */
        /* re-read each time: a nested dispatch may have moved the array */
        PyObject *o = single ? single : pending ? PyList_GET_ITEM(pending, i)
                                                : self->pend[base + i];
        if (!Source_Check(st, o))
            continue;
        SourceObject *src = (SourceObject *)o;
        if (src->destroyed)
            continue;  /* g_main_dispatch skips only a destroyed source (Dispatcher.dispatch) */
        if (first)
            first = 0;
        else if (*gate != NULL) {
            int ok = UPCALL_TRUTH(st, gate_between, *gate, NULL, NULL);
            if (ok < 0) {
                rc = -1;
                break;
            }
            if (!ok) {
                Py_CLEAR(*gate);  /* deferred: the rest waits for the lock */
                break;
            }
        }
        double t_end;
        if (dispatch_one(self, src, t, &t_end) < 0) {
            rc = -1;
            break;
        }
        t = t_end;
    }
    self->dispatch_time += t - t_start;
    return rc;
}

/* The ready queue of ``priority`` (an int) in *q, or NULL if there is none (or the
 * priority is no int of C's range); -1 with an exception if reading it failed. */
static int
queue_of(ContextObject *self, PyObject *priority, ReadyQueue **q)
{
    *q = NULL;
    if (PyLong_Check(priority)) {
        int overflow;
        long prio = PyLong_AsLongAndOverflow(priority, &overflow);
        if (prio == -1 && PyErr_Occurred())
            return -1;
        if (!overflow)
            *q = rq_get(self, prio);
    }
    return *q != NULL && rq_sort(*q) < 0 ? -1 : 0;
}

/* Dispatcher.dispatch(priority): the ready sources of one priority, in attach order. */
static PyObject *
ctx_dispatch(ContextObject *self, PyObject *priority)
{
    ModState *st = self->st;
    ReadyQueue *q = NULL;
    if (queue_of(self, priority, &q) < 0)
        return NULL;
    if (q == NULL)  /* gone since the check (or never a priority): nothing to run */
        return ctx_dispatch_postponed(self, NULL);
    self->iterations++;
    /* g_main_dispatch's batch: READY stays set on each until it is dispatched */
    for (SourceObject *s = q->head; s != NULL; s = s->rq_next)
        s->latched = 1;
    PyObject *single = NULL, *pending = NULL, *gate = NULL;
    Py_ssize_t base = self->npend, count = q->count;
    if (count == 1) {
        single = (PyObject *)q->head;
        Py_INCREF(single);
    }
    else if (self->tap != NULL && !IS_NONE(self->tap)) {
        /* the seeded order of the test tools (aioqloop._trace): a list it reorders */
        pending = queue_list(q);
        if (pending == NULL || tap_order(self, priority, &pending) < 0) {
            Py_XDECREF(pending);
            return NULL;
        }
    }
    else if (pend_push_queue(self, q) < 0) {
        return NULL;
    }
    int rc = 0;
    if (self->nrq > 1)
        rc = UPCALL_VOID(st, count_waited, (PyObject *)self, priority, NULL);
    int bad = 0;
    if (rc == 0 && (gate = (PyObject *)ctx_gate(self, &bad)) != NULL) {
        Py_INCREF(gate);
        int ok = UPCALL_TRUTH(st, gate_enter, gate, NULL, NULL);
        if (ok <= 0) {
            rc = ok;  /* -1: an error; 0: the lock is not ours, nothing runs now */
            Py_CLEAR(gate);
            goto done;
        }
    }
    if (bad)
        rc = -1;
    if (rc == 0)
        rc = run_batch(self, &gate, single, pending, base, count);
    if (gate != NULL) {
        PyObject *saved = PyErr_GetRaisedException();
        rc = finish_cleanup(saved, UPCALL_VOID(st, gate_leave, gate, NULL, NULL));
        Py_DECREF(gate);
    }
done:
    Py_XDECREF(single);
    Py_XDECREF(pending);
    pend_pop(self, base);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* MainContext._ready_sources(priority): the ready sources of a priority in dispatch
 * order (a new list; empty if none). */
static PyObject *
ctx_ready_sources(ContextObject *self, PyObject *priority)
{
    ReadyQueue *q = NULL;
    if (queue_of(self, priority, &q) < 0)
        return NULL;
    return q ? queue_list(q) : PyList_New(0);
}

/* MainContext._ready_priorities(): the priorities that have ready sources, ascending. */
static PyObject *
ctx_ready_priorities(ContextObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(self->nrq);
    for (Py_ssize_t i = 0; list != NULL && i < self->nrq; i++) {
        Py_INCREF(self->rq[i].key);
        PyList_SET_ITEM(list, i, self->rq[i].key);
    }
    return list;
}
