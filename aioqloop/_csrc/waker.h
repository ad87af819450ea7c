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
    char poll_waiting;   /* QEMU's notify_me: the loop may sleep, producers must write */
    char notified;       /* QEMU's notified: a write is outstanding, not drained yet */
};

#define WAKER_FIELDS(X) X(ops)
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

static PyGetSetDef waker_getset[] = {
    {"poll_waiting", (getter)waker_get_poll_waiting, (setter)waker_set_poll_waiting,
     "The loop may be sleeping: a producer must write (QEMU's notify_me).", NULL},
    {"notified", (getter)waker_get_notified, (setter)waker_set_notified,
     "A write is outstanding and not yet drained (QEMU's notified).", NULL},
    {NULL}
};

static PyMemberDef waker_members[] = {
    {"ops", T_OBJECT_EX, offsetof(WakerObject, ops), 0, NULL},
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
    WakerObject *w = ctx_waker(self);
    if (w == NULL)
        return nonempty_attr(self->waker, self->st->s_ops);
    if (w->ops == NULL) {
        PyErr_SetString(PyExc_AttributeError, "ops");
        return -1;
    }
    return PyObject_IsTrue(w->ops);
}
