/* aioqloop._cengine, part waker.h: WakerCore, the hot state of aioqloop._waker.Waker (its
 * base; GLib's GWakeup with QEMU's notify_me handshake): the "may sleep" flag the
 * iteration publishes around its poll, the "a write is outstanding" flag, and the queue
 * of operations posted by other threads, as C fields of the same names.  The handshake's
 * rules stay in Python (Waker.notify, drain, post); the iteration reads and writes the
 * fields here without attribute lookups.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

struct WakerObject {
    PyObject_HEAD
    PyObject *ops;       /* deque of operations posted by other threads */
    PyObject *lock;      /* the threading.Lock guarding the flags and the queue */
    char poll_waiting;   /* QEMU's notify_me: the loop may sleep, producers must write */
    char notified;       /* QEMU's notified: a write is outstanding, not drained yet */
    char closed;         /* closed: later notifications are ignored, posts refused */
};

#define WAKER_FIELDS(X) X(ops) X(lock)
GC_FUNCTIONS(waker, WakerObject, WAKER_FIELDS)

/* The two flags take any object (their truth), as the Python attributes did. */
#define WAKER_FLAG(field)                                                   \
    static PyObject *                                                      \
    waker_get_##field(WakerObject *self, void *closure)                    \
    {                                                                      \
        return PyBool_FromLong(self->field);                               \
    }                                                                      \
    static int                                                             \
    waker_set_##field(WakerObject *self, PyObject *value, void *closure)   \
    {                                                                      \
        if (value == NULL) {                                               \
            PyErr_SetString(PyExc_AttributeError, "cannot delete " #field); \
            return -1;                                                     \
        }                                                                  \
        int t = PyObject_IsTrue(value);                                    \
        if (t < 0)                                                         \
            return -1;                                                     \
        self->field = (char)t;                                             \
        return 0;                                                          \
    }
WAKER_FLAG(poll_waiting)
WAKER_FLAG(notified)
WAKER_FLAG(closed)

static PyGetSetDef waker_getset[] = {
    {"poll_waiting", (getter)waker_get_poll_waiting, (setter)waker_set_poll_waiting,
     "The loop may be sleeping: a producer must write (QEMU's notify_me).", NULL},
    {"notified", (getter)waker_get_notified, (setter)waker_set_notified,
     "A write is outstanding and not yet drained (QEMU's notified).", NULL},
    {"_closed", (getter)waker_get_closed, (setter)waker_set_closed,
     "Closed: later notifications are ignored and posts refused.", NULL},
    {NULL}
};

static PyMemberDef waker_members[] = {
    {"ops", T_OBJECT_EX, offsetof(WakerObject, ops), 0, NULL},
    {"lock", T_OBJECT_EX, offsetof(WakerObject, lock), 0, NULL},
    {NULL}
};

static PyType_Slot waker_slots[] = {
    {Py_tp_doc, (void *)"The hot state of a context's Waker as C fields (base of Waker)."},
    {Py_tp_traverse, (void *)waker_traverse},
    {Py_tp_clear, (void *)waker_clear},
    {Py_tp_dealloc, (void *)waker_dealloc},
    {Py_tp_members, waker_members},
    {Py_tp_getset, waker_getset},
    {Py_tp_new, (void *)PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec waker_spec = {
    .name = "aioqloop._cengine.WakerCore",
    .basicsize = sizeof(WakerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = waker_slots,
};

/* A context's waker as the C type; NULL with a TypeError (or the RuntimeError of a
 * closed context, whose waker is gone) when it is not one. */
static WakerObject *
waker_of(ModState *st, PyObject *w)
{
    if (IS_NONE(w)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext is closed");
        return NULL;
    }
    if (!PyObject_TypeCheck(w, st->WakerType)) {
        PyErr_Format(PyExc_TypeError, "expected an aioqloop Waker, not %.100s",
                     Py_TYPE(w)->tp_name);
        return NULL;
    }
    return (WakerObject *)w;
}

/* Call one of the lock's methods (configured: _thread.LockType's acquire, release or
 * locked) on the waker's lock: a new reference, or NULL with an exception. */
static PyObject *
waker_lock_call(WakerObject *w, PyObject *method)
{
    PyObject *lock = required_field(w->lock, (PyObject *)w, "lock");
    if (lock == NULL)
        return NULL;
    if (method == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine: the lock is not configured");
        return NULL;
    }
    Py_INCREF(lock);  /* the call may release the GIL and another thread replace it */
    PyObject *r = PyObject_Vectorcall(method, &lock, 1, NULL);
    Py_DECREF(lock);
    return r;
}

/* with waker.lock: -- acquire (0, or -1 with an exception) ... */
static int
waker_acquire(ModState *st, WakerObject *w)
{
    PyObject *r = waker_lock_call(w, st->lock_acquire);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ... and release, keeping an exception raised while the lock was held (as a finally
 * block does): -1 if an exception is pending afterwards. */
static int
waker_release(ModState *st, WakerObject *w, int rc)
{
    PyObject *saved = PyErr_GetRaisedException();
    PyObject *r = waker_lock_call(w, st->lock_release);
    Py_XDECREF(r);
    return finish_cleanup(saved, r == NULL ? -1 : 0) < 0 || rc < 0 ? -1 : 0;
}

/* An upcall through a function configure() handed the core (a plain function of the
 * project's own Python code: a Waker or context method, a deque method), called as
 * fn(obj) or fn(obj, arg) without a name lookup: 0, or -1 with an exception. */
static int
upcall(PyObject *fn, PyObject *obj, PyObject *arg)
{
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine is not configured");
        return -1;
    }
    PyObject *argv[2] = {obj, arg};
    PyObject *r = PyObject_Vectorcall(fn, argv, arg == NULL ? 1 : 2, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The context's waker as the C type, or NULL (no exception) if it is something else. */
static inline WakerObject *
ctx_waker(ContextObject *self)
{
    PyObject *w = self->waker;
    if (w == NULL || !PyObject_TypeCheck(w, self->st->WakerType))
        return NULL;
    return (WakerObject *)w;
}

/* Truth of the waker's ops (operations posted by other threads); 0 without a waker. */
static int
waker_ops_pending(ContextObject *self)
{
    if (IS_NONE(self->waker))
        return 0;
    WakerObject *w = waker_of(self->st, self->waker);
    if (w == NULL)
        return -1;
    if (w->ops == NULL) {
        PyErr_SetString(PyExc_AttributeError, "ops");
        return -1;
    }
    return PyObject_IsTrue(w->ops);
}
