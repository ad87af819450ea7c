/* aioqloop._cengine, part source.h: SourceCore: the per-source state of a GSource (flags, ready time, priority, callback,
 * a timeout's interval, an fd watch), the base of aioqloop.Source.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* -------------------------------------------------------------------- SourceCore */
struct SourceObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    PyObject *context, *callback, *args, *parent, *order, *stats;
    PyObject *priority, *fds, *children, *name;
    PyObject *fd, *fileobj, *tag;   /* FdSource's watch (fields, so it needs no dict) */
    Py_ssize_t id, heap_seq, dispatching;
    double ready_time;
    double interval;                /* TimeoutSource's interval, seconds */
    char can_recurse, destroyed, finalized, ready, ready_by_time, ready_by_child;
    char blocked, ready_while_blocked, in_heap;
    /* in a dispatch batch and not dispatched yet: GLib's READY as the check left it,
     * which a ready time moved away or a ready child gone does not take back */
    char latched;
    char c_idle, c_survives;   /* class flags _idle / _survives_escape, read at creation */
    /* The ready queue of its priority (context.h): an intrusive list owned by the context,
     * which holds a reference while the source is queued.  rq_prio is the queue's
     * priority, kept so that leaving it never depends on _priority or _order. */
    SourceObject *rq_prev, *rq_next;
    ContextObject *rq_owner;  /* the context whose queue it is in (borrowed) */
    long rq_prio;
    char rq_queued;
};

/* What a source class's GSourceFuncs are (GLib's vtable): its class flags, and which of
 * the methods the core has fast paths for are the built-in ones. */
enum {
    VT_IDLE = 1,                 /* _idle: ready as soon as attached */
    VT_SURVIVES = 2,             /* _survives_escape */
    VT_HOOKS = 4,                /* _has_prepare or _has_check */
    VT_ATTACHED_DEFAULT = 8,     /* _attached is Source's */
    VT_ATTACHED_TIMEOUT = 16,    /* _attached is TimeoutSource's */
    VT_MAYBE_FINALIZE_DEFAULT = 32,
    VT_FINALIZE_DEFAULT = 64,    /* finalize is Source's (does nothing) */
    VT_DESTROY_DEFAULT = 128,
};

/* Is the class's version tag current?  A change to a class or a base zeroes it on
 * 3.12+; 3.10 and 3.11 may keep a stale tag and clear only the flag (which 3.13 no
 * longer sets). */
static inline int
vt_tag_valid(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030C0000
    return type->tp_version_tag != 0;
#else
    return type->tp_version_tag != 0
           && PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG);
#endif
}

/* The VT_* bits of a source class: the one place the core looks up a source's vtable
 * by name, once per class (a one-entry cache keyed by the class and its version tag,
 * which Python renews whenever the class or a base changes).  Also leaves the class's
 * finalize and destroy (borrowed from the class, NULL if none) in st->vt_finalize and
 * st->vt_destroy for source_call(). */
static int
source_vtable(ModState *st, PyTypeObject *type)
{
    if (type == st->vt_type && type->tp_version_tag == st->vt_tag && vt_tag_valid(type))
        return st->vt_bits;
    int bits = 0;
    /* the class flags _idle, _survives_escape, _has_prepare/_has_check, as the bits
     * Source.__init_subclass__ sums up in _core_flags */
    PyObject *flags = _PyType_Lookup(type, st->s_core_flags);
    if (flags != NULL && PyLong_Check(flags)) {
        long v = PyLong_AsLong(flags);
        if (v == -1 && PyErr_Occurred())
            PyErr_Clear();
        else
            bits |= (int)(v & (VT_IDLE | VT_SURVIVES | VT_HOOKS));
    }
    PyObject *attached = _PyType_Lookup(type, st->s_attached);
    if (attached != NULL && attached == st->default_attached)
        bits |= VT_ATTACHED_DEFAULT;
    if (attached != NULL && attached == st->timeout_attached)
        bits |= VT_ATTACHED_TIMEOUT;
    PyObject *fn = _PyType_Lookup(type, st->s_maybe_finalize);
    if (fn != NULL && fn == st->default_maybe_finalize)
        bits |= VT_MAYBE_FINALIZE_DEFAULT;
    st->vt_finalize = _PyType_Lookup(type, st->s_finalize);
    if (st->vt_finalize != NULL && st->vt_finalize == st->default_finalize)
        bits |= VT_FINALIZE_DEFAULT;
    st->vt_destroy = _PyType_Lookup(type, st->s_destroy);
    if (st->vt_destroy != NULL && st->vt_destroy == st->default_destroy)
        bits |= VT_DESTROY_DEFAULT;
    st->vt_type = NULL;
    if (vt_tag_valid(type)) {
        st->vt_type = type;  /* borrowed: only compared, and the tag is never reused */
        st->vt_tag = type->tp_version_tag;
    }
    st->vt_bits = bits;
    return bits;
}

