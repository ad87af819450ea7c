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
    char c_idle, c_survives;   /* class flags _idle / _survives_escape, read at creation */
    /* The ready queue of its priority (context.h): an intrusive list owned by the context,
     * which holds a reference while the source is queued.  rq_prio is the queue's
     * priority, kept so that leaving it never depends on _priority or _order. */
    SourceObject *rq_prev, *rq_next;
    ContextObject *rq_owner;  /* the context whose queue it is in (borrowed) */
    long rq_prio;
    char rq_queued;
};

/* A class-level flag (_idle, _survives_escape), read once per source from its type. */
static int
class_flag(PyTypeObject *type, PyObject *name)
{
    PyObject *v = _PyType_Lookup(type, name);  /* borrowed; cached per type */
    if (v == NULL)
        return 0;
    int r = PyObject_IsTrue(v);
    if (r < 0) {
        PyErr_Clear();
        return 0;
    }
    return r;
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
    self->c_idle = (char)class_flag(type, st->s_idle);
    self->c_survives = (char)class_flag(type, st->s_survives);
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
    {NULL}
};

static PyMethodDef source_methods[] = {{NULL}};

CORE_SPEC(source, SourceObject, "SourceCore",
    "The per-source state of a GSource, as C fields (base of aioqloop.Source).",
    source_new)
