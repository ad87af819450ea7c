/* aioqloop._cengine, part waker.h: WakerCore, the hot state of aioqloop._waker.Waker (its
 * base; GLib's GWakeup with QEMU's notify_me handshake): the "may sleep" flag the
 * iteration publishes around its poll, the "a write is outstanding" flag, and the queue
 * of operations posted by other threads, as C fields of the same names.  The handshake's
 * rules stay in Python (Waker.notify, drain, post); the iteration reads and writes the
 * fields here without attribute lookups.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ------------------------------------------------------------------- WakerLock */
/* The lock of a context's waker (GLib's context mutex, for the parts QEMU guards with
 * its list lock): a plain thread lock owned by the core, so that attach, destroy and a
 * bottom half's schedule take it without a call.  Python sees it as Waker.lock, with
 * threading.Lock's interface (acquire, release, locked, a context manager); the pure
 * engine's Waker holds a threading.Lock there.  Held only for a few field updates. */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock tlock;
    char held;
} WakerLockObject;

/* Take the lock (blocking, the GIL released while waiting). */
static void
wlock_acquire(WakerLockObject *l)
{
    if (!PyThread_acquire_lock(l->tlock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(l->tlock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    l->held = 1;
}

static int
wlock_release(WakerLockObject *l)
{
    if (!l->held) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    l->held = 0;
    PyThread_release_lock(l->tlock);
    return 0;
}

static PyObject *
wlock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kw != NULL && PyDict_GET_SIZE(kw) != 0)) {
        PyErr_SetString(PyExc_TypeError, "WakerLock() takes no arguments");
        return NULL;
    }
    WakerLockObject *self = (WakerLockObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->tlock = PyThread_allocate_lock();
    if (self->tlock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void
wlock_dealloc(WakerLockObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    if (self->tlock != NULL) {
        if (self->held)
            PyThread_release_lock(self->tlock);
        PyThread_free_lock(self->tlock);
    }
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *
wlock_py_acquire(WakerLockObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pd:acquire", kwlist, &blocking, &timeout))
        return NULL;
    if (!blocking && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    PyLockStatus r;
    if (!blocking) {
        r = PyThread_acquire_lock_timed(self->tlock, 0, 0);
    }
    else if (timeout == -1.0) {
        wlock_acquire(self);
        Py_RETURN_TRUE;
    }
    else {
        if (timeout * 1e6 > (double)PY_TIMEOUT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
            return NULL;
        }
        PY_TIMEOUT_T us = (PY_TIMEOUT_T)(timeout * 1e6);
        r = PyThread_acquire_lock_timed(self->tlock, 0, 0);
        if (r != PY_LOCK_ACQUIRED) {
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(self->tlock, us, 0);
            Py_END_ALLOW_THREADS
        }
    }
    if (r != PY_LOCK_ACQUIRED)
        Py_RETURN_FALSE;
    self->held = 1;
    Py_RETURN_TRUE;
}

static PyObject *
wlock_py_enter(WakerLockObject *self, PyObject *unused)
{
    wlock_acquire(self);
    Py_RETURN_TRUE;
}

static PyObject *
wlock_py_release(WakerLockObject *self, PyObject *unused)
{
    if (wlock_release(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
wlock_py_exit(WakerLockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return wlock_py_release(self, NULL);
}

static PyObject *
wlock_py_locked(WakerLockObject *self, PyObject *unused)
{
    return PyBool_FromLong(self->held);
}

static PyMethodDef wlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))wlock_py_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"
     "Take the lock, as threading.Lock.acquire; True if taken."},
    {"release", (PyCFunction)wlock_py_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the lock (RuntimeError if it is not held)."},
    {"locked", (PyCFunction)wlock_py_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nTrue while the lock is held."},
    {"__enter__", (PyCFunction)wlock_py_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nTake the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))wlock_py_exit, METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nRelease the lock."},
    {NULL}
};

static PyType_Slot wlock_slots[] = {
    {Py_tp_doc, (void *)"A Waker's lock, owned by the core (threading.Lock's interface)."},
    {Py_tp_dealloc, (void *)wlock_dealloc},
    {Py_tp_methods, wlock_methods},
    {Py_tp_new, (void *)wlock_new},
    {0, NULL},
};

static PyType_Spec wlock_spec = {
    .name = "aioqloop._cengine.WakerLock",
    .basicsize = sizeof(WakerLockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = wlock_slots,
};

struct WakerObject {
    PyObject_HEAD
    PyObject *ops;       /* deque of operations posted by other threads */
    PyObject *lock;      /* the WakerLock guarding the flags and the queue (made by new) */
    char poll_waiting;   /* QEMU's notify_me: the loop may sleep, producers must write */
    char notified;       /* QEMU's notified: a write is outstanding, not drained yet */
    char closed;         /* closed: later notifications are ignored, posts refused */
};

#define WAKER_FIELDS(X) X(ops) X(lock)
GC_FUNCTIONS(waker, WakerObject, WAKER_FIELDS)

static PyObject *
waker_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    WakerObject *self = (WakerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->lock = PyObject_CallNoArgs((PyObject *)st->WakerLockType);
    if (self->lock == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

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
    {"lock", T_OBJECT_EX, offsetof(WakerObject, lock), READONLY,
     "The lock guarding the flags and the queue (a WakerLock)."},
    {NULL}
};

static PyType_Slot waker_slots[] = {
    {Py_tp_doc, (void *)"The hot state of a context's Waker as C fields (base of Waker)."},
    {Py_tp_traverse, (void *)waker_traverse},
    {Py_tp_clear, (void *)waker_clear},
    {Py_tp_dealloc, (void *)waker_dealloc},
    {Py_tp_members, waker_members},
    {Py_tp_getset, waker_getset},
    {Py_tp_new, (void *)waker_new},
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
    return (WakerObject *)core_part(w, st->WakerType, "the MainContext is closed",
                                    "an aioqloop Waker");
}

/* The waker's lock, or NULL with an exception (a waker whose fields were cleared). */
static inline WakerLockObject *
waker_lock(WakerObject *w)
{
    return (WakerLockObject *)required_field(w->lock, (PyObject *)w, "lock");
}

/* with waker.lock: -- acquire (0, or -1 with an exception) ... */
static int
waker_acquire(ModState *st, WakerObject *w)
{
    WakerLockObject *l = waker_lock(w);
    if (l == NULL)
        return -1;
    wlock_acquire(l);
    return 0;
}

/* ... and release, keeping an exception raised while the lock was held (as a finally
 * block does): -1 if an exception is pending afterwards (or rc < 0). */
static int
waker_release(ModState *st, WakerObject *w, int rc)
{
    WakerLockObject *l = waker_lock(w);
    if (l == NULL)
        return -1;
    PyObject *saved = PyErr_Occurred() ? PyErr_GetRaisedException() : NULL;
    int r = wlock_release(l);
    return finish_cleanup(saved, r) < 0 || rc < 0 ? -1 : 0;
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