/* Call fn, found on type(obj) (a class attribute), as obj.<name>(arg) does: a function
 * or a method descriptor gets obj first, another descriptor is bound first, anything
 * else is called as it is.  arg may be NULL (no argument).  A new reference or NULL. */
static PyObject *
call_class_attr(PyObject *fn, PyObject *obj, PyObject *arg)
{
    PyObject *argv[2] = {obj, arg};
    size_t n = arg == NULL ? 1 : 2;
    if (PyFunction_Check(fn) || Py_IS_TYPE(fn, &PyMethodDescr_Type))
        return PyObject_Vectorcall(fn, argv, n, NULL);
    descrgetfunc get = Py_TYPE(fn)->tp_descr_get;
    if (get == NULL)
        return PyObject_Vectorcall(fn, argv + 1, n - 1, NULL);
    PyObject *bound = get(fn, obj, (PyObject *)Py_TYPE(obj));
    if (bound == NULL)
        return NULL;
    PyObject *r = PyObject_Vectorcall(bound, argv + 1, n - 1, NULL);
    Py_DECREF(bound);
    return r;
}

/* src.finalize() or src.destroy() (GSourceFuncs' finalize; g_source_destroy) through the
 * class's method that source_vtable() found: a new reference, or NULL. */
static PyObject *
source_call(ModState *st, PyObject *src, int destroy)
{
    (void)source_vtable(st, Py_TYPE(src));
    PyObject *fn = destroy ? st->vt_destroy : st->vt_finalize;
    if (fn == NULL) {
        PyErr_Format(PyExc_AttributeError, "%.100s has no %s", Py_TYPE(src)->tp_name,
                     destroy ? "destroy" : "finalize");
        return NULL;
    }
    Py_INCREF(fn);  /* the call may change the class */
    PyObject *r = call_class_attr(fn, src, NULL);
    Py_DECREF(fn);
    return r;
}

static int
source_call_destroy(ModState *st, PyObject *src)
{
    PyObject *r = source_call(st, src, 1);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *
source_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    SourceObject *self = (SourceObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    self->args = PyTuple_New(0);
    self->order = PyTuple_New(0);
    /* no lists until the first fd or child is added (as the pure engine's defaults) */
    self->fds = PyTuple_New(0);
    self->children = PyTuple_New(0);
    if (self->args == NULL || self->order == NULL || self->fds == NULL
            || self->children == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->ready_time = -1.0;
    int vt = source_vtable(st, type);
    self->c_idle = (vt & VT_IDLE) != 0;
    self->c_survives = (vt & VT_SURVIVES) != 0;
    return (PyObject *)self;
}

#define SOURCE_FIELDS(X) \
    X(context) X(callback) X(args) X(parent) X(order) X(stats) X(priority) X(fds) \
    X(children) X(name) X(fd) X(fileobj) X(tag)
GC_FUNCTIONS(source, SourceObject, SOURCE_FIELDS)

#define SM(name, type, field) {name, type, offsetof(SourceObject, field), 0, NULL}
static PyMemberDef source_members[] = {
    SM("_context", T_OBJECT, context),
    SM("_callback", T_OBJECT, callback),
    SM("_args", T_OBJECT_EX, args),
    SM("_parent", T_OBJECT, parent),
    SM("_order", T_OBJECT_EX, order),
    SM("_stats", T_OBJECT, stats),
    SM("_priority", T_OBJECT_EX, priority),
    SM("_fds", T_OBJECT_EX, fds),
    SM("_children", T_OBJECT_EX, children),
    SM("_name", T_OBJECT_EX, name),
    SM("_fd", T_OBJECT_EX, fd),
    SM("_fileobj", T_OBJECT_EX, fileobj),
    SM("_tag", T_OBJECT_EX, tag),
    SM("_interval", T_DOUBLE, interval),
    SM("_id", T_PYSSIZET, id),
    SM("_heap_seq", T_PYSSIZET, heap_seq),
    SM("_dispatching", T_PYSSIZET, dispatching),
    SM("_ready_time", T_DOUBLE, ready_time),
    SM("_can_recurse", T_BOOL, can_recurse),
    SM("_destroyed", T_BOOL, destroyed),
    SM("_finalized", T_BOOL, finalized),
    SM("_ready", T_BOOL, ready),
    SM("_ready_by_time", T_BOOL, ready_by_time),
    SM("_ready_by_child", T_BOOL, ready_by_child),
    SM("_blocked", T_BOOL, blocked),
    SM("_ready_while_blocked", T_BOOL, ready_while_blocked),
    SM("_in_heap", T_BOOL, in_heap),
    SM("_latched", T_BOOL, latched),
    {NULL}
};

static PyMethodDef source_methods[] = {{NULL}};

CORE_SPEC(source, SourceObject, "SourceCore",
    "The per-source state of a GSource, as C fields (base of aioqloop.Source).",
    source_new)
