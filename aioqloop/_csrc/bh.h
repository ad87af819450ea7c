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

/* ----------------------------------------------------------------- BHCarrierCore */
/* BHCarrierObject: see context.h (the iteration reads its count). */

#define BHCARRIER_FIELDS(X) X(source) X(queue)
GC_FUNCTIONS(bhcarrier, BHCarrierObject, BHCARRIER_FIELDS)

static PyObject *
bhcarrier_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    BHCarrierObject *self = (BHCarrierObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->st = st;
    return (PyObject *)self;
}

static PyMemberDef bhcarrier_members[] = {
    {"source", T_OBJECT_EX, offsetof(BHCarrierObject, source), 0, NULL},
    {"queue", T_OBJECT_EX, offsetof(BHCarrierObject, queue), 0, NULL},
    {"pending", T_PYSSIZET, offsetof(BHCarrierObject, pending), 0, NULL},
    {NULL}
};

/* A context's carrier as the C type; NULL with an exception if it has none. */
static BHCarrierObject *
carrier_of(ModState *st, PyObject *carrier)
{
    return (BHCarrierObject *)core_part(carrier, st->BHCarrierType,
                                        "the context has no bottom-half carrier",
                                        "a bottom-half carrier");
}

/* The carrier's source (a new reference), or NULL with an exception. */
static PyObject *
bh_carrier_source(ModState *st, PyObject *carrierobj)
{
    BHCarrierObject *carrier = carrier_of(st, carrierobj);
    PyObject *src = carrier == NULL ? NULL
                    : required_field(carrier->source, carrierobj, "source");
    Py_XINCREF(src);
    return src;
}

/* Call a configured deque method (append, clear) on the carrier's queue. */
static int
carrier_queue_call(BHCarrierObject *c, PyObject *fn, PyObject *arg)
{
    PyObject *queue = required_field(c->queue, (PyObject *)c, "queue");
    if (queue == NULL)
        return -1;
    Py_INCREF(queue);
    int rc = upcall_void(fn, "fn", queue, arg, NULL);
    Py_DECREF(queue);
    return rc;
}

/* The part of qemu_bh_schedule under the context's lock: refuse a closed context, queue
 * the bottom half once on the carrier, wake the loop from another thread.  1: on the
 * context's own thread, *source (new) is the carrier's source to mark ready after the
 * lock; 0: done; -1 with an exception. */
