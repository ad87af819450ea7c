/* aioqloop._cengine, part context.h: ContextCore, its object and its ready sets: GLib's READY flag on a source and its
 * ancestors (g_source_set_ready_time's effect, the ready lists of g_main_context_check).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ------------------------------------------------------------------- ContextCore */
struct ContextObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    PyObject *ready;           /* dict: priority -> dict[Source, None] */
    PyObject *blocked, *blocked_due;
    PyObject *gate, *port, *fds, *source_ready, *deadlines, *waker, *bh;
    PyObject *prepare_hooks, *check_hooks, *clock;
    PyObject *spare_bucket;    /* an empty ready bucket kept for reuse */
    PyObject *tap;             /* None, or the dispatch tap (aioqloop._trace) */
    double now, dispatch_time;
    Py_ssize_t in_iteration, serial, iterations;
    char in_hook;
};


#define CTX_FIELDS(X) \
    X(ready) X(blocked) X(blocked_due) X(gate) X(port) X(fds) X(source_ready) \
    X(deadlines) X(waker) X(bh) X(prepare_hooks) X(check_hooks) X(clock) \
    X(spare_bucket) X(tap)
GC_FUNCTIONS(ctx, ContextObject, CTX_FIELDS)

static PyObject *
ctx_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    self->ready = PyDict_New();
    self->blocked = PyList_New(0);
    self->blocked_due = PyList_New(0);
    if (!self->ready || !self->blocked || !self->blocked_due) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* The ready dict must be a dict of dicts (it always is; checked where it is read). */
static inline int
ready_ok(ContextObject *self)
{
    if (self->ready == NULL || !PyDict_CheckExact(self->ready)) {
        PyErr_SetString(PyExc_TypeError, "MainContext._ready must be a dict");
        return 0;
    }
    return 1;
}

/* Enter a source that just became READY in the ready bucket of its priority, and tell
 * the driver (its source_ready).  0, or -1 with an exception. */
