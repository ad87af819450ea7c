/* aioqloop._cengine, part bh.h: BHCore: a QEMU bottom half's state and qemu_bh_schedule (util/async.c), carried by one
 * source of the context.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* -------------------------------------------------------------------- BHCore */
/* A bottom half's state and qemu_bh_schedule (aioqloop.bottomhalf.BottomHalf): any
 * thread schedules; the context's thread runs it through the carrier source. */
struct BHObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    PyObject *callback, *args, *ctx, *name;
    char scheduled, deleted, oneshot;
};


#define BH_FIELDS(X) \
    X(callback) X(args) X(ctx) X(name)
GC_FUNCTIONS(bh, BHObject, BH_FIELDS)

static PyObject *
bh_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    BHObject *self = (BHObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->st = st;
    return (PyObject *)self;
}

/* The part of qemu_bh_schedule under the context's lock: refuse a closed context, queue
 * the bottom half once on the carrier, wake the loop from another thread.  1: on the
 * context's own thread, *source (new) is the carrier's source to mark ready after the
 * lock; 0: done; -1 with an exception. */
static int
bh_enqueue_locked(BHObject *self, PyObject *ctx, PyObject *carrier, PyObject *waker,
                  PyObject **source)
{
    ModState *st = self->st;
    int closed = attr_truth(waker, st->s_closed_attr);
    if (closed > 0)
        PyErr_Format(PyExc_RuntimeError, "schedule() of %R: its MainContext is closed",
                     (PyObject *)self);
    if (closed != 0)
        return -1;
    if (self->scheduled)
        return 0;
    if (IS_NONE(carrier)) {
        PyErr_SetString(PyExc_RuntimeError, "the context has no bottom-half carrier");
        return -1;
    }
    /* refused before anything changes: work nothing would ever run (a loop's own
     * context is closed with its loop, and the waker with it) */
    int own = attr_truth(ctx, st->s_owned_by_loop);
    if (own < 0 || (!own && call_method_void(ctx, st->s_check_loop_open,
                                             NULL, NULL, NULL) < 0))
        return -1;
    self->scheduled = 1;
    PyObject *pending = PyObject_GetAttr(carrier, st->s_pending_attr);
    long n = pending ? PyLong_AsLong(pending) : -1;
    Py_XDECREF(pending);
    if (n == -1 && PyErr_Occurred())
        return -1;
    PyObject *queue = PyObject_GetAttr(carrier, st->s_queue);
    if (queue == NULL)
        return -1;
    int rc = 0;
    if (n == 0)  /* only cancelled entries can be left */
        rc = call_method_void(queue, st->s_clear, NULL, NULL, NULL);
    PyObject *np = rc == 0 ? PyLong_FromLong(n + 1) : NULL;
    rc = np == NULL || PyObject_SetAttr(carrier, st->s_pending_attr, np) < 0
         || call_method_void(queue, st->s_append, (PyObject *)self, NULL, NULL) < 0 ? -1 : 0;
    Py_XDECREF(np);
    Py_DECREF(queue);
    if (rc < 0)
        return -1;
    int owner = context_owner(st, ctx);
    if (owner < 0)
        return -1;
    if (owner != OWNER_THIS) {
        /* another thread (or an unowned context): wake the loop, once per burst */
        return call_method_void(waker, st->s_notify_locked, NULL, NULL, NULL);
    }
    *source = PyObject_GetAttr(carrier, st->s_bh_source);
    return *source == NULL ? -1 : 1;
}

/* BottomHalf.schedule (qemu_bh_schedule), from any thread. */
static PyObject *
bh_schedule(BHObject *self, PyObject *unused)
{
    ModState *st = self->st;
    if (self->deleted) {
        PyErr_Format(PyExc_RuntimeError, "schedule() on deleted %R", (PyObject *)self);
        return NULL;
    }
    PyObject *ctx = self->ctx;
    if (ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the bottom half has no context");
        return NULL;
    }
    Py_INCREF(ctx);
    PyObject *carrier = PyObject_GetAttr(ctx, st->s_bh);
    PyObject *waker = carrier ? PyObject_GetAttr(ctx, st->s_waker_attr) : NULL;
    PyObject *lock = waker ? PyObject_GetAttr(waker, st->s_lock) : NULL;
    PyObject *source = NULL;
    int rc = -1;
    if (lock != NULL && call_method_void(lock, st->s_acquire, NULL, NULL, NULL) == 0) {
        rc = bh_enqueue_locked(self, ctx, carrier, waker, &source);
        PyObject *saved = PyErr_GetRaisedException();
        if (finish_cleanup(saved, call_method_void(lock, st->s_release, NULL, NULL, NULL)) < 0)
            rc = -1;
    }
    if (rc > 0) {
        /* on the context's own thread the carrier is ready at once (FIFO with asyncio) */
        rc = is_context(st, ctx) ? mark_ready((ContextObject *)ctx, source)
                                 : call_method_void(ctx, st->s_mark_ready, source, NULL, NULL);
    }
    Py_XDECREF(source);
    Py_XDECREF(lock);
    Py_XDECREF(waker);
    Py_XDECREF(carrier);
    Py_DECREF(ctx);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef bh_methods[] = {
    {"schedule", (PyCFunction)bh_schedule, METH_NOARGS,
     "schedule($self, /)\n--\n\n"
     "Run the callback once on a coming iteration (any thread; idempotent).\n\n"
     "On the context's own thread the carrying source becomes ready at once, so the\n"
     "bottom half keeps its place among asyncio callbacks scheduled after it.  From\n"
     "another thread the loop is woken through the context's Waker, once per burst.\n"
     "Raises RuntimeError after delete() or once the context is closed."},
    {NULL}
};

#define BM(name, type, field) {name, type, offsetof(BHObject, field), 0, NULL}
static PyMemberDef bh_members[] = {
    BM("_callback", T_OBJECT_EX, callback),
    BM("_args", T_OBJECT_EX, args),
    BM("_ctx", T_OBJECT_EX, ctx),
    BM("_name", T_OBJECT_EX, name),
    BM("_scheduled", T_BOOL, scheduled),
    BM("_deleted", T_BOOL, deleted),
    BM("_oneshot", T_BOOL, oneshot),
    {NULL}
};

CORE_SPEC(bh, BHObject, "BHCore",
    "A bottom half's state and schedule(), as C (base of BottomHalf).",
    bh_new)