static int
bh_enqueue_locked(BHObject *self, ContextObject *ctx, PyObject *carrierobj, WakerObject *waker,
                  PyObject **source)
{
    ModState *st = self->st;
    if (waker->closed) {
        PyErr_Format(PyExc_RuntimeError, "schedule() of %R: its MainContext is closed",
                     (PyObject *)self);
        return -1;
    }
    if (self->scheduled)
        return 0;
    BHCarrierObject *carrier = carrier_of(st, carrierobj);
    if (carrier == NULL)
        return -1;
    /* refused before anything changes: work nothing would ever run (a loop's own
     * context is closed with its loop, and the waker with it) */
    if (!ctx->owned_by_loop && upcall_void(st->ctx_check_loop_open, "ctx_check_loop_open", (PyObject *)ctx, NULL, NULL) < 0)
        return -1;
    Py_INCREF(carrier);  /* the upcall above may have replaced the context's */
    int rc = 0;
    if (carrier->pending == 0)  /* only cancelled entries can be left */
        rc = carrier_queue_call(carrier, st->deque_clear, NULL);
    if (rc == 0)
        rc = carrier_queue_call(carrier, st->deque_append, (PyObject *)self);
    if (rc == 0) {
        self->scheduled = 1;
        carrier->pending++;
        *source = required_field(carrier->source, (PyObject *)carrier, "source");
        Py_XINCREF(*source);
        if (*source == NULL)
            rc = -1;
    }
    Py_DECREF(carrier);
    if (rc < 0)
        return -1;
    int owner = context_owner(st, (PyObject *)ctx);
    if (owner < 0 || owner == OWNER_THIS)
        return owner < 0 ? -1 : 1;
    /* another thread (or an unowned context): wake the loop, once per burst --
     * Waker.notify_locked, whose early return is taken here without a call */
    Py_CLEAR(*source);
    if (waker->closed || waker->notified || !waker->poll_waiting)
        return 0;
    return upcall_void(st->waker_notify_locked, "waker_notify_locked", (PyObject *)waker, NULL, NULL);
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
    PyObject *ctxobj = self->ctx;
    if (ctxobj == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the bottom half has no context");
        return NULL;
    }
    if (!is_context(st, ctxobj)) {
        PyErr_Format(PyExc_TypeError, "the bottom half's context is a %.100s, not a "
                     "MainContext", Py_TYPE(ctxobj)->tp_name);
        return NULL;
    }
    ContextObject *ctx = (ContextObject *)ctxobj;
    WakerObject *waker = waker_of(st, ctx->waker);
    if (waker == NULL)
        return NULL;
    PyObject *carrier = NULL;
    Py_INCREF(ctx);
    Py_INCREF(waker);
    PyObject *source = NULL;
    int rc = waker_acquire(st, waker);
    if (rc == 0) {
        /* read under the lock: _BHSource.ensure may replace the carrier */
        carrier = ctx->bh;
        Py_XINCREF(carrier);
        rc = bh_enqueue_locked(self, ctx, carrier, waker, &source);
        if (waker_release(st, waker, rc) < 0)
            rc = -1;
    }
    /* on the context's own thread the carrier is ready at once (FIFO with asyncio) */
    if (rc > 0)
        rc = mark_ready(ctx, source);
    Py_XDECREF(source);
    Py_DECREF(waker);
    Py_XDECREF(carrier);
    Py_DECREF(ctx);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _BHCarrier._run_one(ctx, src, bh): run one bottom half of a batch (QEMU's
 * aio_bh_call), on the context's thread: unless it was cancelled meanwhile, it leaves
 * the scheduled set under the lock and its callback runs; an exception other than
 * KeyboardInterrupt or SystemExit is reported through the context, naming it. */
static PyObject *
bhcarrier_run_one(BHCarrierObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ModState *st = self->st;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_run_one() takes 3 arguments (ctx, src, bh)");
        return NULL;
    }
    PyObject *ctxobj = args[0], *src = args[1];
    if (!is_context(st, ctxobj) || !PyObject_TypeCheck(args[2], st->BHType)) {
        PyErr_SetString(PyExc_TypeError, "_run_one() takes a MainContext, a source and a "
                        "BottomHalf");
        return NULL;
    }
    BHObject *bh = (BHObject *)args[2];
    WakerObject *waker = waker_of(st, ((ContextObject *)ctxobj)->waker);
    if (waker == NULL)
        return NULL;
    Py_INCREF(waker);
    int rc = waker_acquire(st, waker);
    int run = 0;
    if (rc == 0) {
        if (bh->scheduled) {
            bh->scheduled = 0;
            self->pending--;
            run = 1;
        }
        rc = waker_release(st, waker, 0);
    }
    Py_DECREF(waker);
    if (rc < 0)
        return NULL;
    if (!run || bh->deleted)
        Py_RETURN_NONE;
    if (bh->oneshot)
        bh->deleted = 1;
    PyObject *callback = REQUIRED(bh, callback, "_callback");
    PyObject *cargs = callback ? REQUIRED(bh, args, "_args") : NULL;
    if (cargs != NULL && !PyTuple_Check(cargs)) {
        PyErr_SetString(PyExc_TypeError, "BottomHalf._args must be a tuple");
        cargs = NULL;
    }
    if (cargs == NULL)
        return NULL;
    Py_INCREF(callback);
    Py_INCREF(cargs);
    PyObject *r = PyObject_Call(callback, cargs, NULL);
    Py_DECREF(cargs);
    if (r != NULL || PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        Py_DECREF(callback);
        Py_XDECREF(r);
        return r == NULL ? NULL : Py_NewRef(Py_None);
    }
    /* ctx._report(exc, src, f"bottom half {name!r}", destroy=False, callback=callback) */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *what = PyUnicode_FromFormat("bottom half %R", bh->name ? bh->name : Py_None);
    PyObject *kw_destroy = what ? PyUnicode_InternFromString("destroy") : NULL;
    PyObject *kw_callback = kw_destroy ? PyUnicode_InternFromString("callback") : NULL;
    PyObject *kwnames = kw_callback ? PyTuple_Pack(2, kw_destroy, kw_callback) : NULL;
    if (kwnames != NULL && st->ctx_report == NULL)
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine is not configured");
    else if (kwnames != NULL) {
        PyObject *argv[6] = {ctxobj, exc ? exc : Py_None, src, what, Py_False, callback};
        r = PyObject_Vectorcall(st->ctx_report, argv, 4, kwnames);
    }
    Py_XDECREF(kwnames);
    Py_XDECREF(kw_callback);
    Py_XDECREF(kw_destroy);
    Py_XDECREF(what);
    Py_XDECREF(exc);
    Py_DECREF(callback);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef bhcarrier_methods[] = {
    {"_run_one", (PyCFunction)(void (*)(void))bhcarrier_run_one, METH_FASTCALL,
     "_run_one($self, ctx, src, bh, /)\n--\n\n"
     "Run one bottom half of a batch unless it was cancelled (context's thread)."},
    {NULL}
};

CORE_SPEC(bhcarrier, BHCarrierObject, "BHCarrierCore",
    "A context's bottom-half queue, count and carrying source, as C fields (base of "
    "_BHCarrier).",
    bhcarrier_new)

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