static int
enter_ready(ContextObject *self, PyObject *srcobj, PyObject *prio)
{
    PyObject *bucket = PyDict_GetItemWithError(self->ready, prio);
    if (bucket == NULL) {
        if (PyErr_Occurred())
            return -1;
        /* the bucket emptied by the last dispatch, kept for this: no allocation per
         * dispatch of a source that re-arms itself */
        bucket = self->spare_bucket;
        self->spare_bucket = NULL;
        if (bucket == NULL && (bucket = PyDict_New()) == NULL)
            return -1;
        if (PyDict_SetItem(self->ready, prio, bucket) < 0) {
            Py_DECREF(bucket);
            return -1;
        }
    }
    else {
        Py_INCREF(bucket);
    }
    /* held: a source class's own __hash__ or __eq__ runs Python code here */
    int set = PyDict_SetItem(bucket, srcobj, Py_None);
    Py_DECREF(bucket);
    if (set < 0)
        return -1;
    PyObject *notify = self->source_ready;
    if (IS_NONE(notify))
        return 0;
    Py_INCREF(notify);
    PyObject *r = PyObject_CallOneArg(notify, prio);
    Py_DECREF(notify);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* _mark_ready: GLib's READY flag on src and its ancestors. */
static int
mark_ready(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    int via_child = 0;
    Py_INCREF(srcobj);
    while (!IS_NONE(srcobj)) {
        /* each time: the driver's source_ready, run for a child, may replace _ready */
        if (!ready_ok(self)) {
            Py_DECREF(srcobj);
            return -1;
        }
        if (!Source_Check(st, srcobj)) {
            PyErr_Format(PyExc_TypeError, "expected a Source, not %.100s",
                         Py_TYPE(srcobj)->tp_name);
            Py_DECREF(srcobj);
            return -1;
        }
        SourceObject *src = (SourceObject *)srcobj;
        if (src->destroyed)
            break;
        if (src->blocked) {
            src->ready_while_blocked = 1;
            break;
        }
        if (!src->ready) {
            src->ready = 1;
            src->ready_by_child = (char)via_child;
            PyObject *prio = src->priority;
            if (prio == NULL) {
                PyErr_SetString(PyExc_AttributeError, "_priority");
                Py_DECREF(srcobj);
                return -1;
            }
            Py_INCREF(prio);
            int rc = enter_ready(self, srcobj, prio);
            Py_DECREF(prio);
            if (rc < 0) {
                Py_DECREF(srcobj);
                return -1;
            }
        }
        else if (!via_child) {
            src->ready_by_child = 0;
        }
        via_child = 1;
        PyObject *parent = src->parent;
        Py_XINCREF(parent);
        Py_DECREF(srcobj);
        srcobj = parent;
        if (srcobj == NULL)
            return 0;
    }
    Py_DECREF(srcobj);
    return 0;
}

/* Remove src from the ready bucket of its priority (KeyError if absent and strict). */
static int
drop_ready(ContextObject *self, SourceObject *src, int strict)
{
    PyObject *prio = src->priority;
    if (prio == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_priority");
        return -1;
    }
    if (!ready_ok(self))
        return -1;
    Py_INCREF(prio);
    PyObject *bucket = PyDict_GetItemWithError(self->ready, prio);
    if (bucket == NULL) {
        if (!PyErr_Occurred() && strict)
            PyErr_SetObject(PyExc_KeyError, prio);
        Py_DECREF(prio);
        return (strict || PyErr_Occurred()) ? -1 : 0;
    }
    Py_INCREF(bucket);
    int rc = 0;
    if (PyDict_DelItem(bucket, (PyObject *)src) < 0) {
        if (strict || !PyErr_ExceptionMatches(PyExc_KeyError))
            rc = -1;
        else
            PyErr_Clear();
    }
    if (rc == 0 && PyDict_GET_SIZE(bucket) == 0) {
        rc = PyDict_DelItem(self->ready, prio);
        /* kept only if nothing else holds it (our reference is the last one) */
        if (rc == 0 && self->spare_bucket == NULL && PyDict_CheckExact(bucket)
                && Py_REFCNT(bucket) == 1) {
            Py_INCREF(bucket);
            self->spare_bucket = bucket;  /* reused by the next mark_ready */
        }
    }
    Py_DECREF(bucket);
    Py_DECREF(prio);
    return rc;
}

static int
unmark_ready(ContextObject *self, SourceObject *src)
{
    src->ready_by_time = src->ready_by_child = 0;
    if (src->ready) {
        src->ready = 0;
        return drop_ready(self, src, 0);
    }
    return 0;
}

static PyObject *
ctx_mark_ready(ContextObject *self, PyObject *src)
{
    if (mark_ready(self, src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ctx_unmark_ready(ContextObject *self, PyObject *src)
{
    ModState *st = self->st;
    if (!Source_Check(st, src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    if (unmark_ready(self, (SourceObject *)src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Which thread owns a context (g_main_context_acquire's owner, MainContext._owner). */
enum { OWNER_NONE, OWNER_THIS, OWNER_OTHER };

/* OWNER_NONE, OWNER_THIS or OWNER_OTHER; -1 with an exception. */
static int
context_owner(ModState *st, PyObject *ctx)
{
    PyObject *owner = PyObject_GetAttr(ctx, st->s_owner);
    if (owner == NULL)
        return -1;
    int who = OWNER_NONE;
    if (owner != Py_None) {
        unsigned long id = PyLong_AsUnsignedLong(owner);
        if (id == (unsigned long)-1 && PyErr_Occurred())
            who = -1;
        else
            who = id == PyThread_get_thread_ident() ? OWNER_THIS : OWNER_OTHER;
    }
    Py_DECREF(owner);
    return who;
}

/* Is o a ContextCore (MainContext)? */
static inline int
is_context(ModState *st, PyObject *o)
{
    return o != NULL && PyObject_TypeCheck(o, st->ContextType);
}
