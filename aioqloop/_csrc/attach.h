/* aioqloop._cengine, part attach.h: Attach and destroy: g_source_attach / g_source_destroy and the ready-time heap's
 * push (g_source_set_ready_time), with fast paths for plain sources; the start of
 * prepare and check that collects operations posted by other threads (QEMU's
 * aio_notify handshake), bottom halves and due ready times.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ------------------------------------------------ attach and destroy, fast paths */
/* SourceSet.insert_tree / remove for the common source: no prepare/check hooks, no
 * fds, no children, no parent, a built-in _attached.  Anything else goes to the Python
 * methods (the reference).  The ready-time heap is the context's own (deadlines.h). */


static PyObject *bh_carrier_source(ModState *st, PyObject *carrier);

static int unready_ancestors(ContextObject *self, SourceObject *src);

/* MainContext._schedule_ready_time: (re)enter src's ready time in the heap. */
static int
schedule_ready_time_c(ContextObject *self, SourceObject *src)
{
    ModState *st = self->st;
    if (src->destroyed || src->context != (PyObject *)self)
        return 0;
    double when = src->ready_time;
    if (src->ready_by_time && src->ready && !src->latched) {
        int passed = when == -1;
        if (!passed) {
            double now;
            if (clock_now(self, &now) < 0)
                return -1;
            passed = when > now;
        }
        /* READY came from the old ready time; GLib re-derives READY at the next
         * prepare: still ready through a ready child, else not ready at all */
        if (passed) {
            int child_ready = 0;
            PyObject *children = src->children;
            if (children != NULL && (PyList_Check(children) || PyTuple_Check(children))) {
                Py_ssize_t n = PySequence_Fast_GET_SIZE(children);
                PyObject **items = PySequence_Fast_ITEMS(children);
                for (Py_ssize_t i = 0; i < n && !child_ready; i++)
                    child_ready = Source_Check(st, items[i])
                                  && ((SourceObject *)items[i])->ready;
            }
            if (child_ready) {
                src->ready_by_time = 0;
                src->ready_by_child = 1;
            }
            else if (unmark_ready(self, src) < 0 || unready_ancestors(self, src) < 0)
                return -1;
        }
    }
    if (when == -1 || isinf(when)) {
        dl_drop(self, src);
        return 0;
    }
    int head = dl_push(self, src, when);
    if (head <= 0)
        return head;
    return timers_deadline_changed(self, when);
}

static PyObject *
ctx_schedule_ready_time(ContextObject *self, PyObject *src)
{
    ModState *st = self->st;
    if (!Source_Check(st, src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    if (schedule_ready_time_c(self, (SourceObject *)src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Is src a plain source (no hooks, no fds, no children, no parent, a built-in
 * _attached)?  *vt: its class's VT_* bits.  -1 with an exception. */
static int
plain_source(SourceObject *src, int *vt)
{
    ModState *st = src->st;
    *vt = source_vtable(st, Py_TYPE(src));
    if (*vt & VT_HOOKS)
        return 0;
    if (list_len(src->fds) != 0 || list_len(src->children) != 0 || !IS_NONE(src->parent))
        return 0;
    if (PyErr_Occurred())
        return -1;
    return (*vt & (VT_ATTACHED_DEFAULT | VT_ATTACHED_TIMEOUT)) != 0;
}

/* _contextcore._unready_ancestors: src stopped being ready; an ancestor ready only
 * through it (no other child ready), and not in the running dispatch batch, is not
 * ready either, and its own ready time goes back in the heap.  0, or -1. */
static int
unready_ancestors(ContextObject *self, SourceObject *src)
{
    ModState *st = self->st;
    PyObject *p = src->parent;
    Py_XINCREF(p);
    int rc = 0;
    while (rc == 0 && p != NULL && Source_Check(st, p)) {
        SourceObject *parent = (SourceObject *)p;
        if (!parent->ready || !parent->ready_by_child || parent->latched)
            break;
        int other = 0;
        PyObject *children = parent->children;
        if (children != NULL && (PyList_Check(children) || PyTuple_Check(children))) {
            Py_ssize_t n = PySequence_Fast_GET_SIZE(children);
            PyObject **items = PySequence_Fast_ITEMS(children);
            for (Py_ssize_t i = 0; i < n && !other; i++)
                other = items[i] != (PyObject *)src && Source_Check(st, items[i])
                        && ((SourceObject *)items[i])->ready;
        }
        if (other)
            break;
        rc = unmark_ready(self, parent);
        if (rc == 0 && parent->ready_time != -1 && !parent->in_heap)
            rc = schedule_ready_time_c(self, parent);
        PyObject *next = parent->parent;  /* read after: the calls may have changed it */
        Py_XINCREF(next);
        Py_SETREF(p, next);
    }
    Py_XDECREF(p);
    return rc;
}

/* _insert(src): insert an attached source (owner thread). */
static PyObject *
ctx_insert(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    if (!Source_Check(st, srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    if (src->destroyed)
        Py_RETURN_NONE;
    int vt;
    int plain = plain_source(src, &vt);
    if (plain < 0)
        return NULL;
    if (!plain)
        return upcall_void(st->ctx_insert_tree, "ctx_insert_tree", (PyObject *)self, srcobj, NULL) < 0 ? NULL : Py_NewRef(Py_None);
    /* no attach order yet (an empty tuple, or none at all after a del) */
    if (src->order == NULL || (PyTuple_Check(src->order) && PyTuple_GET_SIZE(src->order) == 0)) {
        PyObject *nseq = PyLong_FromSsize_t(self->order_seq + 1);
        PyObject *one = nseq ? PyLong_FromLong(1) : NULL;
        PyObject *order = one ? PyTuple_Pack(2, nseq, one) : NULL;  /* (seq, 1) */
        Py_XDECREF(one);
        Py_XDECREF(nseq);
        if (order == NULL)
            return NULL;
        self->order_seq++;
        Py_XSETREF(src->order, order);
    }
    if (follow_clock(self) < 0)  /* a timeout's first expiry is computed from it */
        return NULL;
    if ((vt & VT_ATTACHED_TIMEOUT) && src->ready_time == -1) {
        double now;
        if (clock_now(self, &now) < 0)
            return NULL;
        src->ready_time = now + src->interval;
    }
    if (src->ready_time != -1 && schedule_ready_time_c(self, src) < 0)
        return NULL;
    if (src->c_idle && mark_ready(self, srcobj) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _remove_source(src): take a destroyed source out of the context (owner thread). */
static PyObject *
ctx_remove_source(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    if (!Source_Check(st, srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    int vt;
    int plain = plain_source(src, &vt);
    if (plain < 0)
        return NULL;
    if (!plain || !(vt & VT_MAYBE_FINALIZE_DEFAULT))
        return upcall_void(st->ctx_remove, "ctx_remove", (PyObject *)self, srcobj, NULL) < 0 ? NULL : Py_NewRef(Py_None);
    if ((src->ready || src->ready_by_time || src->ready_by_child) && unmark_ready(self, src) < 0)
        return NULL;
    dl_drop(self, src);
    /* Source._maybe_finalize */
    if (src->finalized || src->dispatching)
        Py_RETURN_NONE;
    src->finalized = 1;
    Py_CLEAR(src->callback);
    Py_XSETREF(src->args, PyTuple_New(0));
    if (vt & VT_FINALIZE_DEFAULT)
        Py_RETURN_NONE;  /* the default finalize does nothing */
    PyObject *r = source_call(st, srcobj, 0);
    if (r != NULL) {
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_GeneratorExit))
        return NULL;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *phase = PyUnicode_FromString("finalize");
    int rc = -1;
    if (phase != NULL && st->ctx_report == NULL)
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine is not configured");
    else if (phase != NULL) {
        /* MainContext._report(exc, src, "finalize") */
        PyObject *argv[4] = {(PyObject *)self, exc ? exc : Py_None, srcobj, phase};
        r = PyObject_Vectorcall(st->ctx_report, argv, 4, NULL);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_XDECREF(phase);
    Py_XDECREF(exc);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ----------------------------------------------------- collect and destroy, in C */

/* Deadlines.pop_due(now) without the list: each due live source is marked ready (or
 * queued as due while blocked), earliest first.  A failure leaves the sources not yet
 * popped in the heap. */
static int
pop_due_into(ContextObject *self, double now)
{
    while (self->ndl > 0 && self->dl[0].when <= now) {
        int live = dl_live(&self->dl[0]);
        SourceObject *src = dl_pop_head(self);  /* the heap's reference is ours now */
        if (!live) {
            self->dl_stale--;  /* dropped lazily earlier */
            Py_DECREF(src);
            continue;
        }
        src->in_heap = 0;
        int rc = 0;
        if (src->blocked) {
            PyObject *due = REQUIRED(self, blocked_due, "_blocked_due");
            rc = due == NULL ? -1 : PyList_Append(due, (PyObject *)src);
        }
        else if (!src->ready) {
            rc = mark_ready(self, (PyObject *)src);
            src->ready_by_time = src->ready;
        }
        else if (src->ready_by_child) {
            /* due itself: ready in its own right now, not only through a child */
            src->ready_by_child = 0;
            src->ready_by_time = 1;
        }
        Py_DECREF(src);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* MainContext._collect: foreign ops, the cached time, bottom halves, due ready times. */
static PyObject *
ctx_collect(ContextObject *self, PyObject *unused)
{
    ModState *st = self->st;
    int ops = waker_ops_pending(self);
    if (ops < 0 || (ops && upcall_void(st->waker_run_ops, "waker_run_ops", self->waker, NULL, NULL) < 0))
        return NULL;
    if (read_clock(self) < 0)
        return NULL;
    double now = self->now;
    int bh = bh_pending(self);
    if (bh < 0)
        return NULL;
    if (bh) {
        PyObject *bsrc = bh_carrier_source(st, self->bh);
        int rc = bsrc ? mark_ready(self, bsrc) : -1;
        Py_XDECREF(bsrc);
        if (rc < 0)
            return NULL;
    }
    if (dl_head(self) <= now && pop_due_into(self, now) < 0)
        return NULL;
    return PyFloat_FromDouble(now);
}

/* Source.destroy for a source whose class keeps it, from the core (owner thread). */
static int
destroy_source(SourceObject *src)
{
    ModState *st = src->st;
    PyObject *srcobj = (PyObject *)src;
    if (!(source_vtable(st, Py_TYPE(src)) & VT_DESTROY_DEFAULT) || !is_context(st, src->context))
        return source_call_destroy(st, srcobj);
    if (src->destroyed)
        return 0;
    ContextObject *ctx = (ContextObject *)src->context;
    /* another thread owns the context: the Python method posts the removal */
    int owner = context_owner(st, (PyObject *)ctx);
    if (owner < 0)
        return -1;
    int unowned = owner == OWNER_NONE;
    if (owner == OWNER_OTHER || IS_NONE(ctx->waker) || ctx->sources == NULL
            || !PyDict_CheckExact(ctx->sources))
        return source_call_destroy(st, srcobj);  /* the reference, in states it knows */
    WakerObject *waker = waker_of(st, ctx->waker);
    if (waker == NULL)
        return -1;
    PyObject *sources = ctx->sources;
    src->destroyed = 1;
    Py_INCREF(ctx);
    Py_INCREF(srcobj);
    Py_INCREF(waker);
    Py_INCREF(sources);
    int rc = -1;
    if (waker_acquire(st, waker) < 0)
        goto out;
    PyObject *key = PyLong_FromSsize_t(src->id);
    int drc = -1;
    if (key != NULL) {
        PyObject *cur = PyDict_GetItemWithError(sources, key);
        drc = cur == srcobj ? PyDict_DelItem(sources, key) : (PyErr_Occurred() ? -1 : 0);
        Py_DECREF(key);
    }
    if (waker_release(st, waker, drc) < 0)
        goto out;
    int is_closed = ctx->closed;
    PyObject *r = ctx_remove_source(ctx, srcobj);
    if (r == NULL)
        goto out;
    Py_DECREF(r);
    rc = 0;
    if (!is_closed && unowned)
        rc = timers_notify(st, (PyObject *)waker);
out:
    Py_DECREF(sources);
    Py_DECREF(waker);
    Py_DECREF(srcobj);
    Py_DECREF(ctx);
    return rc;
}

/* The part of _PyCore._attach under the context's lock: the next free source id
 * (GLib's: 32 bits, 0 never used) in *sid, src entered under it in _sources and bound to
 * the context.  A closed context, or a closed loop that refuses new work (see
 * MainContext._check_loop_open; a loop's own context is closed with it), refuses the
 * attach before anything changes.  0, or -1 with an exception. */
static int
attach_take_id(ContextObject *self, SourceObject *src, PyObject *sources, long *sid)
{
    ModState *st = self->st;
    PyObject *me = (PyObject *)self;
    *sid = -1;
    if (self->closed || self->closing) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext is closed");
        return -1;
    }
    if (!self->owned_by_loop && upcall_void(st->ctx_check_loop_open, "ctx_check_loop_open", me, NULL, NULL) < 0)
        return -1;
    long id = (long)(self->next_id & 0xFFFFFFFFL);
    for (; id >= 0; id = (id + 1) & 0xFFFFFFFFL) {
        PyObject *key = PyLong_FromLong(id);
        if (key == NULL)
            return -1;
        int taken = id == 0 ? 1 : PyDict_Contains(sources, key);
        if (taken != 0) {
            Py_DECREF(key);
            if (taken < 0)
                return -1;
            continue;
        }
        int rc = PyDict_SetItem(sources, key, (PyObject *)src);
        if (rc == 0)
            self->next_id = (id + 1) & 0xFFFFFFFFL;
        Py_DECREF(key);
        if (rc < 0)
            return -1;
        src->id = id;
        Py_INCREF(self);
        Py_XSETREF(src->context, me);
        break;
    }
    *sid = id;
    return 0;
}

/* _PyCore._attach: give src an id in this context and insert it (any thread). */
static PyObject *
ctx_attach(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    if (!Source_Check(st, srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    WakerObject *waker = waker_of(st, self->waker);
    if (waker == NULL)
        return NULL;
    PyObject *sources = REQUIRED(self, sources, "_sources");
    if (sources == NULL)
        return NULL;
    if (!PyDict_Check(sources)) {
        PyErr_SetString(PyExc_TypeError, "MainContext._sources must be a dict");
        return NULL;
    }
    Py_INCREF(waker);
    Py_INCREF(sources);
    PyObject *result = NULL;
    if (waker_acquire(st, waker) < 0)
        goto out;
    long sid;
    int rc = attach_take_id(self, (SourceObject *)srcobj, sources, &sid);
    if (waker_release(st, waker, rc) < 0)
        goto out;
    /* _local_or_post, without a closure: insert here, or post it to the owner */
    int owner = context_owner(st, (PyObject *)self);
    if (owner < 0)
        goto out;
    if (owner == OWNER_OTHER) {
        rc = upcall_void(st->ctx_post_insert, "ctx_post_insert", (PyObject *)self, srcobj, NULL);
    }
    else {
        PyObject *r = ctx_insert(self, srcobj);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
        if (rc == 0 && owner == OWNER_NONE)  /* a thread may be starting to block */
            rc = timers_notify(st, (PyObject *)waker);
    }
    if (rc == 0)
        result = PyLong_FromLong(sid);
out:
    Py_DECREF(sources);
    Py_DECREF(waker);
    return result;
}
