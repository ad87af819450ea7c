/* aioqloop._cengine: the compiled core of the engine.
 *
 * Hand-written C, chosen by measurement over a compiler pass: mypyc and Cython on the
 * interpreted-style modules gained 1.04-2.7x and changed behaviour (weak references,
 * class-level flags, instance patching), while the cost that matters is the interpreter
 * frames and attribute dictionaries of GLib's per-dispatch bookkeeping.  Here that
 * bookkeeping is plain C fields read directly:
 *
 *   SourceCore        the per-source state of GSource (flags, ready time, priority,
 *                     callback, a timeout's interval, an fd watch): base of Source;
 *   SourceStatistics  per-source counters, updated without allocating;
 *   ContextCore       the hot part of GMainContext: the ready sets, g_main_dispatch
 *                     with blocking, depth and statistics, check and the fast part of
 *                     prepare, g_main_context_iterate itself, due ready times, attach,
 *                     insert, remove and destroy of plain sources, fd results: base of
 *                     MainContext;
 *   HookCore          the stock base's selector hook (select -> iterate -> place, and
 *                     the select of the epoll set shared with asyncio);
 *   PlainCore         the plain driver's iteration (the uvloop base, any asyncio loop);
 *   BHCore            a bottom half's state and qemu_bh_schedule.
 *
 * The pure-Python engine (aioqloop/_dispatch.py, aioqloop/context.py, aioqloop/source.py)
 * is the reference: every method here has a Python twin with the same name and the same
 * rules, and the slow, rare paths (blocking a source tree, re-arming ready times,
 * reporting exceptions, prepare hooks) stay in Python and are called from here.  Both
 * engines run the same test suite.  Field names are those of the Python engine, exposed
 * as member descriptors, so the rest of the package reads `src._ready` either way.
 *
 * Threads: the fields belong to the thread that runs the context, like the Python
 * attributes they replace (other threads post through the context's Waker).  The module
 * is not declared free-threading safe; aioqloop picks the pure engine on such builds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <poll.h>
#include <sys/epoll.h>
#define EPOLLIN_BIT EPOLLIN
#define EPOLLOUT_BIT EPOLLOUT
#include <string.h>
#include <time.h>

#ifndef AIOQLOOP_SOURCE_HASH
#define AIOQLOOP_SOURCE_HASH ""
#endif
/* 1: built in place (an editable install, a checkout), whose sources may change under
 * the build, so aioqloop._engine compares SOURCE_HASH at import; 0: built for a wheel. */
#ifndef AIOQLOOP_INPLACE
#define AIOQLOOP_INPLACE 0
#endif

/* ------------------------------------------------------------------ configuration */
/* Set once by configure(), from the Python side of the engine. */
static PyObject *default_dispatch;   /* Source.dispatch (the plain function) */
static PyObject *default_set_ready_time;  /* Source.set_ready_time */
static PyObject *timeout_dispatch;   /* TimeoutSource.dispatch */
static PyObject *fd_dispatch;        /* FdSource.dispatch */
static PyObject *conditions;         /* tuple of 64 IOCondition values */
static PyObject *tls;                /* aioqloop._registry._tls */
static PyObject *warn_slow;          /* callable(src, elapsed) */
static PyObject *order_key;          /* callable(src) -> src._order */

static PyObject *s_current, *s_dispatch, *s_count_waited, *s_enter, *s_between, *s_leave;
static PyObject *s_block, *s_unblock, *s_report, *s_callback, *s_maybe_finalize;
static PyObject *s_slow_threshold, *s_destroy;
static PyObject *s_run_check_hooks, *s_deferred, *s_give_back, *s_entries, *s_prios;
static PyObject *s_ops, *s_pending, *s_prepare_slow, *s_masks, *s_poll_waiting, *s_loop;
static PyObject *s_loop_class, *s_rebind, *s_poll, *s_place, *s_block_kw, *s_dispatch_kw;
static PyObject *s_phase_dispatch, *s_set_ready_time;
static PyObject *s_revents, *s_key, *s_sort, *s_unpolled, *s_records, *s_wake_fd, *s_events;
static PyObject *s_source, *s_drain, *s_epoll, *s_last_audit, *s_audit, *s_audit_interval;
static PyObject *s_always, *s_mark_ready, *s_poll_ready_name, *s_apply_polled_name;
static PyObject *s_ctx_dispatch;
static PyObject *float_zero, *float_inf;

static double SLOW_FLOOR = 0.001;

/* The timer paths (see the section "timers" below): defined there, used here. */
static int timers_fast_clock(PyObject *clock, double *out);
static int timers_deadline_changed(PyObject *ctx, double when);
static PyObject *timers_prepare(PyObject *ctx, int deferred);
static int timers_next_deadline(PyObject *deadlines, double *out);
static PyObject *timers_order_key;
static int timers_notify(PyObject *waker);
static int timers_heappush(PyObject *heap, PyObject *entry);
static PyObject *timers_heappop(PyObject *heap);

static inline double
perf_now(void)
{
    /* time.perf_counter() is CLOCK_MONOTONIC on Linux; only differences are used. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* tp_traverse, tp_clear and tp_dealloc of a type whose object fields FIELDS(X) lists. */
#define VISIT_FIELD(f) Py_VISIT(self->f);
#define CLEAR_FIELD(f) Py_CLEAR(self->f);
#define GC_FUNCTIONS(prefix, Type, FIELDS)                                  \
    static int                                                             \
    prefix##_traverse(Type *self, visitproc visit, void *arg)              \
    {                                                                      \
        FIELDS(VISIT_FIELD)                                                \
        return 0;                                                          \
    }                                                                      \
    static int                                                             \
    prefix##_clear(Type *self)                                             \
    {                                                                      \
        FIELDS(CLEAR_FIELD)                                                \
        return 0;                                                          \
    }                                                                      \
    static void                                                            \
    prefix##_dealloc(Type *self)                                           \
    {                                                                      \
        PyObject_GC_UnTrack(self);                                         \
        prefix##_clear(self);                                              \
        Py_TYPE(self)->tp_free((PyObject *)self);                          \
    }

/* The type object of one of the core's GC-tracked, subclassable types. */
#define CORE_TYPE(prefix, Obj, pyname, doc, newfunc)                          \
    {                                                                       \
        PyVarObject_HEAD_INIT(NULL, 0)                                      \
        .tp_name = "aioqloop._cengine." pyname,                             \
        .tp_basicsize = sizeof(Obj),                                        \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
        .tp_doc = doc,                                                      \
        .tp_traverse = (traverseproc)prefix##_traverse,                     \
        .tp_clear = (inquiry)prefix##_clear,                                \
        .tp_dealloc = (destructor)prefix##_dealloc,                         \
        .tp_members = prefix##_members,                                     \
        .tp_methods = prefix##_methods,                                     \
        .tp_new = newfunc,                                                  \
    }

/* -------------------------------------------------------------- SourceStatistics */
typedef struct {
    PyObject_HEAD
    Py_ssize_t dispatches;
    Py_ssize_t waited;
    double dispatch_time;
    double max_dispatch_time;
} StatsObject;

static PyMemberDef stats_members[] = {
    {"dispatches", T_PYSSIZET, offsetof(StatsObject, dispatches), 0, NULL},
    {"waited", T_PYSSIZET, offsetof(StatsObject, waited), 0, NULL},
    {"dispatch_time", T_DOUBLE, offsetof(StatsObject, dispatch_time), 0, NULL},
    {"max_dispatch_time", T_DOUBLE, offsetof(StatsObject, max_dispatch_time), 0, NULL},
    {NULL}
};

static int
stats_init(PyObject *self, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "SourceStatistics() takes no arguments");
        return -1;
    }
    return 0;
}

static PyTypeObject StatsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aioqloop._cengine.SourceStatistics",
    .tp_basicsize = sizeof(StatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-source counters kept by the context (see MainContext.statistics).",
    .tp_members = stats_members,
    .tp_init = stats_init,
    .tp_new = PyType_GenericNew,
};

/* -------------------------------------------------------------------- SourceCore */
typedef struct {
    PyObject_HEAD
    PyObject *context, *callback, *args, *parent, *order, *stats;
    PyObject *priority, *fds, *children, *name;
    PyObject *fd, *fileobj, *tag;   /* FdSource's watch (fields, so it needs no dict) */
    Py_ssize_t id, heap_seq, dispatching;
    double ready_time;
    double interval;                /* TimeoutSource's interval, seconds */
    char can_recurse, destroyed, finalized, ready, ready_by_time, ready_by_child;
    char blocked, ready_while_blocked, in_heap;
    char c_idle, c_survives;   /* class flags _idle / _survives_escape, read at creation */
} SourceObject;

static PyTypeObject SourceType;
#define Source_Check(o) PyObject_TypeCheck((o), &SourceType)
#define IS_NONE(o) ((o) == NULL || (o) == Py_None)

/* A field that the object's __init__ sets, read where it must be there: the field
 * (borrowed), or NULL with a RuntimeError when it is not (the __init__ never ran, as in
 * T.__new__(T) or a subclass that skips it, or the attribute was deleted).  Every such
 * read goes through this: a half-made object raises, it never crashes. */
static PyObject *
required_field(PyObject *field, PyObject *owner, const char *name)
{
    if (field == NULL)
        PyErr_Format(PyExc_RuntimeError,
                     "%.100s object is not initialised: %s is not set (did its __init__ run?)",
                     Py_TYPE(owner)->tp_name, name);
    return field;
}
#define REQUIRED(obj, field, name) required_field((obj)->field, (PyObject *)(obj), (name))

static PyObject *s_idle, *s_survives;

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
    SourceObject *self = (SourceObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
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
    self->c_idle = (char)class_flag(type, s_idle);
    self->c_survives = (char)class_flag(type, s_survives);
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

static PyTypeObject SourceType = CORE_TYPE(source, SourceObject, "SourceCore",
    "The per-source state of a GSource, as C fields (base of aioqloop.Source).",
    source_new);

static inline Py_ssize_t
list_len(PyObject *o)
{
    if (o == NULL || o == Py_None)
        return 0;
    if (PyList_CheckExact(o))
        return PyList_GET_SIZE(o);
    return PyObject_Length(o);
}

/* ------------------------------------------------------------------- ContextCore */
typedef struct {
    PyObject_HEAD
    PyObject *ready;           /* dict: priority -> dict[Source, None] */
    PyObject *blocked, *blocked_due;
    PyObject *gate, *port, *fds, *source_ready, *deadlines, *waker, *bh;
    PyObject *prepare_hooks, *check_hooks, *clock;
    PyObject *spare_bucket;    /* an empty ready bucket kept for reuse */
    PyObject *tap;             /* None, or the dispatch tap (aioqloop._trace) */
    double now, dispatch_time;
    Py_ssize_t in_iteration, serial, iterations;
    char in_hook;
} ContextObject;

static PyTypeObject ContextType;

#define CTX_FIELDS(X) \
    X(ready) X(blocked) X(blocked_due) X(gate) X(port) X(fds) X(source_ready) \
    X(deadlines) X(waker) X(bh) X(prepare_hooks) X(check_hooks) X(clock) \
    X(spare_bucket) X(tap)
GC_FUNCTIONS(ctx, ContextObject, CTX_FIELDS)

static PyObject *
ctx_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
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

/* _mark_ready: GLib's READY flag on src and its ancestors. */
static int
mark_ready(ContextObject *self, PyObject *srcobj)
{
    int via_child = 0;
    Py_INCREF(srcobj);
    while (!IS_NONE(srcobj)) {
        /* each time: the driver's source_ready, run for a child, may replace _ready */
        if (!ready_ok(self)) {
            Py_DECREF(srcobj);
            return -1;
        }
        if (!Source_Check(srcobj)) {
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
            PyObject *bucket = PyDict_GetItemWithError(self->ready, prio);
            if (bucket == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(prio);
                    Py_DECREF(srcobj);
                    return -1;
                }
                /* the bucket emptied by the last dispatch, kept for this: no allocation
                 * per dispatch of a source that re-arms itself */
                bucket = self->spare_bucket;
                self->spare_bucket = NULL;
                if (bucket == NULL && (bucket = PyDict_New()) == NULL) {
                    Py_DECREF(prio);
                    Py_DECREF(srcobj);
                    return -1;
                }
                if (PyDict_SetItem(self->ready, prio, bucket) < 0) {
                    Py_DECREF(bucket);
                    Py_DECREF(prio);
                    Py_DECREF(srcobj);
                    return -1;
                }
            }
            else {
                Py_INCREF(bucket);
            }
            /* held: a source class's own __hash__ or __eq__ runs Python code here */
            int set = PyDict_SetItem(bucket, srcobj, Py_None);
            Py_DECREF(bucket);
            if (set < 0) {
                Py_DECREF(prio);
                Py_DECREF(srcobj);
                return -1;
            }
            PyObject *notify = self->source_ready;
            if (!IS_NONE(notify)) {
                Py_INCREF(notify);
                PyObject *r = PyObject_CallOneArg(notify, prio);
                Py_DECREF(notify);
                if (r == NULL) {
                    Py_DECREF(prio);
                    Py_DECREF(srcobj);
                    return -1;
                }
                Py_DECREF(r);
            }
            Py_DECREF(prio);
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
    if (!Source_Check(src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    if (unmark_ready(self, (SourceObject *)src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Call self.<name>(args...) and discard the result; -1 on error. */
static int
call_method_void(PyObject *obj, PyObject *name, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *r;
    if (a == NULL)
        r = PyObject_CallMethodNoArgs(obj, name);
    else if (b == NULL)
        r = PyObject_CallMethodOneArg(obj, name, a);
    else
        r = PyObject_CallMethodObjArgs(obj, name, a, b, c, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Truth of obj.<name>(); -1 on error. */
static int
call_truth(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(obj, name);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* Truth of obj.<name>(arg); -1 on error. */
static int
call_truth_arg(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *r = PyObject_CallMethodOneArg(obj, name, arg);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* Truth of obj.<name>; -1 on error. */
static int
attr_truth(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_GetAttr(obj, name);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static inline int
nonempty_attr(PyObject *obj, PyObject *name)
{
    if (IS_NONE(obj))
        return 0;
    return attr_truth(obj, name);
}

static int schedule_ready_time_c(ContextObject *self, SourceObject *src);
static int destroy_source(SourceObject *src);
static PyObject *ctx_collect(ContextObject *self, PyObject *unused);

/* Dispatcher._rearm: after a dispatch, clear revents and re-arm, keep or destroy src. */
static int
rearm(ContextObject *self, SourceObject *src, int keep, int premarked)
{
    Py_ssize_t nfds = list_len(src->fds);
    if (nfds < 0)
        return -1;
    if (nfds) {
        PyObject *fds = src->fds;
        Py_INCREF(fds);
        PyObject *it = PyObject_GetIter(fds);
        Py_DECREF(fds);
        if (it == NULL)
            return -1;
        PyObject *rec;
        PyObject *zero = PyLong_FromLong(0);
        while ((rec = PyIter_Next(it)) != NULL) {
            int rc = PyObject_SetAttr(rec, s_revents, zero);
            Py_DECREF(rec);
            if (rc < 0) {
                Py_DECREF(zero);
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(zero);
        Py_DECREF(it);
        if (PyErr_Occurred())
            return -1;
    }
    double now = self->now, rt = src->ready_time;
    if (premarked && src->ready && !src->c_idle && !(0 <= rt && rt <= now)) {
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
        }
        else {
            return schedule_ready_time_c(self, src);
        }
    }
    return 0;
}

/* Dispatch counters on a statistics object that is not the core's own record. */
static int
stats_generic(PyObject *st, double elapsed)
{
    PyObject *d = PyObject_GetAttrString(st, "dispatches");
    PyObject *one = PyLong_FromLong(1);
    PyObject *nd = d && one ? PyNumber_Add(d, one) : NULL;
    Py_XDECREF(d);
    Py_XDECREF(one);
    if (nd == NULL || PyObject_SetAttrString(st, "dispatches", nd) < 0) {
        Py_XDECREF(nd);
        return -1;
    }
    Py_DECREF(nd);
    PyObject *t = PyObject_GetAttrString(st, "dispatch_time");
    double total = t ? PyFloat_AsDouble(t) : -1.0;
    Py_XDECREF(t);
    if (total == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *nt = PyFloat_FromDouble(total + elapsed);
    int rc = nt ? PyObject_SetAttrString(st, "dispatch_time", nt) : -1;
    Py_XDECREF(nt);
    if (rc < 0)
        return -1;
    PyObject *m = PyObject_GetAttrString(st, "max_dispatch_time");
    double mx = m ? PyFloat_AsDouble(m) : -1.0;
    Py_XDECREF(m);
    if (mx == -1.0 && PyErr_Occurred())
        return -1;
    if (elapsed > mx) {
        PyObject *ne = PyFloat_FromDouble(elapsed);
        rc = ne ? PyObject_SetAttrString(st, "max_dispatch_time", ne) : -1;
        Py_XDECREF(ne);
    }
    return rc;
}

/* Dispatcher._end_dispatch. */
static int
end_dispatch(ContextObject *self, SourceObject *src, int blocked, int leaf, double elapsed)
{
    src->dispatching--;
    if (blocked) {
        Py_ssize_t ndue = list_len(self->blocked_due);
        if (ndue < 0)
            return -1;
        int unpolled = 0;
        if (leaf && list_len(src->fds) > 0) {
            unpolled = nonempty_attr(self->fds, s_unpolled);
            if (unpolled < 0)
                return -1;
        }
        if (leaf && !src->ready_while_blocked && ndue == 0 && !unpolled) {
            src->blocked = 0;
            PyObject *stack = self->blocked;
            Py_ssize_t n;
            if (stack != NULL && PyList_CheckExact(stack) && (n = PyList_GET_SIZE(stack)) > 0
                    && PyList_GET_ITEM(stack, n - 1) == (PyObject *)src) {
                if (PyList_SetSlice(stack, n - 1, n, NULL) < 0)
                    return -1;
            }
            else if (call_method_void((PyObject *)self, s_unblock, (PyObject *)src, NULL,
                                      NULL) < 0) {
                return -1;
            }
        }
        else if (call_method_void((PyObject *)self, s_unblock, (PyObject *)src, NULL,
                                  NULL) < 0) {
            return -1;
        }
    }
    PyObject *st = src->stats;
    if (IS_NONE(st)) {
        /* SourceStatistics(): zeroed counters (its __init__ takes no arguments) */
        st = StatsType.tp_alloc(&StatsType, 0);
        if (st == NULL)
            return -1;
        Py_XSETREF(src->stats, st);
    }
    if (Py_IS_TYPE(st, &StatsType)) {
        StatsObject *s = (StatsObject *)st;
        s->dispatches++;
        s->dispatch_time += elapsed;
        if (elapsed > s->max_dispatch_time)
            s->max_dispatch_time = elapsed;
    }
    else if (stats_generic(st, elapsed) < 0) {
        return -1;  /* some other record object: updated through its attributes */
    }
    if (src->destroyed) {
        if (call_method_void((PyObject *)src, s_maybe_finalize, NULL, NULL, NULL) < 0)
            return -1;
    }
    if (elapsed >= SLOW_FLOOR) {
        PyObject *port = REQUIRED(self, port, "_port");
        PyObject *th = port ? PyObject_CallMethodNoArgs(port, s_slow_threshold) : NULL;
        if (th == NULL)
            return -1;
        if (th != Py_None) {
            double t = PyFloat_AsDouble(th);
            Py_DECREF(th);
            if (t == -1.0 && PyErr_Occurred())
                return -1;
            if (elapsed >= t) {
                PyObject *e = PyFloat_FromDouble(elapsed);
                if (e == NULL)
                    return -1;
                PyObject *r = PyObject_CallFunctionObjArgs(warn_slow, (PyObject *)src, e,
                                                           NULL);
                Py_DECREF(e);
                if (r == NULL)
                    return -1;
                Py_DECREF(r);
            }
        }
        else {
            Py_DECREF(th);
        }
    }
    return 0;
}

/* Look a function up on the type (no instance attributes: those are not hooks). */
static inline PyObject *
type_attr(PyObject *obj, PyObject *name)
{
    return _PyType_Lookup(Py_TYPE(obj), name);  /* borrowed, no exception set */
}

/* Run the source's dispatch; new reference to its result, NULL on error.  Built-in
 * sources run no Python frame but the user's callback. */
static PyObject *
run_dispatch(SourceObject *src, PyObject *cb, PyObject *args)
{
    PyObject *self = (PyObject *)src;
    PyObject *fn = type_attr(self, s_dispatch);
    if (fn != NULL && !IS_NONE(cb) && PyTuple_CheckExact(args)) {
        if (fn == default_dispatch)
            return PyObject_Call(cb, args, NULL);
        if (fn == fd_dispatch) {
            PyObject *fileobj = src->fileobj, *tag = src->tag;
            if (fileobj == NULL || tag == NULL) {
                PyErr_SetString(PyExc_AttributeError, "FdSource without a watch");
                return NULL;
            }
            Py_INCREF(fileobj);
            Py_INCREF(tag);
            PyObject *rev = PyObject_GetAttr(tag, s_revents);
            Py_DECREF(tag);
            if (rev == NULL) {
                Py_DECREF(fileobj);
                return NULL;
            }
            long bits = PyLong_AsLong(rev);
            Py_DECREF(rev);
            if (bits == -1 && PyErr_Occurred()) {
                Py_DECREF(fileobj);
                return NULL;
            }
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
            argv[1] = PyTuple_GET_ITEM(conditions, bits & 0x3F);
            for (Py_ssize_t i = 0; i < n; i++)
                argv[i + 2] = PyTuple_GET_ITEM(args, i);
            PyObject *r = PyObject_Vectorcall(cb, argv, (size_t)(n + 2), NULL);
            if (argv != small)
                PyMem_Free(argv);
            Py_DECREF(fileobj);
            return r;
        }
        ContextObject *ctx = (ContextObject *)src->context;
        if (fn == timeout_dispatch && ctx != NULL && default_set_ready_time != NULL
                && type_attr(self, s_set_ready_time) == default_set_ready_time
                && PyObject_TypeCheck((PyObject *)ctx, &ContextType)
                && (ctx->in_iteration || ctx->in_hook)) {
            PyObject *r = PyObject_Call(cb, args, NULL);
            if (r == NULL)
                return NULL;
            int keep = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (keep < 0)
                return NULL;
            if (keep && !src->destroyed) {
                /* re-arm at the iteration's cached time plus the interval */
                double interval = src->interval;
                double when = ctx->now + interval;
                if (when == src->ready_time)
                    return PyBool_FromLong(keep);  /* set_ready_time: no change */
                if (!src->in_heap && when <= ctx->now && when >= 0) {
                    /* Due already (a timeout of 0): no heap entry; rearm marks it ready,
                     * which is what the next check would do with the entry. */
                    src->ready_time = when;
                    return PyBool_FromLong(keep);
                }
                PyObject *w = PyFloat_FromDouble(when);
                if (w == NULL)
                    return NULL;
                PyObject *x = PyObject_CallMethodOneArg(self, s_set_ready_time, w);
                Py_DECREF(w);
                if (x == NULL)
                    return NULL;
                Py_DECREF(x);
            }
            return PyBool_FromLong(keep);
        }
    }
    /* the class's own dispatch(): dispatch_one takes its result's truth */
    return PyObject_CallMethodObjArgs(self, s_dispatch, IS_NONE(cb) ? Py_None : cb, args,
                                      NULL);
}

/* The dispatch tap (Dispatcher's ``_tap``, aioqloop._trace): a test tool that records
 * each dispatch and may reorder the ready sources of one priority.  Kept apart from the
 * dispatch itself; with no tap (None, the default) it costs one pointer test. */
static PyObject *s_tap_order, *s_tap_dispatched;

static int
tap_dispatched(ContextObject *self, PyObject *srcobj)
{
    PyObject *tap = self->tap;
    if (tap == NULL || IS_NONE(tap))
        return 0;
    Py_INCREF(tap);
    PyObject *r = PyObject_CallMethodOneArg(tap, s_tap_dispatched, srcobj);
    Py_DECREF(tap);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Replace *pending (a new list reference) by the tap's order of it. */
static int
tap_order(ContextObject *self, PyObject *priority, PyObject **pending)
{
    PyObject *tap = self->tap;
    if (tap == NULL || IS_NONE(tap))
        return 0;
    Py_INCREF(tap);
    PyObject *r = PyObject_CallMethodObjArgs(tap, s_tap_order, priority, *pending, NULL);
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

/* Dispatcher._dispatch_one.  Returns 0 and sets *t_end, or -1 with an exception. */
static int
dispatch_one(ContextObject *self, SourceObject *src, double t0, double *t_end)
{
    PyObject *srcobj = (PyObject *)src;
    if (tap_dispatched(self, srcobj) < 0)
        return -1;
    if (src->ready) {
        src->ready = src->ready_by_time = src->ready_by_child = 0;
        if (drop_ready(self, src, 1) < 0)
            return -1;
    }
    int blocked = !src->can_recurse;
    double rt = src->ready_time;
    int premarked = !blocked && (src->c_idle || (0 <= rt && rt <= self->now && !src->in_heap));
    if (premarked && mark_ready(self, srcobj) < 0)
        return -1;
    Py_ssize_t nchildren = list_len(src->children), nfds = list_len(src->fds);
    if (nchildren < 0 || nfds < 0)
        return -1;
    /* Blocking a source without children is one flag and one push (its fds are only
     * unpolled by a nested iteration's poll, which end_dispatch checks). */
    int leaf = !nchildren;
    if (blocked) {
        if (leaf) {
            src->blocked = 1;
            if (self->blocked == NULL || !PyList_CheckExact(self->blocked)) {
                PyErr_SetString(PyExc_TypeError, "MainContext._blocked must be a list");
                return -1;
            }
            if (PyList_Append(self->blocked, srcobj) < 0)
                return -1;
        }
        else if (call_method_void((PyObject *)self, s_block, srcobj, NULL, NULL) < 0) {
            return -1;
        }
    }
    if (tls == NULL || order_key == NULL || warn_slow == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine is not configured");
        return -1;
    }
    PyObject *current = PyObject_GetAttr(tls, s_current);
    if (current == NULL)
        return -1;
    if (!PyList_CheckExact(current) || PyList_Append(current, srcobj) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "the dispatch stack must be a list");
        Py_DECREF(current);
        return -1;
    }
    self->in_iteration++;
    src->dispatching++;
    int keep = 0, escaped = 0, failed = 0;
    PyObject *cb = src->callback ? src->callback : Py_None;
    PyObject *args = src->args;
    Py_INCREF(cb);
    Py_XINCREF(args);
    Py_INCREF(srcobj);
    PyObject *res = args ? run_dispatch(src, cb, args) : NULL;
    if (args == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_AttributeError, "_args");
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    if (res != NULL) {
        /* The result's truth is part of the dispatch: a __bool__ that raises is reported
         * and destroys the source, like any other exception of the dispatch. */
        keep = PyObject_IsTrue(res);
        Py_DECREF(res);
    }
    if (res == NULL || keep < 0) {
        keep = 0;
        if (PyErr_ExceptionMatches(PyExc_SystemExit)
                || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            escaped = 1;
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        }
        else {
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
            PyErr_NormalizeException(&exc_type, &exc_value, &exc_tb);
            if (exc_tb != NULL && exc_value != NULL)
                PyException_SetTraceback(exc_value, exc_tb);
            PyObject *kwnames = PyTuple_Pack(1, s_callback);
            /* the callback as it is now (the failed one may have replaced itself) */
            PyObject *now_cb = src->callback ? src->callback : Py_None;
            Py_INCREF(now_cb);  /* _report may destroy and finalize the source */
            PyObject *fnargs[5] = {(PyObject *)self, exc_value ? exc_value : Py_None, srcobj,
                                   s_phase_dispatch, now_cb};
            PyObject *r = NULL;
            if (kwnames != NULL) {
                r = PyObject_VectorcallMethod(s_report, fnargs, 4, kwnames);
                Py_DECREF(kwnames);
            }
            Py_DECREF(now_cb);
            Py_XDECREF(exc_type);
            Py_XDECREF(exc_value);
            Py_XDECREF(exc_tb);
            exc_type = exc_value = exc_tb = NULL;
            if (r == NULL) {
                failed = 1;
                PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
            }
            else {
                Py_DECREF(r);
            }
        }
    }
    /* finally: */
    double t1 = perf_now();
    self->in_iteration--;
    Py_ssize_t n = PyList_GET_SIZE(current);
    int cleanup_rc = 0;
    if (n > 0)
        cleanup_rc = PyList_SetSlice(current, n - 1, n, NULL);
    Py_DECREF(current);
    if (cleanup_rc == 0)
        cleanup_rc = end_dispatch(self, src, blocked, leaf, t1 - t0);
    if (cleanup_rc == 0 && escaped)
        cleanup_rc = rearm(self, src, src->c_survives, premarked);
    if (cleanup_rc < 0) {
        /* an exception in the cleanup replaces the pending one, as in a finally block */
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
        Py_DECREF(cb);
        Py_XDECREF(args);
        Py_DECREF(srcobj);
        return -1;
    }
    if (escaped || failed) {
        PyErr_Restore(exc_type, exc_value, exc_tb);
        Py_DECREF(cb);
        Py_XDECREF(args);
        Py_DECREF(srcobj);
        return -1;
    }
    int rc;
    if (keep && src->c_idle && list_len(src->fds) == 0 && !src->destroyed)
        rc = mark_ready(self, srcobj);  /* a repeating idle, the common case of rearm */
    else
        rc = rearm(self, src, keep, premarked);
    Py_DECREF(cb);
    Py_XDECREF(args);
    Py_DECREF(srcobj);
    *t_end = t1;
    return rc;
}

/* The first key of a one-entry dict (borrowed). */
static PyObject *
only_key(PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    if (PyDict_Next(dict, &pos, &key, &value))
        return key;
    return NULL;
}

/* Dispatcher._dispatch_postponed(): a big lock handed over for a dispatch that does not
 * happen now goes back at once, so the loop never polls holding it. */
static PyObject *
ctx_dispatch_postponed(ContextObject *self, PyObject *unused)
{
    PyObject *gate = self->gate;
    if (gate != NULL && !IS_NONE(gate)) {
        Py_INCREF(gate);
        int rc = call_method_void(gate, s_give_back, NULL, NULL, NULL);
        Py_DECREF(gate);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* Dispatcher.dispatch(priority): the ready sources of one priority, in attach order. */
static PyObject *
ctx_dispatch(ContextObject *self, PyObject *priority)
{
    if (!ready_ok(self))
        return NULL;
    PyObject *bucket = PyDict_GetItemWithError(self->ready, priority);
    if (bucket == NULL) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError))
                return NULL;
            PyErr_Clear();  /* an unhashable priority: nothing is ready there */
        }
        return ctx_dispatch_postponed(self, NULL);  /* gone since the check */
    }
    if (!PyDict_Check(bucket) || PyDict_GET_SIZE(bucket) == 0)
        return ctx_dispatch_postponed(self, NULL);
    self->iterations++;
    PyObject *single = NULL, *pending = NULL;
    if (PyDict_GET_SIZE(bucket) == 1) {
        single = only_key(bucket);
        Py_INCREF(single);
    }
    else {
        pending = PySequence_List(bucket);
        if (pending == NULL)
            return NULL;
        PyObject *kwnames = PyTuple_Pack(1, s_key);
        PyObject *sargs[2] = {pending, timers_order_key ? timers_order_key : order_key};
        PyObject *r = kwnames ? PyObject_VectorcallMethod(s_sort, sargs, 1, kwnames) : NULL;
        Py_XDECREF(kwnames);
        if (r == NULL) {
            Py_DECREF(pending);
            return NULL;
        }
        Py_DECREF(r);
        if (tap_order(self, priority, &pending) < 0) {
            Py_DECREF(pending);
            return NULL;
        }
    }
    if (PyDict_GET_SIZE(self->ready) > 1) {
        if (call_method_void((PyObject *)self, s_count_waited, priority, NULL, NULL) < 0)
            goto fail_early;
    }
    PyObject *gate = IS_NONE(self->gate) ? NULL : self->gate;
    Py_XINCREF(gate);
    if (gate != NULL) {
        int ok = call_truth(gate, s_enter);
        if (ok <= 0) {
            Py_DECREF(gate);
            if (ok < 0)
                goto fail_early;
            Py_XDECREF(single);
            Py_XDECREF(pending);
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t serial = self->serial;
    double t = perf_now(), t_start = t;
    int failed = 0;
    /* QEMU's rule: the batch's first dispatch comes before any waiter gets the lock;
     * waiters get it between two dispatches (see Dispatcher.dispatch). */
    int first = 1;
    Py_ssize_t count = single ? 1 : PyList_GET_SIZE(pending);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (self->serial != serial)
            break;  /* a nested iteration took over the rest, as in gmain.c */
        PyObject *o = single ? single : PyList_GET_ITEM(pending, i);
        if (!Source_Check(o))
            continue;
        SourceObject *src = (SourceObject *)o;
        if (!src->ready || src->destroyed)
            continue;
        if (first)
            first = 0;
        else if (gate != NULL) {
            int ok = call_truth(gate, s_between);
            if (ok < 0) {
                failed = 1;
                break;
            }
            if (!ok) {
                Py_CLEAR(gate);  /* deferred: the rest waits for the lock */
                break;
            }
        }
        double t_end;
        if (dispatch_one(self, src, t, &t_end) < 0) {
            failed = 1;
            break;
        }
        t = t_end;
    }
    self->dispatch_time += t - t_start;
    if (gate != NULL) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (call_method_void(gate, s_leave, NULL, NULL, NULL) < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
            failed = 1;
        }
        else {
            PyErr_Restore(et, ev, etb);
        }
        Py_DECREF(gate);
    }
    Py_XDECREF(single);
    Py_XDECREF(pending);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
fail_early:
    Py_XDECREF(single);
    Py_XDECREF(pending);
    return NULL;
}


/* One poll result (fd, revents) of apply_events: its records and their sources. */
static int
apply_event(ContextObject *self, PyObject *records, PyObject *item, long wake, int *woken)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError, "poll results must be (fd, events) pairs");
        return -1;
    }
    PyObject *fd_o = PyTuple_GET_ITEM(item, 0);
    long fd = PyLong_AsLong(fd_o);
    long ev = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
    if ((fd == -1 || ev == -1) && PyErr_Occurred())
        return -1;
    if (fd == wake) {
        *woken = 1;
        return 0;
    }
    PyObject *recs = PyDict_GetItemWithError(records, fd_o);
    if (recs == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyList_Check(recs))
        return 0;
    Py_INCREF(recs);
    int rc = 0;
    /* by index: a callback run by mark_ready may change the list */
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(recs); j++) {
        PyObject *rec = PyList_GET_ITEM(recs, j);
        Py_INCREF(rec);
        PyObject *mask_o = PyObject_GetAttr(rec, s_events);
        long mask = mask_o ? PyLong_AsLong(mask_o) : -1;
        Py_XDECREF(mask_o);
        if (mask == -1 && PyErr_Occurred()) {
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        long revents = ev & (mask | POLLERR | POLLHUP | POLLNVAL);
        PyObject *rv = PyLong_FromLong(revents);
        if (rv == NULL || PyObject_SetAttr(rec, s_revents, rv) < 0) {
            Py_XDECREF(rv);
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        Py_DECREF(rv);
        if (revents) {
            PyObject *source = PyObject_GetAttr(rec, s_source);
            if (source == NULL) {
                Py_DECREF(rec);
                rc = -1;
                break;
            }
            if (Source_Check(source) && !((SourceObject *)source)->blocked)
                rc = mark_ready(self, source);
            Py_DECREF(source);
        }
        Py_DECREF(rec);
        if (rc < 0)
            break;
    }
    Py_DECREF(recs);
    return rc;
}

/* FdPoller.apply: record poll results (fd, revents) on the fd records and mark their
 * sources ready; a wake-up is drained (MainContext._apply_polled). */
static int
apply_events(ContextObject *self, PyObject *events)
{
    PyObject *fds = self->fds;
    if (IS_NONE(fds)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext has no fd poller");
        return -1;
    }
    Py_INCREF(fds);
    PyObject *records = PyObject_GetAttr(fds, s_records);
    PyObject *wake_o = records ? PyObject_GetAttr(fds, s_wake_fd) : NULL;
    Py_DECREF(fds);
    if (wake_o == NULL) {
        Py_XDECREF(records);
        return -1;
    }
    long wake = PyLong_AsLong(wake_o);
    Py_DECREF(wake_o);
    PyObject *seq = PySequence_Fast(events, "poll results must be a sequence");
    if (seq == NULL || (wake == -1 && PyErr_Occurred()) || !PyDict_Check(records)) {
        if (seq != NULL && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "FdPoller.records must be a dict");
        Py_XDECREF(seq);
        Py_DECREF(records);
        return -1;
    }
    int woken = 0, rc = 0;
    /* The size is read again each time, and the item held: a list of results may be
     * changed by the Python code that marking a source ready runs (the driver's
     * source_ready). */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc == 0; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(item);
        rc = apply_event(self, records, item, wake, &woken);
        Py_DECREF(item);
    }
    Py_DECREF(seq);
    Py_DECREF(records);
    if (rc == 0 && woken && !IS_NONE(self->waker))
        rc = call_method_void(self->waker, s_drain, NULL, NULL, NULL);
    return rc;
}

static PyObject *
ctx_apply_polled(ContextObject *self, PyObject *events)
{
    if (apply_events(self, events) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ctx_poll_ready(ContextObject *self, PyObject *unused)
{
    PyObject *fds = REQUIRED(self, fds, "_fds");
    PyObject *epoll = fds ? PyObject_GetAttr(fds, s_epoll) : NULL;
    if (epoll == NULL)
        return NULL;
    if (epoll == Py_None) {
        /* No epoll set yet (opened on first need): a wake-up came through the driver's
         * own wake callback; consume it. */
        Py_DECREF(epoll);
        if (!IS_NONE(self->waker) && call_method_void(self->waker, s_drain, NULL, NULL, NULL) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *events = PyObject_CallMethodOneArg(epoll, s_poll, float_zero);
    Py_DECREF(epoll);
    if (events == NULL)
        return NULL;
    int rc = apply_events(self, events);
    Py_DECREF(events);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The most urgent ready priority (a new reference), or inf. */
static PyObject *
best_priority(ContextObject *self)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value, *best = NULL;
    long bestv = 0;
    while (PyDict_Next(self->ready, &pos, &key, &value)) {
        long v = PyLong_AsLong(key);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (best == NULL || v < bestv) {
            best = key;
            bestv = v;
        }
    }
    if (best == NULL) {
        Py_INCREF(float_inf);
        return float_inf;
    }
    Py_INCREF(best);
    return best;
}


static int
bh_pending(ContextObject *self)
{
    return nonempty_attr(self->bh, s_pending);
}

/* The loop's time in seconds through the context's clock (not cached); -1 on error. */
static int
clock_now(ContextObject *self, double *out)
{
    PyObject *clock = REQUIRED(self, clock, "_clock");
    if (clock == NULL)
        return -1;
    if (timers_fast_clock(clock, out))
        return 0;
    Py_INCREF(clock);  /* the call may replace the field */
    PyObject *t = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (t == NULL)
        return -1;
    double v = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* Read the clock into the iteration's cached time. */
static int
read_clock(ContextObject *self)
{
    return clock_now(self, &self->now);
}

/* MainContext._check: GLib's check; the priority to dispatch (inf if none). */
static PyObject *
check(ContextObject *self)
{
    int entries = nonempty_attr(self->deadlines, s_entries);
    int hooks = entries < 0 ? -1 : nonempty_attr(self->check_hooks, s_prios);
    int ops = hooks < 0 ? -1 : nonempty_attr(self->waker, s_ops);
    int bh = ops < 0 ? -1 : bh_pending(self);
    if (bh < 0)
        return NULL;
    if (!ready_ok(self))
        return NULL;
    if (entries || hooks || ops || bh) {
        PyObject *t = ctx_collect(self, NULL);
        if (t == NULL)
            return NULL;
        Py_DECREF(t);
        /* again: an operation posted by another thread may have attached a hooked source */
        hooks = nonempty_attr(self->check_hooks, s_prios);
        if (hooks < 0 || (hooks && call_method_void((PyObject *)self, s_run_check_hooks,
                                                    NULL, NULL, NULL) < 0))
            return NULL;
    }
    else if (PyDict_GET_SIZE(self->ready)) {
        if (read_clock(self) < 0)
            return NULL;
    }
    if (!IS_NONE(self->gate)) {
        PyObject *gate = self->gate;
        Py_INCREF(gate);
        int deferred = attr_truth(gate, s_deferred);
        if (deferred < 0 || (deferred == 0 && PyDict_GET_SIZE(self->ready) == 0
                             && call_method_void(gate, s_give_back, NULL, NULL, NULL) < 0)) {
            Py_DECREF(gate);
            return NULL;
        }
        Py_DECREF(gate);
        if (deferred) {
            Py_INCREF(float_inf);
            return float_inf;
        }
    }
    return best_priority(self);
}

static PyObject *
ctx_check(ContextObject *self, PyObject *unused)
{
    return check(self);
}

/* _prepare_slow when only fd watches need a look (nothing ready, queued, timed or
 * hooked): the cached time and the NVAL audit, whose due time bounds the wait. */
static PyObject *
prepare_fds_only(ContextObject *self, int deferred)
{
    if (read_clock(self) < 0)
        return NULL;
    double now = self->now;
    PyObject *iv = PyObject_GetAttr((PyObject *)self, s_audit_interval);
    double interval = iv ? PyFloat_AsDouble(iv) : -1.0;
    Py_XDECREF(iv);
    if (interval == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *fds = REQUIRED(self, fds, "_fds");
    if (fds == NULL)
        return NULL;
    Py_INCREF(fds);
    PyObject *la = PyObject_GetAttr(fds, s_last_audit);
    double last = la ? PyFloat_AsDouble(la) : -1.0;
    Py_XDECREF(la);
    if (last == -1.0 && PyErr_Occurred())
        goto fail;
    if (now - last >= interval) {
        PyObject *mark = PyObject_GetAttr((PyObject *)self, s_mark_ready);
        PyObject *t = mark ? PyFloat_FromDouble(now) : NULL;
        int rc = t ? call_method_void(fds, s_audit, t, mark, NULL) : -1;
        Py_XDECREF(t);
        Py_XDECREF(mark);
        if (rc < 0)
            goto fail;
        la = PyObject_GetAttr(fds, s_last_audit);
        last = la ? PyFloat_AsDouble(la) : -1.0;
        Py_XDECREF(la);
        if (last == -1.0 && PyErr_Occurred())
            goto fail;
    }
    Py_DECREF(fds);
    double wait = last + interval - now;
    if (wait < 0)
        wait = 0.0;
    if (PyDict_GET_SIZE(self->ready) && !deferred) {
        Py_INCREF(float_zero);
        return float_zero;
    }
    if (isinf(wait))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(wait);
fail:
    Py_DECREF(fds);
    return NULL;
}

/* MainContext._prepare's fast part; the rest is _prepare_slow(deferred) in Python. */
static PyObject *
prepare(ContextObject *self)
{
    self->serial++;
    int deferred = 0;
    if (!IS_NONE(self->gate) && (deferred = attr_truth(self->gate, s_deferred)) < 0)
        return NULL;
    int queued = nonempty_attr(self->waker, s_ops);
    if (queued == 0)
        queued = bh_pending(self);
    if (queued < 0)
        return NULL;
    int hooks = nonempty_attr(self->prepare_hooks, s_prios);
    if (hooks < 0 || !ready_ok(self))
        return NULL;
    Py_ssize_t nready = PyDict_GET_SIZE(self->ready);
    if (nready && !deferred && !hooks && !queued) {
        Py_INCREF(float_zero);
        return float_zero;
    }
    if (!(nready || hooks || queued)) {
        int entries = nonempty_attr(self->deadlines, s_entries);
        int masks = entries ? entries : nonempty_attr(self->fds, s_masks);
        if (masks < 0)
            return NULL;
        if (!masks)
            Py_RETURN_NONE;
        if (!entries) {
            int always = nonempty_attr(self->fds, s_always);
            if (always < 0)
                return NULL;
            if (!always)
                return prepare_fds_only(self, deferred);
        }
    }
    if (!hooks && !queued) {
        PyObject *r = timers_prepare((PyObject *)self, deferred);
        if (r != Py_NotImplemented)
            return r;
        Py_DECREF(r);
    }
    return PyObject_CallMethodOneArg((PyObject *)self, s_prepare_slow,
                                     deferred ? Py_True : Py_False);
}

static PyObject *
ctx_prepare(ContextObject *self, PyObject *unused)
{
    return prepare(self);
}

/* Re-bind the clock if the loop's class was swapped (looptime does it). */
static int
follow_clock(ContextObject *self)
{
    PyObject *port = REQUIRED(self, port, "_port");
    if (port == NULL)
        return -1;
    Py_INCREF(port);
    PyObject *loop = PyObject_GetAttr(port, s_loop);
    PyObject *loop_class = loop ? PyObject_GetAttr(port, s_loop_class) : NULL;
    int swapped = loop_class != NULL && (PyObject *)Py_TYPE(loop) != loop_class;
    Py_XDECREF(loop);
    Py_XDECREF(loop_class);
    int rc = loop_class == NULL ? -1 : 0;
    if (rc == 0 && swapped) {
        PyObject *clock = PyObject_CallMethodNoArgs(port, s_rebind);
        if (clock == NULL)
            rc = -1;
        else
            Py_XSETREF(self->clock, clock);
    }
    Py_DECREF(port);
    return rc;
}

static PyObject *driver_poll(PyObject *driver, PyObject *timeout);
static PyObject *driver_place(PyObject *driver, PyObject *prio);

/* g_main_context_iterate: 1 if a source was ready, 0 if not, -1 on error. */
static int
iterate_impl(ContextObject *self, PyObject *driver, int block, int dispatch)
{
    PyObject *waker = self->waker;
    if (IS_NONE(waker)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext has no waker");
        return -1;
    }
    Py_INCREF(waker);
    PyObject *was_waiting = PyObject_GetAttr(waker, s_poll_waiting);
    if (was_waiting == NULL) {
        Py_DECREF(waker);
        return -1;
    }
    if (follow_clock(self) < 0)  /* the loop's class was swapped (e.g. looptime) */
        goto fail;
    /* "May sleep" is published before the last look at the queues (the GIL orders a
     * plain store; free-threaded builds use the pure engine). */
    if (PyObject_SetAttr(waker, s_poll_waiting, Py_True) < 0)
        goto fail;
    PyObject *timeout = prepare(self);
    PyObject *r = NULL;
    if (timeout != NULL) {
        r = driver_poll(driver, block ? timeout : float_zero);
        Py_DECREF(timeout);
    }
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (PyObject_SetAttr(waker, s_poll_waiting, was_waiting) < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
            Py_XDECREF(r);
            goto fail;
        }
        PyErr_Restore(et, ev, etb);
    }
    Py_DECREF(was_waiting);
    Py_DECREF(waker);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyObject *prio = check(self);
    if (prio == NULL)
        return -1;
    if (prio == float_inf || (PyFloat_Check(prio) && isinf(PyFloat_AS_DOUBLE(prio)))) {
        Py_DECREF(prio);
        return 0;
    }
    if (dispatch) {
        r = driver_place(driver, prio);
        Py_DECREF(prio);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    else {
        Py_DECREF(prio);
    }
    return 1;
fail:
    Py_DECREF(was_waiting);
    Py_DECREF(waker);
    return -1;
}


/* MainContext._iterate(driver, *, block, dispatch): g_main_context_iterate. */
static PyObject *
ctx_iterate(ContextObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int block = 0, dispatch = 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "_iterate() takes one positional argument (driver)");
        return NULL;
    }
    int seen_block = 0, seen_dispatch = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int v = PyObject_IsTrue(args[nargs + i]);
        if (v < 0)
            return NULL;
        if (k == s_block_kw || PyUnicode_Compare(k, s_block_kw) == 0) {
            block = v;
            seen_block = 1;
        }
        else if (k == s_dispatch_kw || PyUnicode_Compare(k, s_dispatch_kw) == 0) {
            dispatch = v;
            seen_dispatch = 1;
        }
        else {
            PyErr_Format(PyExc_TypeError, "_iterate() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    if (!seen_block || !seen_dispatch) {
        PyErr_SetString(PyExc_TypeError,
                        "_iterate() needs the keyword arguments 'block' and 'dispatch'");
        return NULL;
    }
    int r = iterate_impl(self, args[0], block, dispatch);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *ctx_has_work(ContextObject *self, PyObject *unused);
static PyObject *ctx_attach(ContextObject *self, PyObject *src);
static PyObject *ctx_schedule_ready_time(ContextObject *self, PyObject *src);
static PyObject *ctx_insert(ContextObject *self, PyObject *src);
static PyObject *ctx_remove_source(ContextObject *self, PyObject *src);
static PyObject *ctx_next_deadline(ContextObject *self, PyObject *unused);
static PyObject *ctx_time(ContextObject *self, PyObject *unused);

static PyMethodDef ctx_methods[] = {
    {"_schedule_ready_time", (PyCFunction)ctx_schedule_ready_time, METH_O,
     "_schedule_ready_time($self, src, /)\n--\n\n"
     "(Re)enter a source's ready time in the heap (owner thread)."},
    {"_attach", (PyCFunction)ctx_attach, METH_O,
     "_attach($self, src, /)\n--\n\n"
     "Give an attached source its id and insert it (any thread); returns the id."},
    {"_insert", (PyCFunction)ctx_insert, METH_O,
     "_insert($self, src, /)\n--\n\n"
     "Insert an attached source (owner thread)."},
    {"_remove_source", (PyCFunction)ctx_remove_source, METH_O,
     "_remove_source($self, src, /)\n--\n\n"
     "Take a destroyed source out of the context (owner thread)."},
    {"_collect", (PyCFunction)ctx_collect, METH_NOARGS,
     "_collect($self, /)\n--\n\n"
     "Start of prepare and check: foreign ops, the cached time, bottom halves, due ready "
     "times; returns the time."},
    {"_has_work", (PyCFunction)ctx_has_work, METH_NOARGS,
     "_has_work($self, /)\n--\n\n"
     "Is anything ready or due without waiting?  Owner thread."},
    {"_next_deadline", (PyCFunction)ctx_next_deadline, METH_NOARGS,
     "_next_deadline($self, /)\n--\n\n"
     "The earliest ready time in loop seconds (inf if none)."},
    {"_time", (PyCFunction)ctx_time, METH_NOARGS,
     "_time($self, /)\n--\n\n"
     "The context's time in seconds: cached during an iteration, else the loop's now."},
    {"_dispatch_postponed", (PyCFunction)ctx_dispatch_postponed, METH_NOARGS,
     "_dispatch_postponed($self, /)\n--\n\n"
     "The driver does not dispatch what the check found ready: give back a handed lock."},
    {"_dispatch", (PyCFunction)ctx_dispatch, METH_O,
     "_dispatch($self, priority, /)\n--\n\n"
     "Dispatch the ready sources of ``priority`` in attach order.  Owner thread."},
    {"_mark_ready", (PyCFunction)ctx_mark_ready, METH_O,
     "_mark_ready($self, src, /)\n--\n\n"
     "Set GLib's READY flag on a source and its ancestors.  Owner thread only."},
    {"_unmark_ready", (PyCFunction)ctx_unmark_ready, METH_O,
     "_unmark_ready($self, src, /)\n--\n\n"
     "Clear READY on a source."},
    {"_apply_polled", (PyCFunction)ctx_apply_polled, METH_O,
     "_apply_polled($self, events, /)\n--\n\n"
     "Record raw epoll results (fd, revents) polled by a driver that shares the context's "
     "fds; a wake-up is drained.  Owner thread, during the driver's poll."},
    {"_poll_ready", (PyCFunction)ctx_poll_ready, METH_NOARGS,
     "_poll_ready($self, /)\n--\n\n"
     "Record what the private epoll set reports now, without waiting (owner thread)."},
    {"_check", (PyCFunction)ctx_check, METH_NOARGS,
     "_check($self, /)\n--\n\n"
     "GLib's check: the priority to dispatch (inf if none).  Owner thread."},
    {"_prepare", (PyCFunction)ctx_prepare, METH_NOARGS,
     "_prepare($self, /)\n--\n\n"
     "GLib's prepare (+ query): the poll timeout in seconds (None = forever)."},
    {"_iterate", (PyCFunction)(void (*)(void))ctx_iterate, METH_FASTCALL | METH_KEYWORDS,
     "_iterate($self, driver, /, *, block, dispatch)\n--\n\n"
     "One iteration (g_main_context_iterate); True if a source was ready.  Owner thread."},
    {NULL}
};

#define CM(name, type, field) {name, type, offsetof(ContextObject, field), 0, NULL}
static PyMemberDef ctx_members[] = {
    CM("_ready", T_OBJECT_EX, ready),
    CM("_blocked", T_OBJECT_EX, blocked),
    CM("_blocked_due", T_OBJECT_EX, blocked_due),
    CM("_gate", T_OBJECT, gate),
    CM("_port", T_OBJECT_EX, port),
    CM("_fds", T_OBJECT_EX, fds),
    CM("_source_ready", T_OBJECT, source_ready),
    CM("_deadlines", T_OBJECT_EX, deadlines),
    CM("_waker", T_OBJECT_EX, waker),
    CM("_bh", T_OBJECT, bh),
    CM("_prepare_hooks", T_OBJECT_EX, prepare_hooks),
    CM("_check_hooks", T_OBJECT_EX, check_hooks),
    CM("_clock", T_OBJECT_EX, clock),
    CM("_tap", T_OBJECT, tap),
    CM("_now", T_DOUBLE, now),
    CM("_dispatch_time", T_DOUBLE, dispatch_time),
    CM("_in_iteration", T_PYSSIZET, in_iteration),
    CM("_serial", T_PYSSIZET, serial),
    CM("_iterations", T_PYSSIZET, iterations),
    CM("_in_hook", T_BOOL, in_hook),
    {NULL}
};

static PyTypeObject ContextType = CORE_TYPE(ctx, ContextObject, "ContextCore",
    "The hot part of a GMainContext, as C fields (base of aioqloop.MainContext).",
    ctx_new);

/* ---------------------------------------------------------------------- HookCore */
/* The stock base's selector hook (aioqloop.loop._SelectorHook): one context iteration
 * around asyncio's select, and the placement of its dispatch against asyncio's ready
 * queue.  The rare paths (strict priorities, wake-ups of an empty context, a virtual
 * clock, a wrapped select) stay in Python on the subclass. */
typedef struct {
    PyObject_HEAD
    PyObject *loop, *ctx, *clock, *select, *timeout, *events, *dispatch_handle, *preset;
    PyObject *direct, *polls;
    char queued;
} HookObject;

static PyTypeObject HookType;
static PyObject *hook_poll_descr, *hook_place_descr;
static double MAX_WAIT = 86400.0;
static PyObject *s_ready_q, *s_scheduled, *s_timer_due, *s_urgent, *s_woken, *s_raw;
static PyObject *s_dispatch_postponed;
static PyObject *s_take_raw, *s_take_epfd, *s_poll_clock, *s_expose_deadline, *s_sources;
static PyObject *s_append, *s_clear, *s_select_name;
static PyObject *empty_events;

#define HOOK_FIELDS(X) \
    X(loop) X(ctx) X(clock) X(select) X(timeout) X(events) X(dispatch_handle) \
    X(preset) X(direct) X(polls)
GC_FUNCTIONS(hook, HookObject, HOOK_FIELDS)

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    HookObject *self = (HookObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(empty_events);
    self->events = empty_events;
    return (PyObject *)self;
}

static inline int
is_context(PyObject *o)
{
    return o != NULL && PyObject_TypeCheck(o, &ContextType);
}

/* MainContext.is_empty: no source attached and nothing posted by other threads. */
static int
context_is_empty(PyObject *ctx)
{
    PyObject *sources = PyObject_GetAttr(ctx, s_sources);
    if (sources == NULL)
        return -1;
    int has = PyObject_IsTrue(sources);
    Py_DECREF(sources);
    if (has)
        return has < 0 ? -1 : 0;
    PyObject *waker = is_context(ctx) ? ((ContextObject *)ctx)->waker : NULL;
    if (waker == NULL)
        return 1;
    int ops = nonempty_attr(waker, s_ops);
    return ops < 0 ? -1 : !ops;
}

static int
call_iterate(PyObject *ctx, PyObject *driver, int block)
{
    if (is_context(ctx))
        return iterate_impl((ContextObject *)ctx, driver, block, 1);
    PyErr_SetString(PyExc_TypeError, "the hook's context is not a MainContext");
    return -1;
}

/* Does the loop have a timer due (QSelectorEventLoop._timer_due)?  -1 on error. */
static int
timer_due(PyObject *loop)
{
    PyObject *scheduled = PyObject_GetAttr(loop, s_scheduled);
    if (scheduled == NULL)
        return -1;
    int any = PyObject_IsTrue(scheduled);
    Py_DECREF(scheduled);
    if (any <= 0)
        return any;
    return call_truth(loop, s_timer_due);
}

/* SelectorFds.select (aioqloop._selectorfds), for the hook's own select: one epoll_wait
 * for asyncio and the context.  Returns asyncio's (key, events) list; the raw results
 * accumulate in direct.raw when one of the context's fds is among them. */
static PyObject *shared_select_func;   /* SelectorFds.select (the plain function) */
static long reportable[4];
static PyObject *s_stale, *s_rebuild, *s_ep, *s_fd_to_key, *s_ctx_mask, *s_events_attr;

static PyObject *
shared_select(PyObject *direct, PyObject *timeout)
{
    int stale = attr_truth(direct, s_stale);
    if (stale < 0 || (stale && call_method_void(direct, s_rebuild, NULL, NULL, NULL) < 0))
        return NULL;
    double wait;
    if (timeout == Py_None)
        wait = -1.0;
    else {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        wait = t <= 0 ? 0.0 : ceil(t * 1e3) * 1e-3;  /* epoll's milliseconds, rounded up */
    }
    PyObject *ep = PyObject_GetAttr(direct, s_ep);
    if (ep == NULL)
        return NULL;
    PyObject *w = PyFloat_FromDouble(wait);
    PyObject *raw = w ? PyObject_CallMethodOneArg(ep, s_poll, w) : NULL;
    Py_XDECREF(w);
    Py_DECREF(ep);
    if (raw == NULL) {
        if (PyErr_ExceptionMatches(PyExc_InterruptedError)) {
            PyErr_Clear();
            return PyList_New(0);
        }
        return NULL;
    }
    PyObject *ready = PyList_New(0);
    if (ready == NULL || !PyList_Check(raw) || PyList_GET_SIZE(raw) == 0) {
        if (ready != NULL && !PyList_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "epoll.poll() must return a list");
            Py_CLEAR(ready);
        }
        Py_DECREF(raw);
        return ready;
    }
    PyObject *fd_to_key = PyObject_GetAttr(direct, s_fd_to_key);
    PyObject *ctx_mask = fd_to_key ? PyObject_GetAttr(direct, s_ctx_mask) : NULL;
    if (ctx_mask == NULL || !PyDict_Check(ctx_mask)) {
        if (ctx_mask != NULL)
            PyErr_SetString(PyExc_TypeError, "SelectorFds._ctx_mask must be a dict");
        goto fail;
    }
    int hit = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(raw); i++) {
        PyObject *item = PyList_GET_ITEM(raw, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2)
            continue;
        PyObject *fd_o = PyTuple_GET_ITEM(item, 0);
        long ev = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (ev == -1 && PyErr_Occurred())
            goto fail;
        int mine_ctx = PyDict_Contains(ctx_mask, fd_o);
        if (mine_ctx < 0)
            goto fail;
        hit |= mine_ctx;
        PyObject *key;
        if (PyDict_CheckExact(fd_to_key)) {
            key = PyDict_GetItemWithError(fd_to_key, fd_o);
            if (key == NULL) {
                if (PyErr_Occurred())
                    goto fail;
                continue;
            }
            Py_INCREF(key);
        }
        else {
            key = PyObject_CallMethod(fd_to_key, "get", "O", fd_o);  /* a Mapping: owned */
            if (key == NULL)
                goto fail;
            if (key == Py_None) {
                Py_DECREF(key);
                continue;
            }
        }
        long kevents;
        if (PyTuple_Check(key) && PyTuple_GET_SIZE(key) == 4) {
            /* selectors.SelectorKey: (fileobj, fd, events, data) */
            kevents = PyLong_AsLong(PyTuple_GET_ITEM(key, 2));
        }
        else {
            PyObject *kev = PyObject_GetAttr(key, s_events_attr);
            kevents = kev ? PyLong_AsLong(kev) : -1;
            Py_XDECREF(kev);
        }
        if (kevents == -1 && PyErr_Occurred()) {
            Py_DECREF(key);
            goto fail;
        }
        /* only what asyncio's own registration could have reported */
        long mine = ev & reportable[kevents & 3];
        if (mine) {
            long events = 0;
            if (mine & ~(long)EPOLLIN_BIT)
                events |= 2;  /* selectors.EVENT_WRITE */
            if (mine & ~(long)EPOLLOUT_BIT)
                events |= 1;  /* selectors.EVENT_READ */
            PyObject *pair = Py_BuildValue("(Ol)", key, events & kevents);
            if (pair == NULL || PyList_Append(ready, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(key);
                goto fail;
            }
            Py_DECREF(pair);
        }
        Py_DECREF(key);
    }
    if (hit) {
        /* the raw list matters to the context only if one of its fds is in it */
        PyObject *prev = PyObject_GetAttr(direct, s_raw);
        if (prev == NULL)
            goto fail;
        int nonempty = PyObject_IsTrue(prev);
        int rc;
        if (nonempty > 0) {
            PyObject *r = PyObject_CallMethod(prev, "extend", "O", raw);
            rc = r ? 0 : -1;
            Py_XDECREF(r);
        }
        else {
            rc = nonempty < 0 ? -1 : PyObject_SetAttr(direct, s_raw, raw);
        }
        Py_DECREF(prev);
        if (rc < 0)
            goto fail;
    }
    Py_DECREF(fd_to_key);
    Py_DECREF(ctx_mask);
    Py_DECREF(raw);
    return ready;
fail:
    Py_XDECREF(fd_to_key);
    Py_XDECREF(ctx_mask);
    Py_DECREF(raw);
    Py_XDECREF(ready);
    return NULL;
}

/* The hook's select function: SelectorFds.select runs here in C. */
static PyObject *
hook_call_select(HookObject *self, PyObject *timeout)
{
    PyObject *fn = REQUIRED(self, select, "_select");
    if (fn == NULL)
        return NULL;
    if (shared_select_func != NULL && PyMethod_Check(fn)
            && PyMethod_GET_FUNCTION(fn) == shared_select_func
            && PyMethod_GET_SELF(fn) == self->direct)
        return shared_select(self->direct, timeout);
    return PyObject_CallOneArg(fn, timeout);
}

/* _SelectorHook.select(timeout=None): prepare, the real select, check, place. */
static PyObject *
hook_select(HookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *timeout = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "select() takes at most one argument (timeout)");
        return NULL;
    }
    if (nargs == 1)
        timeout = args[0];
    else if (nkw == 1) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") != 0) {
            PyErr_SetString(PyExc_TypeError, "select() got an unexpected keyword argument");
            return NULL;
        }
        timeout = args[0];
    }
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx) || self->select == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the selector hook is not bound to a context");
        return NULL;
    }
    Py_INCREF(ctx);
    PyObject *events = NULL;
    if (IS_NONE(self->clock)) {
        int empty = context_is_empty(ctx);
        if (empty < 0)
            goto fail;
        if (empty) {
            /* plain asyncio work: the real select, and a look for a wake-up */
            events = hook_call_select(self, timeout);
            if (events == NULL)
                goto fail;
            /* only raw results (shared epoll) or events (private epoll) can hold one */
            int woken = IS_NONE(self->direct) ? PyObject_IsTrue(events)
                                              : nonempty_attr(self->direct, s_raw);
            if (woken > 0)
                woken = call_truth_arg((PyObject *)self, s_woken, events);
            if (woken < 0)
                goto fail;
            if (woken) {
                /* a wake-up: run what other threads posted, on the events we have */
                Py_INCREF(events);
                Py_XSETREF(self->preset, events);
                if (call_iterate(ctx, (PyObject *)self, 0) < 0)
                    goto fail;
            }
            Py_DECREF(ctx);
            return events;
        }
    }
    Py_INCREF(timeout);
    Py_XSETREF(self->timeout, timeout);
    Py_INCREF(empty_events);
    Py_XSETREF(self->events, empty_events);
    if (call_iterate(ctx, (PyObject *)self, 1) < 0)
        goto fail;
    events = self->events;  /* the reference moves to the caller */
    Py_INCREF(empty_events);
    self->events = empty_events;
    if (events == NULL) {  /* deleted during the iteration */
        Py_INCREF(empty_events);
        events = empty_events;
    }
    {
        /* a tool wrapped this select (looptime does): keep the deadline visible */
        PyObject *dict = PyObject_GenericGetDict((PyObject *)self, NULL);
        int wrapped = dict ? PyDict_Contains(dict, s_select_name) : -1;
        Py_XDECREF(dict);
        if (wrapped < 0 || (wrapped && call_method_void((PyObject *)self, s_expose_deadline,
                                                        ctx, NULL, NULL) < 0))
            goto fail;
    }
    Py_DECREF(ctx);
    return events;
fail:
    Py_XDECREF(events);
    Py_DECREF(ctx);
    return NULL;
}

static int
ctx_call_poll_ready(PyObject *ctx)
{
    if (ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the driver has no context");
        return -1;
    }
    if (is_context(ctx)) {
        PyObject *r = ctx_poll_ready((ContextObject *)ctx, NULL);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    return call_method_void(ctx, s_poll_ready_name, NULL, NULL, NULL);
}

/* _SelectorHook.poll(wait): asyncio's own select, for the shorter of both timeouts. */
static PyObject *
hook_poll(HookObject *self, PyObject *wait)
{
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the selector hook is not bound to a context");
        return NULL;
    }
    Py_INCREF(ctx);
    PyObject *events = NULL;
    if (!IS_NONE(self->preset)) {
        PyObject *preset = self->preset;
        self->preset = NULL;
        if (IS_NONE(self->direct) && ctx_call_poll_ready(ctx) < 0) {
            Py_DECREF(preset);
            goto fail;
        }
        Py_XSETREF(self->events, preset);
        Py_DECREF(ctx);
        Py_RETURN_NONE;
    }
    PyObject *timeout = self->timeout ? self->timeout : Py_None;
    Py_INCREF(timeout);
    if (wait != Py_None) {
        double w = PyFloat_AsDouble(wait);
        if (w == -1.0 && PyErr_Occurred()) {
            Py_DECREF(timeout);
            goto fail;
        }
        int shorter = timeout == Py_None;
        if (!shorter) {
            double t = PyFloat_AsDouble(timeout);
            if (t == -1.0 && PyErr_Occurred()) {
                Py_DECREF(timeout);
                goto fail;
            }
            shorter = w < t;
        }
        if (shorter) {
            Py_DECREF(timeout);
            if (w > MAX_WAIT) {
                timeout = PyFloat_FromDouble(MAX_WAIT);  /* a poll takes 32-bit ms */
                if (timeout == NULL)
                    goto fail;
            }
            else {
                Py_INCREF(wait);
                timeout = wait;
            }
        }
    }
    int zero = 0;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) {
            Py_DECREF(timeout);
            goto fail;
        }
        zero = t == 0.0;
    }
    if (!IS_NONE(self->clock) && !zero)
        events = PyObject_CallMethodOneArg((PyObject *)self, s_poll_clock, timeout);
    else
        events = hook_call_select(self, timeout);
    Py_DECREF(timeout);
    if (events == NULL)
        goto fail;
    if (!IS_NONE(self->direct)) {
        PyObject *direct = self->direct;
        Py_INCREF(direct);
        int raw = nonempty_attr(direct, s_raw);
        if (raw > 0) {
            PyObject *taken = PyObject_CallMethodNoArgs(direct, s_take_raw);
            if (taken == NULL)
                raw = -1;
            else {
                if (is_context(ctx))
                    raw = apply_events((ContextObject *)ctx, taken) < 0 ? -1 : 1;
                else
                    raw = call_method_void(ctx, s_apply_polled_name, taken, NULL, NULL) < 0
                          ? -1 : 1;
                Py_DECREF(taken);
            }
        }
        Py_DECREF(direct);
        if (raw < 0)
            goto fail;
    }
    else {
        int any = PyObject_IsTrue(events);
        if (any < 0)
            goto fail;
        if (any) {
            int hit = call_truth_arg((PyObject *)self, s_take_epfd, events);
            if (hit < 0 || (hit && ctx_call_poll_ready(ctx) < 0))
                goto fail;
        }
    }
    Py_XSETREF(self->events, events);
    Py_DECREF(ctx);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(events);
    Py_DECREF(ctx);
    return NULL;
}

/* _SelectorHook.source_ready(priority): queue the default-priority dispatch, FIFO. */
static int
hook_queue(HookObject *self)
{
    if (self->queued || IS_NONE(self->dispatch_handle))
        return 0;
    PyObject *loop = REQUIRED(self, loop, "_loop");
    PyObject *ready = loop ? PyObject_GetAttr(loop, s_ready_q) : NULL;
    if (ready == NULL)
        return -1;
    int rc = call_method_void(ready, s_append, self->dispatch_handle, NULL, NULL);
    Py_DECREF(ready);
    if (rc == 0)
        self->queued = 1;
    return rc;
}

static PyObject *
hook_source_ready(HookObject *self, PyObject *priority)
{
    long p = PyLong_AsLong(priority);
    if (p == -1 && PyErr_Occurred())
        return NULL;
    if (p == 0 && hook_queue(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
ctx_call_dispatch(PyObject *ctx, PyObject *priority)
{
    if (ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the driver has no context");
        return -1;
    }
    PyObject *r = is_context(ctx) ? ctx_dispatch((ContextObject *)ctx, priority)
                                  : PyObject_CallMethodOneArg(ctx, s_ctx_dispatch, priority);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* _SelectorHook.place(priority): run the dispatch now or queue it, by GLib's rules with
 * asyncio's handles counting as sources of PRIORITY_DEFAULT. */
static PyObject *
hook_place(HookObject *self, PyObject *priority)
{
    double p = PyFloat_AsDouble(priority);
    if (p == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the selector hook is not bound to a context");
        return NULL;
    }
    if (p < 0) {
        if (call_method_void((PyObject *)self, s_urgent, ctx, priority, NULL) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *loop = REQUIRED(self, loop, "_loop");
    if (loop == NULL)
        return NULL;
    Py_INCREF(ctx);
    PyObject *ready = PyObject_GetAttr(loop, s_ready_q);
    if (ready == NULL)
        goto fail;
    int events = PyObject_IsTrue(self->events ? self->events : Py_None);
    Py_ssize_t nready = PyObject_Length(ready);
    if (events < 0 || nready < 0)
        goto fail_ready;
    int quiet = !events;
    if (quiet) {
        int due = timer_due(loop);
        if (due < 0)
            goto fail_ready;
        quiet = !due;
    }
    int rc = 0;
    if (p == 0) {
        if (quiet && nready == 0) {
            rc = ctx_call_dispatch(ctx, priority);  /* nothing of asyncio's to keep FIFO */
        }
        else if (quiet && nready == 1) {
            PyObject *first = PySequence_GetItem(ready, 0);
            if (first == NULL)
                goto fail_ready;
            int ours = first == self->dispatch_handle;
            Py_DECREF(first);
            if (ours) {
                /* only our own queued dispatch: run it here, in order */
                rc = call_method_void(ready, s_clear, NULL, NULL, NULL);
                if (rc == 0) {
                    self->queued = 0;
                    rc = ctx_call_dispatch(ctx, priority);
                }
            }
            else {
                rc = hook_queue(self);
            }
        }
        else {
            rc = hook_queue(self);
        }
    }
    else if (quiet && nready == 0) {
        rc = ctx_call_dispatch(ctx, priority);  /* idle-class: asyncio has nothing to run */
    }
    else {
        /* asyncio's work first: no big lock held meanwhile */
        rc = call_method_void(ctx, s_dispatch_postponed, NULL, NULL, NULL);
    }
    Py_DECREF(ready);
    Py_DECREF(ctx);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
fail_ready:
    Py_DECREF(ready);
fail:
    Py_DECREF(ctx);
    return NULL;
}

static PyMethodDef hook_methods[] = {
    {"select", (PyCFunction)(void (*)(void))hook_select, METH_FASTCALL | METH_KEYWORDS,
     "select($self, /, timeout=None)\n--\n\n"
     "prepare -> the real select -> check -> place the dispatch."},
    {"poll", (PyCFunction)hook_poll, METH_O,
     "poll($self, wait, /)\n--\n\n"
     "The context's poll: asyncio's own select, for the shorter of both timeouts."},
    {"place", (PyCFunction)hook_place, METH_O,
     "place($self, priority, /)\n--\n\n"
     "Run the dispatch of ``priority`` now or queue it against asyncio's ready queue."},
    {"source_ready", (PyCFunction)hook_source_ready, METH_O,
     "source_ready($self, priority, /)\n--\n\n"
     "A source became ready: queue the default-priority dispatch, FIFO."},
    {NULL}
};

#define HM(name, type, field) {name, type, offsetof(HookObject, field), 0, NULL}
static PyMemberDef hook_members[] = {
    HM("_loop", T_OBJECT, loop),
    HM("_ctx", T_OBJECT, ctx),
    HM("_clock", T_OBJECT, clock),
    HM("_select", T_OBJECT_EX, select),
    HM("_timeout", T_OBJECT, timeout),
    HM("_events", T_OBJECT_EX, events),
    HM("_dispatch_handle", T_OBJECT, dispatch_handle),
    HM("_preset", T_OBJECT, preset),
    HM("direct", T_OBJECT, direct),
    HM("_polls", T_OBJECT, polls),
    HM("_queued", T_BOOL, queued),
    {NULL}
};

static PyTypeObject HookType = CORE_TYPE(hook, HookObject, "HookCore",
    "The stock base's selector hook, as C (base of aioqloop.loop._SelectorHook).",
    hook_new);

/* ------------------------------------------------ attach and destroy, fast paths */
/* SourceSet._insert_tree / _remove for the common source: no prepare/check hooks, no
 * fds, no children, no parent, a built-in _attached.  Anything else goes to the Python
 * methods (the reference).  Deadlines.push is inlined; drop and rebuild stay Python. */
static PyObject *default_attached, *timeout_attached, *default_finalize, *default_maybe_finalize;
static PyObject *heappush;
static PyObject *s_has_prepare, *s_has_check, *s_attached, *s_finalize, *s_insert_tree;
static PyObject *s_remove, *s_seq_attr, *s_drop, *s_driver, *s_deadline_changed;


/* Deadlines.push: 1 if src is the new head, 0 if not, -1 on error. */
static int
deadlines_push(PyObject *deadlines, SourceObject *src, double when)
{
    if (src->in_heap && call_method_void(deadlines, s_drop, (PyObject *)src, NULL, NULL) < 0)
        return -1;
    PyObject *seq_o = PyObject_GetAttr(deadlines, s_seq_attr);
    Py_ssize_t seq = seq_o ? PyLong_AsSsize_t(seq_o) : -1;
    Py_XDECREF(seq_o);
    if (seq == -1 && PyErr_Occurred())
        return -1;
    seq++;
    PyObject *nseq = PyLong_FromSsize_t(seq);
    if (nseq == NULL || PyObject_SetAttr(deadlines, s_seq_attr, nseq) < 0) {
        Py_XDECREF(nseq);
        return -1;
    }
    src->heap_seq = seq;
    src->in_heap = 1;
    PyObject *entries = PyObject_GetAttr(deadlines, s_entries);
    PyObject *w = entries ? PyFloat_FromDouble(when) : NULL;
    PyObject *entry = w ? PyTuple_Pack(3, w, nseq, (PyObject *)src) : NULL;
    Py_XDECREF(w);
    Py_DECREF(nseq);
    int pushed = -1;
    if (entry != NULL && PyList_CheckExact(entries))
        pushed = timers_heappush(entries, entry);  /* heapq's push, compared in C */
    else if (entry != NULL) {
        PyObject *r = PyObject_CallFunctionObjArgs(heappush, entries, entry, NULL);
        pushed = r ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_XDECREF(entry);
    if (pushed < 0) {
        Py_XDECREF(entries);
        return -1;
    }
    int head = 0;
    if (PyList_Check(entries) && PyList_GET_SIZE(entries) > 0) {
        PyObject *first = PyList_GET_ITEM(entries, 0);
        if (PyTuple_Check(first) && PyTuple_GET_SIZE(first) == 3)
            head = PyTuple_GET_ITEM(first, 2) == (PyObject *)src
                   && ((SourceObject *)src)->heap_seq == seq;
    }
    Py_DECREF(entries);
    return head;
}

/* MainContext._schedule_ready_time: (re)enter src's ready time in the heap. */
static int
schedule_ready_time_c(ContextObject *self, SourceObject *src)
{
    if (src->destroyed || src->context != (PyObject *)self)
        return 0;
    double when = src->ready_time;
    if (src->ready_by_time && src->ready && !src->dispatching) {
        int passed = when == -1;
        if (!passed) {
            double now;
            if (clock_now(self, &now) < 0)
                return -1;
            passed = when > now;
        }
        /* READY came only from the old ready time; GLib would not see it ready now */
        if (passed && unmark_ready(self, src) < 0)
            return -1;
    }
    PyObject *deadlines = REQUIRED(self, deadlines, "_deadlines");
    if (deadlines == NULL)
        return -1;
    if (when == -1 || isinf(when))
        return call_method_void(deadlines, s_drop, (PyObject *)src, NULL, NULL);
    int head = deadlines_push(deadlines, src, when);
    if (head <= 0)
        return head;
    return timers_deadline_changed((PyObject *)self, when);
}

static PyObject *
ctx_schedule_ready_time(ContextObject *self, PyObject *src)
{
    if (!Source_Check(src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    if (schedule_ready_time_c(self, (SourceObject *)src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
plain_source(SourceObject *src, PyObject **attached)
{
    PyTypeObject *type = Py_TYPE(src);
    if (class_flag(type, s_has_prepare) || class_flag(type, s_has_check))
        return 0;
    if (list_len(src->fds) != 0 || list_len(src->children) != 0 || !IS_NONE(src->parent))
        return 0;
    if (PyErr_Occurred())
        return -1;
    if (attached != NULL) {
        *attached = _PyType_Lookup(type, s_attached);
        if (*attached != default_attached && *attached != timeout_attached)
            return 0;
    }
    return 1;
}

/* _insert(src): insert an attached source (owner thread). */
static PyObject *
ctx_insert(ContextObject *self, PyObject *srcobj)
{
    if (!Source_Check(srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    if (src->destroyed)
        Py_RETURN_NONE;
    PyObject *attached = NULL;
    int plain = default_attached != NULL ? plain_source(src, &attached) : 0;
    if (plain < 0)
        return NULL;
    if (!plain)
        return PyObject_CallMethodOneArg((PyObject *)self, s_insert_tree, srcobj);
    /* no attach order yet (an empty tuple, or none at all after a del) */
    if (src->order == NULL || (PyTuple_Check(src->order) && PyTuple_GET_SIZE(src->order) == 0)) {
        PyObject *seq_o = PyObject_GetAttr((PyObject *)self, s_seq_attr);
        Py_ssize_t seq = seq_o ? PyLong_AsSsize_t(seq_o) : -1;
        Py_XDECREF(seq_o);
        if (seq == -1 && PyErr_Occurred())
            return NULL;
        PyObject *nseq = PyLong_FromSsize_t(seq + 1);
        if (nseq == NULL || PyObject_SetAttr((PyObject *)self, s_seq_attr, nseq) < 0) {
            Py_XDECREF(nseq);
            return NULL;
        }
        PyObject *one = PyLong_FromLong(1);
        PyObject *order = one ? PyTuple_Pack(2, nseq, one) : NULL;  /* (seq, 1) */
        Py_XDECREF(one);
        Py_DECREF(nseq);
        if (order == NULL)
            return NULL;
        Py_XSETREF(src->order, order);
    }
    if (follow_clock(self) < 0)  /* a timeout's first expiry is computed from it */
        return NULL;
    if (attached == timeout_attached && src->ready_time == -1) {
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
    if (!Source_Check(srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    int plain = default_attached != NULL ? plain_source(src, NULL) : 0;
    if (plain < 0)
        return NULL;
    PyTypeObject *type = Py_TYPE(src);
    if (!plain || _PyType_Lookup(type, s_maybe_finalize) != default_maybe_finalize)
        return PyObject_CallMethodOneArg((PyObject *)self, s_remove, srcobj);
    if ((src->ready || src->ready_by_time || src->ready_by_child) && unmark_ready(self, src) < 0)
        return NULL;
    if (src->in_heap) {
        PyObject *deadlines = REQUIRED(self, deadlines, "_deadlines");
        if (deadlines == NULL || call_method_void(deadlines, s_drop, srcobj, NULL, NULL) < 0)
            return NULL;
    }
    /* Source._maybe_finalize */
    if (src->finalized || src->dispatching)
        Py_RETURN_NONE;
    src->finalized = 1;
    Py_CLEAR(src->callback);
    Py_XSETREF(src->args, PyTuple_New(0));
    if (_PyType_Lookup(type, s_finalize) == default_finalize)
        Py_RETURN_NONE;  /* the default finalize does nothing */
    PyObject *r = PyObject_CallMethodNoArgs(srcobj, s_finalize);
    if (r != NULL) {
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_GeneratorExit))
        return NULL;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    PyErr_NormalizeException(&et, &ev, &etb);
    if (etb != NULL && ev != NULL)
        PyException_SetTraceback(ev, etb);
    PyObject *phase = PyUnicode_FromString("finalize");
    r = phase ? PyObject_CallMethodObjArgs((PyObject *)self, s_report, ev ? ev : Py_None,
                                           srcobj, phase, NULL) : NULL;
    Py_XDECREF(phase);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(etb);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* ----------------------------------------------------- collect and destroy, in C */
static PyObject *heappop, *default_destroy;
static PyObject *s_run_ops, *s_lock, *s_owner, *s_closed_attr, *s_notify;
static PyObject *s_check_loop_open, *s_is_closed, *s_owned_by_loop;
static PyObject *s_bh_source, *s_stale_attr, *s_release, *s_acquire;

/* Deadlines.pop_due(now) without the list: each due live source goes to on_due. */
static int
pop_due_into(ContextObject *self, double now)
{
    PyObject *deadlines = REQUIRED(self, deadlines, "_deadlines");
    if (deadlines == NULL)
        return -1;
    Py_INCREF(deadlines);
    PyObject *heap = PyObject_GetAttr(deadlines, s_entries);
    int rc = heap != NULL && PyList_Check(heap) ? 0 : -1;
    if (rc < 0 && heap != NULL)
        PyErr_SetString(PyExc_TypeError, "Deadlines.entries must be a list");
    Py_ssize_t stale_popped = 0;
    while (rc == 0 && PyList_GET_SIZE(heap) > 0) {
        PyObject *first = PyList_GET_ITEM(heap, 0);
        if (!PyTuple_Check(first) || PyTuple_GET_SIZE(first) != 3) {
            PyErr_SetString(PyExc_TypeError, "bad Deadlines entry");
            rc = -1;
            break;
        }
        double when = PyFloat_AsDouble(PyTuple_GET_ITEM(first, 0));
        if (when == -1.0 && PyErr_Occurred()) {
            rc = -1;
            break;
        }
        if (when > now)
            break;
        PyObject *entry = PyList_CheckExact(heap) ? timers_heappop(heap)
                                                  : PyObject_CallOneArg(heappop, heap);
        if (entry == NULL) {
            rc = -1;
            break;
        }
        PyObject *srcobj = PyTuple_GET_ITEM(entry, 2);
        Py_ssize_t seq = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1));
        if (!Source_Check(srcobj) || (seq == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "bad Deadlines entry");
            Py_DECREF(entry);
            rc = -1;
            break;
        }
        SourceObject *src = (SourceObject *)srcobj;
        if (!(src->in_heap && src->heap_seq == seq)) {
            stale_popped++;  /* dropped lazily earlier */
            Py_DECREF(entry);
            continue;
        }
        src->in_heap = 0;
        if (src->blocked) {
            PyObject *due = REQUIRED(self, blocked_due, "_blocked_due");
            rc = due == NULL ? -1 : PyList_Append(due, srcobj);
        }
        else if (!src->ready) {
            rc = mark_ready(self, srcobj);
            src->ready_by_time = src->ready;
        }
        Py_DECREF(entry);
    }
    Py_XDECREF(heap);
    if (stale_popped) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);  /* an error of the loop above stays the one raised */
        PyObject *st = PyObject_GetAttr(deadlines, s_stale_attr);
        Py_ssize_t v = st ? PyLong_AsSsize_t(st) : -1;
        Py_XDECREF(st);
        PyObject *nv = (v == -1 && PyErr_Occurred()) ? NULL : PyLong_FromSsize_t(v - stale_popped);
        if (nv == NULL || PyObject_SetAttr(deadlines, s_stale_attr, nv) < 0)
            rc = -1;
        Py_XDECREF(nv);
        if (et != NULL) {
            if (PyErr_Occurred()) {
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(etb);
            }
            else {
                PyErr_Restore(et, ev, etb);
            }
        }
    }
    Py_DECREF(deadlines);
    return rc;
}

/* MainContext._collect: foreign ops, the cached time, bottom halves, due ready times. */
static PyObject *
ctx_collect(ContextObject *self, PyObject *unused)
{
    int ops = nonempty_attr(self->waker, s_ops);
    if (ops < 0 || (ops && call_method_void(self->waker, s_run_ops, NULL, NULL, NULL) < 0))
        return NULL;
    if (read_clock(self) < 0)
        return NULL;
    double now = self->now;
    int bh = bh_pending(self);
    if (bh < 0)
        return NULL;
    if (bh) {
        PyObject *bsrc = PyObject_GetAttr(self->bh, s_bh_source);
        int rc = bsrc ? mark_ready(self, bsrc) : -1;
        Py_XDECREF(bsrc);
        if (rc < 0)
            return NULL;
    }
    if (heappop != NULL && pop_due_into(self, now) < 0)
        return NULL;
    return PyFloat_FromDouble(now);
}

/* Source.destroy for a source whose class keeps it, from the core (owner thread). */
static int
destroy_source(SourceObject *src)
{
    PyObject *srcobj = (PyObject *)src;
    if (default_destroy == NULL || _PyType_Lookup(Py_TYPE(src), s_destroy) != default_destroy
            || !is_context(src->context))
        return call_method_void(srcobj, s_destroy, NULL, NULL, NULL);
    if (src->destroyed)
        return 0;
    PyObject *ctx = src->context;
    /* another thread owns the context: the Python method posts the removal */
    PyObject *owner = PyObject_GetAttr(ctx, s_owner);
    if (owner == NULL)
        return -1;
    int unowned = owner == Py_None, foreign = 0;
    if (!unowned) {
        unsigned long who = PyLong_AsUnsignedLong(owner);
        foreign = !(who == (unsigned long)-1 && PyErr_Occurred())
                  && who != PyThread_get_thread_ident();
    }
    Py_DECREF(owner);
    if (PyErr_Occurred())
        return -1;
    if (foreign)
        return call_method_void(srcobj, s_destroy, NULL, NULL, NULL);
    PyObject *waker = ((ContextObject *)ctx)->waker;
    PyObject *lock = IS_NONE(waker) ? NULL : PyObject_GetAttr(waker, s_lock);
    PyObject *sources = lock ? PyObject_GetAttr(ctx, s_sources) : NULL;
    if (sources == NULL || !PyDict_CheckExact(sources)) {
        /* not the plain state this path knows: the Python method (the reference) */
        Py_XDECREF(sources);
        Py_XDECREF(lock);
        if (PyErr_Occurred())
            return -1;
        return call_method_void(srcobj, s_destroy, NULL, NULL, NULL);
    }
    src->destroyed = 1;
    Py_INCREF(ctx);
    Py_INCREF(srcobj);
    int rc = -1;
    if (call_method_void(lock, s_acquire, NULL, NULL, NULL) < 0)
        goto out;
    PyObject *key = PyLong_FromSsize_t(src->id);
    int drc = -1;
    if (key != NULL) {
        PyObject *cur = PyDict_GetItemWithError(sources, key);
        drc = cur == srcobj ? PyDict_DelItem(sources, key) : (PyErr_Occurred() ? -1 : 0);
        Py_DECREF(key);
    }
    if (call_method_void(lock, s_release, NULL, NULL, NULL) < 0 || drc < 0)
        goto out;
    int is_closed = attr_truth(ctx, s_closed_attr);
    if (is_closed < 0)
        goto out;
    PyObject *r = ctx_remove_source((ContextObject *)ctx, srcobj);
    if (r == NULL)
        goto out;
    Py_DECREF(r);
    rc = 0;
    if (!is_closed && unowned)
        rc = timers_notify(waker);
out:
    Py_XDECREF(sources);
    Py_XDECREF(lock);
    Py_DECREF(srcobj);
    Py_DECREF(ctx);
    return rc;
}

/* SourceSet._attach: give src an id in this context and insert it (any thread). */
static PyObject *s_closing_attr, *s_next_id, *s_post_insert;

static PyObject *
ctx_attach(ContextObject *self, PyObject *srcobj)
{
    if (!Source_Check(srcobj)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    PyObject *waker = self->waker;
    if (IS_NONE(waker)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext is closed");
        return NULL;
    }
    Py_INCREF(waker);
    PyObject *lock = PyObject_GetAttr(waker, s_lock);
    PyObject *sources = lock ? PyObject_GetAttr((PyObject *)self, s_sources) : NULL;
    PyObject *result = NULL;
    if (sources == NULL || !PyDict_Check(sources)) {
        if (sources != NULL)
            PyErr_SetString(PyExc_TypeError, "MainContext._sources must be a dict");
        goto out;
    }
    if (call_method_void(lock, s_acquire, NULL, NULL, NULL) < 0)
        goto out;
    long sid = -1;
    {
        int closed = attr_truth((PyObject *)self, s_closed_attr);
        int closing = closed == 0 ? attr_truth((PyObject *)self, s_closing_attr) : 0;
        int open = closed == 0 && closing == 0;
        /* A closed loop refuses the attach before anything changes (see
         * MainContext._check_loop_open); a loop's own context is closed with it. */
        int own = open ? attr_truth((PyObject *)self, s_owned_by_loop) : 0;
        if (own < 0 || (open && !own
                        && call_method_void((PyObject *)self, s_check_loop_open,
                                            NULL, NULL, NULL) < 0))
            open = 0;
        PyObject *next = open ? PyObject_GetAttr((PyObject *)self, s_next_id) : NULL;
        if (closed > 0 || closing > 0)
            PyErr_SetString(PyExc_RuntimeError, "the MainContext is closed");
        if (next != NULL) {
            sid = PyLong_AsLong(next);
            Py_DECREF(next);
        }
        while (sid >= 0 && !PyErr_Occurred()) {
            PyObject *key = PyLong_FromLong(sid);
            int taken = key ? (sid == 0 || PyDict_Contains(sources, key)) : -1;
            if (taken == 0) {
                PyObject *nxt = PyLong_FromLong((sid + 1) & 0xFFFFFFFFL);
                int rc = nxt ? PyObject_SetAttr((PyObject *)self, s_next_id, nxt) : -1;
                Py_XDECREF(nxt);
                if (rc == 0 && PyDict_SetItem(sources, key, srcobj) == 0) {
                    src->id = sid;
                    Py_INCREF(self);
                    Py_XSETREF(src->context, (PyObject *)self);
                }
                Py_DECREF(key);
                break;
            }
            Py_XDECREF(key);
            if (taken < 0)
                break;
            sid = (sid + 1) & 0xFFFFFFFFL;
        }
    }
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        int rrc = call_method_void(lock, s_release, NULL, NULL, NULL);
        if (rrc < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
            goto out;
        }
        PyErr_Restore(et, ev, etb);
        if (et != NULL)
            goto out;
    }
    /* _local_or_post, without a closure: insert here, or post it to the owner */
    PyObject *owner = PyObject_GetAttr((PyObject *)self, s_owner);
    if (owner == NULL)
        goto out;
    int unowned = owner == Py_None, foreign = 0;
    if (!unowned) {
        unsigned long who = PyLong_AsUnsignedLong(owner);
        foreign = !(who == (unsigned long)-1 && PyErr_Occurred())
                  && who != PyThread_get_thread_ident();
    }
    Py_DECREF(owner);
    if (PyErr_Occurred())
        goto out;
    int rc;
    if (foreign) {
        rc = call_method_void((PyObject *)self, s_post_insert, srcobj, NULL, NULL);
    }
    else {
        PyObject *r = ctx_insert(self, srcobj);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
        if (rc == 0 && unowned)  /* unowned: a thread may be starting to block */
            rc = timers_notify(waker);
    }
    if (rc == 0)
        result = PyLong_FromLong(sid);
out:
    Py_XDECREF(sources);
    Py_XDECREF(lock);
    Py_DECREF(waker);
    return result;
}

/* ------------------------------------------------------------------- PlainCore */
/* The plain driver (aioqloop.bridge.PlainDriver): a context driven from loop callbacks
 * through public loop API (the uvloop base, any asyncio loop).  Its per-iteration
 * methods are here; arming timers and closing stay in Python on the subclass. */
typedef struct {
    PyObject_HEAD
    PyObject *ctx, *loop, *handle, *timer, *timeout, *run_cb;
    double timer_when, slack;
    Py_ssize_t iterations_run, empty_iterations;  /* figures for statistics() */
    char closed, owned;
    char batch;  /* 0 outside _run; 1 in its batch; 2: one more iteration was asked for */
} PlainObject;

/* The most iterations one loop callback runs while sources stay ready (bridge.BATCH). */
#define PLAIN_BATCH 64

static PyTypeObject PlainType;
static PyObject *plain_poll_descr, *plain_place_descr;
static PyObject *s_call_soon, *s_run, *s_cancel;
static PyObject *s_always_ready_pending, *s_next_deadline;

#define PLAIN_FIELDS(X) \
    X(ctx) X(loop) X(handle) X(timer) X(timeout) X(run_cb)
GC_FUNCTIONS(plain, PlainObject, PLAIN_FIELDS)

static PyObject *
plain_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PlainObject *self = (PlainObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->timer_when = INFINITY;
    return (PyObject *)self;
}

/* MainContext.has_work: is anything ready or due without waiting?  -1 on error. */
static int
has_work(ContextObject *self)
{
    if (!IS_NONE(self->gate)) {
        int deferred = attr_truth(self->gate, s_deferred);
        if (deferred != 0)
            return deferred < 0 ? -1 : 0;
    }
    if (!ready_ok(self))
        return -1;
    if (PyDict_GET_SIZE(self->ready))
        return 1;
    int r = bh_pending(self);
    if (r == 0)
        r = nonempty_attr(self->waker, s_ops);
    if (r != 0)
        return r;
    r = nonempty_attr(self->fds, s_always);
    if (r > 0)
        r = call_truth(self->fds, s_always_ready_pending);
    if (r != 0)
        return r;
    PyObject *deadlines = REQUIRED(self, deadlines, "_deadlines");
    PyObject *entries = deadlines ? PyObject_GetAttr(deadlines, s_entries) : NULL;
    if (entries == NULL)
        return -1;
    if (!PyList_Check(entries) || PyList_GET_SIZE(entries) == 0) {
        Py_DECREF(entries);
        return 0;
    }
    PyObject *head = PyList_GET_ITEM(entries, 0);
    double when = PyTuple_Check(head) && PyTuple_GET_SIZE(head) > 0
                  ? PyFloat_AsDouble(PyTuple_GET_ITEM(head, 0)) : -1.0;
    Py_DECREF(entries);
    double now;
    if ((when == -1.0 && PyErr_Occurred()) || clock_now(self, &now) < 0)
        return -1;
    return when <= now;
}

static PyObject *
ctx_has_work(ContextObject *self, PyObject *unused)
{
    int r = has_work(self);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* MainContext.next_deadline: the earliest ready time in loop seconds (inf if none). */
static int
next_deadline(ContextObject *self, double *out)
{
    int any = nonempty_attr(self->deadlines, s_entries);
    if (any <= 0) {
        *out = INFINITY;
        return any;
    }
    return timers_next_deadline(self->deadlines, out);
}

static PyObject *
ctx_next_deadline(ContextObject *self, PyObject *unused)
{
    double d;
    return next_deadline(self, &d) < 0 ? NULL : PyFloat_FromDouble(d);
}

/* MainContext.time: cached during an iteration, else the loop's now. */
static int
context_time(ContextObject *self, double *out)
{
    if (self->in_iteration || self->in_hook) {
        *out = self->now;
        return 0;
    }
    return clock_now(self, out);
}

static PyObject *
ctx_time(ContextObject *self, PyObject *unused)
{
    double t;
    return context_time(self, &t) < 0 ? NULL : PyFloat_FromDouble(t);
}

static int
plain_kick(PlainObject *self)
{
    /* inside a batch the batch itself looks again: no call_soon per source made ready */
    if (!IS_NONE(self->handle) || self->closed || self->batch)
        return 0;
    if (self->run_cb == NULL && (self->run_cb = PyObject_GetAttr((PyObject *)self, s_run)) == NULL)
        return -1;
    PyObject *loop = REQUIRED(self, loop, "_loop");
    if (loop == NULL)
        return -1;
    Py_INCREF(loop);  /* call_soon runs Python code that may replace self->loop */
    PyObject *h = PyObject_CallMethodOneArg(loop, s_call_soon, self->run_cb);
    if (h == NULL) {
        /* A closed loop has nothing to run (new work is refused up front, see
         * MainContext._check_loop_open): a notification in the middle of a change
         * must let the change finish (PlainDriver._kick). */
        int is_closed = -1;
        if (PyErr_ExceptionMatches(PyExc_RuntimeError)) {
            PyObject *et, *ev, *etb;
            PyErr_Fetch(&et, &ev, &etb);
            PyObject *closed = PyObject_CallMethodNoArgs(loop, s_is_closed);
            is_closed = closed ? PyObject_IsTrue(closed) : -1;
            Py_XDECREF(closed);
            if (is_closed == 0)
                PyErr_Restore(et, ev, etb);  /* open loop: the original error goes on */
            else {  /* closed: nothing to report; is_closed() failed: that error goes on */
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(etb);
            }
        }
        Py_DECREF(loop);
        return is_closed > 0 ? 0 : -1;
    }
    Py_DECREF(loop);
    Py_XSETREF(self->handle, h);
    return 0;
}

static PyObject *
plain_kick_meth(PlainObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "_kick() takes at most one argument");
        return NULL;
    }
    if (plain_kick(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._rearm(timeout): the earliest of the next deadline and the prepare
 * phase's wait becomes the timer (Python's deadline_changed arms it). */
static int
plain_rearm(PlainObject *self, PyObject *timeout)
{
    if (self->closed)
        return 0;
    if (!is_context(self->ctx)) {
        PyErr_SetString(PyExc_TypeError, "the driver's context is not a MainContext");
        return -1;
    }
    ContextObject *ctx = (ContextObject *)self->ctx;
    double deadline;
    if (next_deadline(ctx, &deadline) < 0)
        return -1;
    if (!IS_NONE(timeout)) {
        double t = PyFloat_AsDouble(timeout), now;
        if ((t == -1.0 && PyErr_Occurred()) || context_time(ctx, &now) < 0)
            return -1;
        if (now + t < deadline)
            deadline = now + t;
    }
    if (deadline < self->timer_when) {
        PyObject *d = PyFloat_FromDouble(deadline);
        int rc = d ? call_method_void((PyObject *)self, s_deadline_changed, d, NULL, NULL) : -1;
        Py_XDECREF(d);
        return rc;
    }
    return 0;
}

static PyObject *
plain_rearm_meth(PlainObject *self, PyObject *timeout)
{
    if (plain_rearm(self, timeout) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._iterate_once: one iteration; 1 if another is due now, 0 once the timer
 * is armed for the next, -1 on error. */
static int
plain_iterate_once(PlainObject *self, ContextObject *ctx)
{
    Py_CLEAR(self->timeout);
    self->iterations_run++;
    int r = iterate_impl(ctx, (PyObject *)self, 1, 1);
    if (r < 0)
        return -1;
    if (r == 0)
        self->empty_iterations++;
    /* re-check after publishing "may sleep" (QEMU's notify_me handshake) */
    int again = self->batch == 2;
    self->batch = 1;
    int work = again ? 1 : has_work(ctx);
    if (work != 0)
        return work;
    PyObject *wait = self->timeout ? self->timeout : Py_None;
    if (r == 1 && PyFloat_Check(wait) && PyFloat_AS_DOUBLE(wait) == 0.0) {
        /* Prepare's zero said "something is ready", and the dispatch ran it: re-arming
         * it would fire an empty iteration right away.  Only a new prepare knows the
         * wait of prepare hooks, or of the fd audit when no timer is armed for it
         * (MainContext._wait_needs_prepare). */
        int needs = nonempty_attr(ctx->prepare_hooks, s_prios);
        if (needs == 0 && isinf(self->timer_when))
            needs = nonempty_attr(ctx->fds, s_masks);
        if (needs < 0)
            return -1;
        if (needs == 0)
            wait = Py_None;
    }
    Py_INCREF(wait);
    int rc = plain_rearm(self, wait);
    Py_DECREF(wait);
    return rc < 0 ? -1 : 0;
}

/* PlainDriver._run: GLib iterations without a wait while sources are ready (at most
 * PLAIN_BATCH in one loop callback), then arrange for the next. */
static PyObject *
plain_run(PlainObject *self, PyObject *unused)
{
    Py_CLEAR(self->handle);
    if (self->closed)  /* closing the context closes its driver first */
        Py_RETURN_NONE;
    PyObject *ctxo = self->ctx;
    if (!is_context(ctxo)) {
        PyErr_SetString(PyExc_TypeError, "the driver's context is not a MainContext");
        return NULL;
    }
    Py_INCREF(ctxo);
    ContextObject *ctx = (ContextObject *)ctxo;
    if (!self->owned) {
        /* the loop's thread owns the context from its first iteration on */
        int ok = call_truth(ctxo, s_acquire);
        if (ok <= 0) {
            int rc = -1;
            if (ok == 0) {
                PyObject *again = PyFloat_FromDouble(0.01);
                rc = again ? plain_rearm(self, again) : -1;  /* look again soon */
                Py_XDECREF(again);
            }
            Py_DECREF(ctxo);
            if (rc < 0)
                return NULL;
            Py_RETURN_NONE;
        }
        self->owned = 1;
    }
    int more = 1;
    self->batch = 1;  /* sources made ready meanwhile need no call_soon: we look again */
    for (int i = 0; i < PLAIN_BATCH; i++) {
        if (i > 0) {
            /* GLib polls in every iteration: fd events and wake-ups that came meanwhile
             * compete with the sources that stayed ready. */
            PyObject *epoll = PyObject_GetAttr(ctx->fds, s_epoll);
            if (epoll == NULL) {
                more = -1;
                break;
            }
            int open = epoll != Py_None;
            Py_DECREF(epoll);
            if (open && ctx_call_poll_ready(ctxo) < 0) {
                more = -1;
                break;
            }
        }
        more = plain_iterate_once(self, ctx);
        if (more <= 0 || self->closed)
            break;
    }
    self->batch = 0;
    Py_DECREF(ctxo);
    /* finally: after a KeyboardInterrupt/SystemExit the iteration is unfinished (a
     * prepare hook may not have said how long to wait): iterate again when the loop
     * runs again.  A spent batch lets the loop's own callbacks run first. */
    if (more != 0) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (plain_kick(self) < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
            return NULL;
        }
        PyErr_Restore(et, ev, etb);
    }
    if (more < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* PlainDriver._on_readable: dispatch right here, as an add_reader callback would. */
static PyObject *
plain_on_readable(PlainObject *self, PyObject *unused)
{
    int queued = !IS_NONE(self->handle);
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the driver has no context");
        return NULL;
    }
    if (ctx_call_poll_ready(ctx) < 0)
        return NULL;
    if (queued)  /* an iteration is already queued: keep FIFO order */
        Py_RETURN_NONE;
    if (!IS_NONE(self->handle)) {
        /* queued by the readiness just recorded: run it now */
        if (call_method_void(self->handle, s_cancel, NULL, NULL, NULL) < 0)
            return NULL;
    }
    return plain_run(self, NULL);
}

static PyObject *
plain_poll(PlainObject *self, PyObject *timeout)
{
    /* asyncio did the waiting; the prepare phase's wait is re-armed as a timer after */
    Py_INCREF(timeout);
    Py_XSETREF(self->timeout, timeout);
    Py_RETURN_NONE;
}

static PyObject *
plain_place(PlainObject *self, PyObject *priority)
{
    if (ctx_call_dispatch(self->ctx, priority) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef plain_methods[] = {
    {"_kick", (PyCFunction)(void (*)(void))plain_kick_meth, METH_FASTCALL,
     "_kick($self, _priority=0, /)\n--\n\n"
     "Queue one iteration (a source became ready)."},
    {"_rearm", (PyCFunction)plain_rearm_meth, METH_O,
     "_rearm($self, timeout, /)\n--\n\n"
     "Arm the timer for the next deadline or the prepare phase's wait."},
    {"_run", (PyCFunction)plain_run, METH_NOARGS,
     "_run($self, /)\n--\n\n"
     "One GLib iteration without a wait; then arrange for the next."},
    {"_on_readable", (PyCFunction)plain_on_readable, METH_NOARGS,
     "_on_readable($self, /)\n--\n\n"
     "The context's fd is readable: record it and iterate."},
    {"poll", (PyCFunction)plain_poll, METH_O,
     "poll($self, timeout, /)\n--\n\n"
     "The driver's poll (asyncio did the waiting)."},
    {"place", (PyCFunction)plain_place, METH_O,
     "place($self, priority, /)\n--\n\n"
     "Dispatch the ready priority now."},
    {NULL}
};

#define PM(name, type, field) {name, type, offsetof(PlainObject, field), 0, NULL}
static PyMemberDef plain_members[] = {
    PM("_ctx", T_OBJECT, ctx),
    PM("_loop", T_OBJECT, loop),
    PM("_handle", T_OBJECT, handle),
    PM("_timer", T_OBJECT, timer),
    PM("_timeout", T_OBJECT, timeout),
    PM("_timer_when", T_DOUBLE, timer_when),
    PM("_slack", T_DOUBLE, slack),
    PM("_closed", T_BOOL, closed),
    PM("_owned", T_BOOL, owned),
    PM("_iterations_run", T_PYSSIZET, iterations_run),
    PM("_empty_iterations", T_PYSSIZET, empty_iterations),
    PM("_batch", T_BYTE, batch),
    {NULL}
};

static PyTypeObject PlainType = CORE_TYPE(plain, PlainObject, "PlainCore",
    "The plain driver's per-iteration methods, as C (base of PlainDriver).",
    plain_new);

static PyObject *
driver_poll(PyObject *driver, PyObject *timeout)
{
    if (PyObject_TypeCheck(driver, &HookType)
            && _PyType_Lookup(Py_TYPE(driver), s_poll) == hook_poll_descr)
        return hook_poll((HookObject *)driver, timeout);
    if (PyObject_TypeCheck(driver, &PlainType)
            && _PyType_Lookup(Py_TYPE(driver), s_poll) == plain_poll_descr)
        return plain_poll((PlainObject *)driver, timeout);
    return PyObject_CallMethodOneArg(driver, s_poll, timeout);
}

static PyObject *
driver_place(PyObject *driver, PyObject *prio)
{
    if (PyObject_TypeCheck(driver, &HookType)
            && _PyType_Lookup(Py_TYPE(driver), s_place) == hook_place_descr)
        return hook_place((HookObject *)driver, prio);
    if (PyObject_TypeCheck(driver, &PlainType)
            && _PyType_Lookup(Py_TYPE(driver), s_place) == plain_place_descr)
        return plain_place((PlainObject *)driver, prio);
    return PyObject_CallMethodOneArg(driver, s_place, prio);
}

/* -------------------------------------------------------------------- BHCore */
/* A bottom half's state and qemu_bh_schedule (aioqloop.bottomhalf.BottomHalf): any
 * thread schedules; the context's thread runs it through the carrier source. */
typedef struct {
    PyObject_HEAD
    PyObject *callback, *args, *ctx, *name;
    char scheduled, deleted, oneshot;
} BHObject;

static PyObject *s_bh, *s_queue, *s_pending_attr, *s_notify_locked, *s_waker_attr;

#define BH_FIELDS(X) \
    X(callback) X(args) X(ctx) X(name)
GC_FUNCTIONS(bh, BHObject, BH_FIELDS)

static PyObject *
bh_schedule(BHObject *self, PyObject *unused)
{
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
    PyObject *carrier = PyObject_GetAttr(ctx, s_bh);
    PyObject *waker = carrier ? PyObject_GetAttr(ctx, s_waker_attr) : NULL;
    PyObject *lock = waker ? PyObject_GetAttr(waker, s_lock) : NULL;
    PyObject *result = NULL, *source = NULL;
    if (lock == NULL || call_method_void(lock, s_acquire, NULL, NULL, NULL) < 0)
        goto out;
    int local = 0, done = 0;
    {
        int closed = attr_truth(waker, s_closed_attr);
        if (closed > 0)
            PyErr_Format(PyExc_RuntimeError, "schedule() of %R: its MainContext is closed",
                         (PyObject *)self);
        if (closed != 0)
            goto unlock;
        if (self->scheduled) {
            done = 1;
            goto unlock;
        }
        if (IS_NONE(carrier)) {
            PyErr_SetString(PyExc_RuntimeError, "the context has no bottom-half carrier");
            goto unlock;
        }
        /* refused before anything changes: work nothing would ever run (a loop's own
         * context is closed with its loop, and the waker with it) */
        int own = attr_truth(ctx, s_owned_by_loop);
        if (own < 0 || (!own && call_method_void(ctx, s_check_loop_open,
                                                 NULL, NULL, NULL) < 0))
            goto unlock;
        self->scheduled = 1;
        PyObject *pending = PyObject_GetAttr(carrier, s_pending_attr);
        long n = pending ? PyLong_AsLong(pending) : -1;
        Py_XDECREF(pending);
        if (n == -1 && PyErr_Occurred())
            goto unlock;
        PyObject *queue = PyObject_GetAttr(carrier, s_queue);
        if (queue == NULL)
            goto unlock;
        int rc = 0;
        if (n == 0)  /* only cancelled entries can be left */
            rc = call_method_void(queue, s_clear, NULL, NULL, NULL);
        PyObject *np = rc == 0 ? PyLong_FromLong(n + 1) : NULL;
        if (np == NULL || PyObject_SetAttr(carrier, s_pending_attr, np) < 0
                || call_method_void(queue, s_append, (PyObject *)self, NULL, NULL) < 0) {
            Py_XDECREF(np);
            Py_DECREF(queue);
            goto unlock;
        }
        Py_DECREF(np);
        Py_DECREF(queue);
        PyObject *owner = PyObject_GetAttr(ctx, s_owner);
        if (owner == NULL)
            goto unlock;
        if (owner != Py_None) {
            unsigned long who = PyLong_AsUnsignedLong(owner);
            local = !(who == (unsigned long)-1 && PyErr_Occurred())
                    && who == PyThread_get_thread_ident();
        }
        Py_DECREF(owner);
        if (PyErr_Occurred())
            goto unlock;
        if (!local) {
            /* another thread (or an unowned context): wake the loop, once per burst */
            if (call_method_void(waker, s_notify_locked, NULL, NULL, NULL) < 0)
                goto unlock;
            done = 1;
        }
        else {
            source = PyObject_GetAttr(carrier, s_bh_source);
            if (source == NULL)
                goto unlock;
        }
    }
unlock:
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (call_method_void(lock, s_release, NULL, NULL, NULL) < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(etb);
            goto out;
        }
        PyErr_Restore(et, ev, etb);
        if (et != NULL)
            goto out;
    }
    if (done) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto out;
    }
    /* on the context's own thread the carrier is ready at once (FIFO with asyncio) */
    if (is_context(ctx) ? mark_ready((ContextObject *)ctx, source) < 0
                        : call_method_void(ctx, s_mark_ready, source, NULL, NULL) < 0)
        goto out;
    Py_INCREF(Py_None);
    result = Py_None;
out:
    Py_XDECREF(source);
    Py_XDECREF(lock);
    Py_XDECREF(waker);
    Py_XDECREF(carrier);
    Py_DECREF(ctx);
    return result;
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

static PyTypeObject BHType = CORE_TYPE(bh, BHObject, "BHCore",
    "A bottom half's state and schedule(), as C (base of BottomHalf).",
    PyType_GenericNew);

static int set_ref(PyObject **slot, PyObject *kw, const char *name);
/* ======================================================================== timers */
/* The timer paths in C: timeout_add and TimeoutSource's __init__ (GLib's
 * g_timeout_add_full / g_timeout_source_new), the ready-time heap's push and pop, the
 * driver's deadline notification, the deadlines-only prepare (g_main_context_prepare
 * when only ready times need a look), and the loop clock of the stock base.  Each one
 * has its Python twin (sources.py, _deadlines.py, context.py, bridge.py) and falls back
 * to it in any state it does not know, so that a timeout costs no Python frame but its
 * callback. */
static PyObject *tm_timeout_class;     /* TimeoutSource */
static PyObject *tm_source_class;      /* Source */
static PyObject *tm_registry;          /* aioqloop._registry (is_context, default_context) */
static PyObject *tm_check_interval, *tm_check_priority, *tm_check_name, *tm_check_callback;
static PyObject *tm_noop_deadline;     /* bridge.Driver.deadline_changed (does nothing) */
static PyObject *tm_plain_deadline;    /* bridge.PlainDriver.deadline_changed */
static PyObject *tm_loop_time;         /* asyncio.BaseEventLoop.time */
static PyObject *tm_time_module, *tm_monotonic;  /* time, time.monotonic */
static PyObject *tm_attach_descr;      /* ContextCore._attach */
static PyObject *s_tm_attach, *s_tm_time, *s_tm_monotonic, *s_tm_context_class;
static PyObject *s_tm_default_context;

/* BaseEventLoop.time() is ``time.monotonic()``: read that clock here, the same way
 * (nanoseconds to seconds as CPython rounds them), while nobody replaced either. */
static int
timers_fast_clock(PyObject *clock, double *out)
{
    if (tm_loop_time == NULL || !PyMethod_Check(clock)
            || PyMethod_GET_FUNCTION(clock) != tm_loop_time
            || !PyFunction_Check(tm_loop_time))
        return 0;
    PyObject *g = PyFunction_GET_GLOBALS(tm_loop_time);
    PyObject *mod = g ? PyDict_GetItemWithError(g, s_tm_time) : NULL;
    if (mod == NULL || mod != tm_time_module || !PyModule_Check(mod)) {
        PyErr_Clear();
        return 0;
    }
    PyObject *fn = PyDict_GetItemWithError(PyModule_GetDict(mod), s_tm_monotonic);
    if (fn == NULL || fn != tm_monotonic) {
        PyErr_Clear();
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) < 0) {
        PyErr_Clear();
        return 0;
    }
    *out = PyTime_AsSecondsDouble(t);
#else
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    volatile double d;
    if (ns % 1000000000LL == 0) {
        d = (double)(ns / 1000000000LL);
    }
    else {
        d = (double)ns;
        d /= 1e9;
    }
    *out = d;
#endif
    return 1;
}

/* One heap entry below another: (when, seq, source) compared as heapq compares them,
 * floats and ints read in C; 1, 0, or -1 with an exception. */
static int
timers_less(PyObject *a, PyObject *b)
{
    if (PyTuple_CheckExact(a) && PyTuple_CheckExact(b) && PyTuple_GET_SIZE(a) >= 2
            && PyTuple_GET_SIZE(b) >= 2) {
        PyObject *wa = PyTuple_GET_ITEM(a, 0), *wb = PyTuple_GET_ITEM(b, 0);
        if (PyFloat_CheckExact(wa) && PyFloat_CheckExact(wb)) {
            double x = PyFloat_AS_DOUBLE(wa), y = PyFloat_AS_DOUBLE(wb);
            if (x < y)
                return 1;
            if (x > y)
                return 0;
            PyObject *sa = PyTuple_GET_ITEM(a, 1), *sb = PyTuple_GET_ITEM(b, 1);
            if (x == y && PyLong_CheckExact(sa) && PyLong_CheckExact(sb)) {
                int ov1, ov2;
                long long i = PyLong_AsLongLongAndOverflow(sa, &ov1);
                long long j = PyLong_AsLongLongAndOverflow(sb, &ov2);
                if (!ov1 && !ov2 && !PyErr_Occurred() && i != j)
                    return i < j;
                PyErr_Clear();
            }
        }
    }
    Py_INCREF(a);
    Py_INCREF(b);
    int r = PyObject_RichCompareBool(a, b, Py_LT);
    Py_DECREF(a);
    Py_DECREF(b);
    return r;
}

/* heapq._siftdown on a list: move the item at pos up towards start. */
static int
timers_siftdown(PyObject *heap, Py_ssize_t start, Py_ssize_t pos)
{
    Py_ssize_t size = PyList_GET_SIZE(heap);
    PyObject *item = PyList_GET_ITEM(heap, pos);
    while (pos > start) {
        Py_ssize_t parentpos = (pos - 1) >> 1;
        PyObject *parent = PyList_GET_ITEM(heap, parentpos);
        int lt = timers_less(item, parent);
        if (lt < 0)
            return -1;
        if (size != PyList_GET_SIZE(heap) || PyList_GET_ITEM(heap, pos) != item) {
            PyErr_SetString(PyExc_RuntimeError, "the deadline heap changed during a compare");
            return -1;
        }
        if (!lt)
            break;
        parent = PyList_GET_ITEM(heap, parentpos);
        PyList_SET_ITEM(heap, parentpos, item);
        PyList_SET_ITEM(heap, pos, parent);
        pos = parentpos;
    }
    return 0;
}

/* heapq._siftup: move the smaller child up until a leaf, then sift the item down. */
static int
timers_siftup(PyObject *heap, Py_ssize_t pos)
{
    Py_ssize_t end = PyList_GET_SIZE(heap), start = pos;
    Py_ssize_t limit = end >> 1;
    while (pos < limit) {
        Py_ssize_t child = 2 * pos + 1;
        if (child + 1 < end) {
            int lt = timers_less(PyList_GET_ITEM(heap, child), PyList_GET_ITEM(heap, child + 1));
            if (lt < 0)
                return -1;
            if (end != PyList_GET_SIZE(heap)) {
                PyErr_SetString(PyExc_RuntimeError,
                                "the deadline heap changed during a compare");
                return -1;
            }
            child += !lt;
        }
        PyObject *tmp = PyList_GET_ITEM(heap, child);
        PyList_SET_ITEM(heap, child, PyList_GET_ITEM(heap, pos));
        PyList_SET_ITEM(heap, pos, tmp);
        pos = child;
    }
    return timers_siftdown(heap, start, pos);
}

/* heapq.heappush / heappop on the heap's list (the same layout heapq keeps). */
static int
timers_heappush(PyObject *heap, PyObject *entry)
{
    if (PyList_Append(heap, entry) < 0)
        return -1;
    return timers_siftdown(heap, 0, PyList_GET_SIZE(heap) - 1);
}

static PyObject *
timers_heappop(PyObject *heap)
{
    Py_ssize_t n = PyList_GET_SIZE(heap);
    if (n == 0) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    PyObject *last = PyList_GET_ITEM(heap, n - 1);
    Py_INCREF(last);
    if (PyList_SetSlice(heap, n - 1, n, NULL) < 0) {
        Py_DECREF(last);
        return NULL;
    }
    if (n == 1)
        return last;
    PyObject *top = PyList_GET_ITEM(heap, 0);
    PyList_SET_ITEM(heap, 0, last);  /* the list's reference to top is now ours */
    if (timers_siftup(heap, 0) < 0) {
        Py_DECREF(top);
        return NULL;
    }
    return top;
}

/* Deadlines.next_deadline: the earliest live ready time (inf if none); prunes stale
 * heads.  The Python method for a heap that is not a list. */
static int
timers_next_deadline(PyObject *deadlines, double *out)
{
    PyObject *heap = PyObject_GetAttr(deadlines, s_entries);
    if (heap == NULL)
        return -1;
    if (!PyList_CheckExact(heap)) {
        Py_DECREF(heap);
        PyObject *r = PyObject_CallMethodNoArgs(deadlines, s_next_deadline);
        if (r == NULL)
            return -1;
        *out = PyFloat_AsDouble(r);
        Py_DECREF(r);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
    }
    int rc = 0;
    *out = INFINITY;
    while (PyList_GET_SIZE(heap) > 0) {
        PyObject *e = PyList_GET_ITEM(heap, 0);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 3
                || !Source_Check(PyTuple_GET_ITEM(e, 2))) {
            PyErr_SetString(PyExc_TypeError, "bad Deadlines entry");
            rc = -1;
            break;
        }
        SourceObject *src = (SourceObject *)PyTuple_GET_ITEM(e, 2);
        Py_ssize_t seq = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 1));
        if (seq == -1 && PyErr_Occurred()) {
            rc = -1;
            break;
        }
        if (src->in_heap && src->heap_seq == seq) {
            *out = PyFloat_AsDouble(PyTuple_GET_ITEM(e, 0));
            rc = (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
            break;
        }
        PyObject *gone = timers_heappop(heap);
        if (gone == NULL) {
            rc = -1;
            break;
        }
        Py_DECREF(gone);
        PyObject *st = PyObject_GetAttr(deadlines, s_stale_attr);
        Py_ssize_t v = st ? PyLong_AsSsize_t(st) : -1;
        Py_XDECREF(st);
        PyObject *nv = (v == -1 && PyErr_Occurred()) ? NULL : PyLong_FromSsize_t(v - 1);
        if (nv == NULL || PyObject_SetAttr(deadlines, s_stale_attr, nv) < 0) {
            Py_XDECREF(nv);
            rc = -1;
            break;
        }
        Py_DECREF(nv);
    }
    Py_DECREF(heap);
    return rc;
}

/* The earliest ready time changed to ``when``: tell the driver, unless its method is the
 * base's (does nothing) or the plain driver's that would return at once (a timer is
 * armed as early already, or the driver is closed). */
static int
timers_deadline_changed(PyObject *ctx, double when)
{
    PyObject *driver = PyObject_GetAttr(ctx, s_driver);
    if (driver == NULL)
        return -1;
    PyObject *fn = _PyType_Lookup(Py_TYPE(driver), s_deadline_changed);
    int skip = fn != NULL && fn == tm_noop_deadline;
    if (!skip && fn != NULL && fn == tm_plain_deadline && PyObject_TypeCheck(driver, &PlainType)) {
        PlainObject *p = (PlainObject *)driver;
        skip = !(when < p->timer_when) || p->closed;
    }
    int rc = 0;
    if (!skip) {
        PyObject *w = PyFloat_FromDouble(when);
        rc = w ? call_method_void(driver, s_deadline_changed, w, NULL, NULL) : -1;
        Py_XDECREF(w);
    }
    Py_DECREF(driver);
    return rc;
}

/* MainContext._prepare_slow when only ready times need a look (no prepare hooks, no fd
 * watches, nothing queued): collect, then the wait until the earliest ready time.
 * NotImplemented (a new reference) when that is not the case: the Python method. */
static PyObject *
timers_prepare(PyObject *ctxobj, int deferred)
{
    ContextObject *self = (ContextObject *)ctxobj;
    int other = nonempty_attr(self->fds, s_always);
    if (other == 0)
        other = nonempty_attr(self->fds, s_masks);
    if (other < 0)
        return NULL;
    if (other)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *t = ctx_collect(self, NULL);
    if (t == NULL)
        return NULL;
    Py_DECREF(t);
    /* an operation posted by another thread may have attached a hooked source or an fd
     * watch: the Python method then does the rest (collecting again changes nothing) */
    other = nonempty_attr(self->prepare_hooks, s_prios);
    if (other == 0)
        other = nonempty_attr(self->fds, s_always);
    if (other == 0)
        other = nonempty_attr(self->fds, s_masks);
    if (other < 0)
        return NULL;
    if (other)
        Py_RETURN_NOTIMPLEMENTED;
    if (!ready_ok(self))
        return NULL;
    if (PyDict_GET_SIZE(self->ready) && !deferred) {
        Py_INCREF(float_zero);
        return float_zero;
    }
    double deadline;
    PyObject *deadlines = REQUIRED(self, deadlines, "_deadlines");
    if (deadlines == NULL || timers_next_deadline(deadlines, &deadline) < 0)
        return NULL;
    if (isinf(deadline))
        Py_RETURN_NONE;
    double wait = deadline - self->now;
    return PyFloat_FromDouble(wait > 0.0 ? wait : 0.0);
}

static PyObject *tm_waker_notify;      /* Waker.notify */
static PyObject *s_tm_locked, *s_tm_closed, *s_tm_notified;

/* Waker.notify() (QEMU's aio_notify): nothing to do unless the loop may sleep and no
 * wake-up is outstanding, which is the common case here.  The flags are read without
 * taking the lock when no thread holds it: the GIL is not released between that look
 * and the reads, so no thread can be inside the lock meanwhile.  Else the method. */
static int
timers_notify(PyObject *waker)
{
    if (tm_waker_notify == NULL || _PyType_Lookup(Py_TYPE(waker), s_notify) != tm_waker_notify)
        return call_method_void(waker, s_notify, NULL, NULL, NULL);
    /* The loop is not about to sleep: nothing to wake.  (The loop writes this flag
     * without the lock on GIL builds, the only ones the core runs on, so looking
     * at it under the lock would tell nothing more.) */
    int waiting = attr_truth(waker, s_poll_waiting);
    if (waiting <= 0)
        return waiting;
    PyObject *lock = PyObject_GetAttr(waker, s_lock);
    if (lock == NULL)
        return -1;
    int held = call_truth(lock, s_tm_locked);
    Py_DECREF(lock);
    if (held < 0)
        return -1;
    if (!held) {
        int quiet = attr_truth(waker, s_tm_closed);
        if (quiet == 0)
            quiet = attr_truth(waker, s_tm_notified);
        if (quiet < 0)
            return -1;
        if (quiet)
            return 0;
    }
    return call_method_void(waker, s_notify, NULL, NULL, NULL);
}

/* Call a Python check that raises (or returns the value to use): new reference. */
static PyObject *
timers_check(PyObject *check, PyObject *value)
{
    if (check == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine timers are not configured");
        return NULL;
    }
    return PyObject_CallOneArg(check, value);
}

/* TimeoutSource.__init__ + Source.__init__ on a fresh source: 0, or -1 with the
 * exception the Python code raises, in the same order (interval, name, priority). */
static int
timers_fill(SourceObject *src, PyObject *interval, PyObject *priority, PyObject *name)
{
    double iv = -1.0;
    if (PyFloat_CheckExact(interval)) {
        iv = PyFloat_AS_DOUBLE(interval);
    }
    else if (PyLong_CheckExact(interval)) {
        iv = PyLong_AsDouble(interval);
        if (iv == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            iv = -1.0;
        }
    }
    if (!(iv >= 0.0 && iv < INFINITY)) {
        PyObject *v = timers_check(tm_check_interval, interval);
        if (v == NULL)
            return -1;
        iv = PyFloat_AsDouble(v);
        Py_DECREF(v);
        if (iv == -1.0 && PyErr_Occurred())
            return -1;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyObject *v = timers_check(tm_check_name, name);
        if (v == NULL)
            return -1;
        Py_DECREF(v);
    }
    Py_INCREF(priority);
    if (!PyLong_CheckExact(priority)) {
        Py_SETREF(priority, timers_check(tm_check_priority, priority));
        if (priority == NULL)
            return -1;
    }
    else {
        int overflow;
        long long p = PyLong_AsLongLongAndOverflow(priority, &overflow);
        if (overflow || p < -0x80000000LL || p > 0x7FFFFFFFLL) {
            Py_SETREF(priority, timers_check(tm_check_priority, priority));
            if (priority == NULL)
                return -1;
        }
    }
    src->interval = iv;
    Py_XSETREF(src->priority, priority);
    Py_INCREF(name);
    Py_XSETREF(src->name, name);
    return 0;
}

/* Is ``type``'s __init__ chain after TimeoutSource the plain Source one? */
static int
timers_plain_init(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    if (tm_timeout_class == NULL || tm_source_class == NULL || mro == NULL
            || !PyTuple_Check(mro))
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(mro);
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (PyTuple_GET_ITEM(mro, i) == tm_timeout_class)
            return PyTuple_GET_ITEM(mro, i + 1) == tm_source_class;
    }
    return 0;
}

/* timeout_init(src, interval, priority, name): TimeoutSource.__init__ in C; False when
 * the class's __init__ chain is not the plain one (the Python code runs then). */
static PyObject *
timers_timeout_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "timeout_init() takes 4 arguments");
        return NULL;
    }
    if (!Source_Check(args[0]) || !timers_plain_init(Py_TYPE(args[0])))
        Py_RETURN_FALSE;
    if (timers_fill((SourceObject *)args[0], args[1], args[2], args[3]) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* timeout_add(interval, callback, args, priority, context): sources.timeout_add in C. */
static PyObject *
timers_timeout_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "timeout_add() takes 5 arguments, args a tuple");
        return NULL;
    }
    if (tm_timeout_class == NULL || !PyType_Check(tm_timeout_class) || tm_registry == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "aioqloop._cengine timers are not configured");
        return NULL;
    }
    PyObject *interval = args[0], *callback = args[1], *context = args[4];
    PyTypeObject *type = (PyTypeObject *)tm_timeout_class;
    PyObject *srcobj = type->tp_new(type, empty_events, NULL);
    if (srcobj == NULL)
        return NULL;
    if (!Source_Check(srcobj)) {
        Py_DECREF(srcobj);
        PyErr_SetString(PyExc_TypeError, "TimeoutSource is not a source");
        return NULL;
    }
    SourceObject *src = (SourceObject *)srcobj;
    if (timers_fill(src, interval, args[3], Py_None) < 0) {
        Py_DECREF(srcobj);
        return NULL;  /* as TimeoutSource(...) raising: no source was made */
    }
    PyObject *result = NULL, *ctx = NULL;
    /* sources._attach: any failure from here on destroys the source */
    if (!PyCallable_Check(callback)) {
        PyObject *r = timers_check(tm_check_callback, callback);
        Py_XDECREF(r);
        if (r != NULL)
            PyErr_SetString(PyExc_TypeError, "callback must be callable");
        goto fail;
    }
    Py_INCREF(callback);
    Py_XSETREF(src->callback, callback);
    Py_INCREF(args[2]);
    Py_XSETREF(src->args, args[2]);
    if (context == Py_None) {
        ctx = PyObject_CallMethodNoArgs(tm_registry, s_tm_default_context);
        if (ctx == NULL)
            goto fail;
    }
    else {
        PyObject *cls = PyObject_GetAttr(tm_registry, s_tm_context_class);
        int ok = cls == NULL ? -1 : (cls == Py_None ? 0 : PyObject_IsInstance(context, cls));
        Py_XDECREF(cls);
        if (ok < 0)
            goto fail;
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "context must be a MainContext, not %.200s",
                         _PyType_Name(Py_TYPE(context)));
            goto fail;
        }
        Py_INCREF(context);
        ctx = context;
    }
    if (PyObject_TypeCheck(ctx, &ContextType)
            && _PyType_Lookup(Py_TYPE(ctx), s_tm_attach) == tm_attach_descr)
        result = ctx_attach((ContextObject *)ctx, srcobj);
    else
        result = PyObject_CallMethodOneArg(ctx, s_tm_attach, srcobj);
    if (result == NULL)
        goto fail;
    Py_DECREF(ctx);
    Py_DECREF(srcobj);
    return result;
fail:
    Py_XDECREF(ctx);
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (call_method_void(srcobj, s_destroy, NULL, NULL, NULL) < 0) {
            Py_XDECREF(et);  /* the destroy's own error replaces it, as in Python */
            Py_XDECREF(ev);
            Py_XDECREF(etb);
        }
        else {
            PyErr_Restore(et, ev, etb);
        }
    }
    Py_DECREF(srcobj);
    return NULL;
}

/* The sort key of a ready batch (Dispatcher's _order_key): the source's attach order. */
static PyObject *
timers_order_key_fn(PyObject *module, PyObject *src)
{
    if (!Source_Check(src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    PyObject *order = ((SourceObject *)src)->order;
    if (order == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_order");
        return NULL;
    }
    Py_INCREF(order);
    return order;
}

/* configure_timers(**refs): the Python objects the timer paths compare against. */
static PyObject *
timers_configure(PyObject *module, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure_timers() takes keyword arguments only");
        return NULL;
    }
    if (kw == NULL)
        Py_RETURN_NONE;
    static const char *names[] = {"timeout_class", "source_class", "registry",
                                  "check_interval", "check_priority", "check_name",
                                  "check_callback", "noop_deadline", "plain_deadline",
                                  "loop_time", "time_module", "monotonic", "waker_notify"};
    PyObject **slots[] = {&tm_timeout_class, &tm_source_class, &tm_registry,
                          &tm_check_interval, &tm_check_priority, &tm_check_name,
                          &tm_check_callback, &tm_noop_deadline, &tm_plain_deadline,
                          &tm_loop_time, &tm_time_module, &tm_monotonic, &tm_waker_notify};
    Py_ssize_t used = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = set_ref(slots[i], kw, names[i]);
        if (r < 0)
            return NULL;
        used += r;
    }
    if (used != PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "configure_timers() got an unknown keyword argument");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef timers_order_key_def = {
    "order_key", (PyCFunction)timers_order_key_fn, METH_O,
    "order_key($module, src, /)\n--\n\nA ready source's attach order (the dispatch sort key)."};

/* Module init of this section: interned names, the sort key, ContextCore._attach. */
static int
timers_init(void)
{
#define TM_INTERN(var, text) if (((var) = PyUnicode_InternFromString(text)) == NULL) return -1
    TM_INTERN(s_tm_attach, "_attach");
    TM_INTERN(s_tm_time, "time");
    TM_INTERN(s_tm_monotonic, "monotonic");
    TM_INTERN(s_tm_context_class, "_context_class");
    TM_INTERN(s_tm_default_context, "default_context");
    TM_INTERN(s_tm_locked, "locked");
    TM_INTERN(s_tm_closed, "_closed");
    TM_INTERN(s_tm_notified, "notified");
#undef TM_INTERN
    timers_order_key = PyCFunction_New(&timers_order_key_def, NULL);
    if (timers_order_key == NULL)
        return -1;
    tm_attach_descr = PyDict_GetItemWithError(ContextType.tp_dict, s_tm_attach);
    return tm_attach_descr == NULL ? -1 : 0;
}
/* ==================================================================== end timers */

/* ------------------------------------------------------------------------ module */
static int
set_ref(PyObject **slot, PyObject *kw, const char *name)
{
    PyObject *v = PyDict_GetItemString(kw, name);
    if (v == NULL)
        return 0;
    if (strcmp(name, "conditions") == 0
            && (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != 64)) {
        PyErr_SetString(PyExc_ValueError, "conditions must be a tuple of 64 entries");
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(*slot, v);
    return 1;
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    if (kw == NULL)
        Py_RETURN_NONE;
    static const char *names[] = {"default_dispatch", "timeout_dispatch", "fd_dispatch",
                                  "conditions", "tls", "warn_slow", "order_key",
                                  "default_attached", "timeout_attached", "default_finalize",
                                  "default_maybe_finalize", "heappush", "heappop",
                                  "default_destroy", "default_set_ready_time"};
    PyObject **slots[] = {&default_dispatch, &timeout_dispatch, &fd_dispatch, &conditions,
                          &tls, &warn_slow, &order_key, &default_attached, &timeout_attached,
                          &default_finalize, &default_maybe_finalize, &heappush, &heappop,
                          &default_destroy, &default_set_ready_time};
    Py_ssize_t used = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int r = set_ref(slots[i], kw, names[i]);
        if (r < 0)
            return NULL;
        used += r;
    }
    PyObject *sf = PyDict_GetItemString(kw, "shared_select");
    if (sf != NULL) {
        Py_INCREF(sf);
        Py_XSETREF(shared_select_func, sf);
        used++;
    }
    PyObject *rep = PyDict_GetItemString(kw, "reportable");
    if (rep != NULL) {
        if (!PyTuple_Check(rep) || PyTuple_GET_SIZE(rep) != 4) {
            PyErr_SetString(PyExc_ValueError, "reportable must be a tuple of 4 masks");
            return NULL;
        }
        for (int i = 0; i < 4; i++) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(rep, i));
            if (v == -1 && PyErr_Occurred())
                return NULL;
            reportable[i] = v;
        }
        used++;
    }
    PyObject *mw = PyDict_GetItemString(kw, "max_wait");
    if (mw != NULL) {
        double v = PyFloat_AsDouble(mw);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        MAX_WAIT = v;
        used++;
    }
    PyObject *floor = PyDict_GetItemString(kw, "slow_floor");
    if (floor != NULL) {
        double v = PyFloat_AsDouble(floor);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        SLOW_FLOOR = v;
        used++;
    }
    if (used != PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "configure() got an unknown keyword argument");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure($module, /, **refs)\n--\n\n"
     "Give the core the Python objects it compares against or calls (once, at import)."},
    {"configure_timers", (PyCFunction)(void (*)(void))timers_configure,
     METH_VARARGS | METH_KEYWORDS,
     "configure_timers($module, /, **refs)\n--\n\n"
     "Give the timer paths the Python objects they compare against or call."},
    {"timeout_init", (PyCFunction)(void (*)(void))timers_timeout_init, METH_FASTCALL,
     "timeout_init($module, src, interval, priority, name, /)\n--\n\n"
     "TimeoutSource.__init__ in C; False if the class's __init__ chain is not the plain one."},
    {"timeout_add", (PyCFunction)(void (*)(void))timers_timeout_add, METH_FASTCALL,
     "timeout_add($module, interval, callback, args, priority, context, /)\n--\n\n"
     "sources.timeout_add in C: make, attach and return the id of a TimeoutSource."},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "aioqloop._cengine",
    "The compiled core of aioqloop's engine (see the C source's header).", -1,
    module_methods,
};

#define INTERN(var, text) if (((var) = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC
PyInit__cengine(void)
{
    INTERN(s_current, "current");
    INTERN(s_idle, "_idle");
    INTERN(s_survives, "_survives_escape");
    INTERN(s_dispatch, "dispatch");
    INTERN(s_ctx_dispatch, "_dispatch");
    INTERN(s_tap_order, "order");
    INTERN(s_tap_dispatched, "dispatched");
    INTERN(s_count_waited, "_count_waited");
    INTERN(s_enter, "enter");
    INTERN(s_between, "between");
    INTERN(s_leave, "leave");
    INTERN(s_block, "_block");
    INTERN(s_unblock, "_unblock");
    INTERN(s_report, "_report");
    INTERN(s_callback, "callback");
    INTERN(s_maybe_finalize, "_maybe_finalize");
    INTERN(s_slow_threshold, "slow_threshold");
    INTERN(s_destroy, "destroy");
    INTERN(s_run_check_hooks, "_run_check_hooks");
    INTERN(s_deferred, "deferred");
    INTERN(s_give_back, "give_back");
    INTERN(s_entries, "entries");
    INTERN(s_prios, "prios");
    INTERN(s_ops, "ops");
    INTERN(s_pending, "pending");
    INTERN(s_prepare_slow, "_prepare_slow");
    INTERN(s_masks, "masks");
    INTERN(s_poll_waiting, "poll_waiting");
    INTERN(s_loop, "loop");
    INTERN(s_loop_class, "loop_class");
    INTERN(s_rebind, "rebind");
    INTERN(s_poll, "poll");
    INTERN(s_place, "place");
    INTERN(s_block_kw, "block");
    INTERN(s_dispatch_kw, "dispatch");
    INTERN(s_phase_dispatch, "dispatch");
    INTERN(s_set_ready_time, "set_ready_time");
    INTERN(s_revents, "revents");
    INTERN(s_key, "key");
    INTERN(s_sort, "sort");
    INTERN(s_unpolled, "unpolled");
    INTERN(s_records, "records");
    INTERN(s_wake_fd, "_wake_fd");
    INTERN(s_events, "events");
    INTERN(s_source, "source");
    INTERN(s_drain, "drain");
    INTERN(s_epoll, "epoll");
    INTERN(s_last_audit, "last_audit");
    INTERN(s_audit, "audit");
    INTERN(s_audit_interval, "fd_audit_interval");
    INTERN(s_always, "always");
    INTERN(s_mark_ready, "_mark_ready");
    INTERN(s_poll_ready_name, "_poll_ready");
    INTERN(s_apply_polled_name, "_apply_polled");
    INTERN(s_ready_q, "_ready");
    INTERN(s_scheduled, "_scheduled");
    INTERN(s_timer_due, "_timer_due");
    INTERN(s_urgent, "_urgent");
    INTERN(s_dispatch_postponed, "_dispatch_postponed");
    INTERN(s_woken, "_woken");
    INTERN(s_raw, "raw");
    INTERN(s_take_raw, "take_raw");
    INTERN(s_take_epfd, "_take_epfd");
    INTERN(s_poll_clock, "_poll_clock");
    INTERN(s_expose_deadline, "_expose_deadline");
    INTERN(s_sources, "_sources");
    INTERN(s_append, "append");
    INTERN(s_clear, "clear");
    INTERN(s_select_name, "select");
    INTERN(s_stale, "stale");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_has_prepare, "_has_prepare");
    INTERN(s_run_ops, "run_ops");
    INTERN(s_bh, "_bh");
    INTERN(s_queue, "queue");
    INTERN(s_pending_attr, "pending");
    INTERN(s_notify_locked, "notify_locked");
    INTERN(s_waker_attr, "_waker");
    INTERN(s_closing_attr, "_closing");
    INTERN(s_next_id, "_next_id");
    INTERN(s_post_insert, "_post_insert");
    INTERN(s_lock, "lock");
    INTERN(s_owner, "_owner");
    INTERN(s_closed_attr, "_closed");
    INTERN(s_check_loop_open, "_check_loop_open");
    INTERN(s_is_closed, "is_closed");
    INTERN(s_owned_by_loop, "_owned_by_loop");
    INTERN(s_notify, "notify");
    INTERN(s_bh_source, "source");
    INTERN(s_stale_attr, "_stale");
    INTERN(s_release, "release");
    INTERN(s_has_check, "_has_check");
    INTERN(s_attached, "_attached");
    INTERN(s_finalize, "finalize");
    INTERN(s_insert_tree, "_insert_tree");
    INTERN(s_remove, "_remove");
    INTERN(s_seq_attr, "_seq");
    INTERN(s_drop, "drop");
    INTERN(s_driver, "_driver");
    INTERN(s_run, "_run");
    INTERN(s_cancel, "cancel");
    INTERN(s_acquire, "acquire");
    INTERN(s_deadline_changed, "deadline_changed");
    INTERN(s_always_ready_pending, "always_ready_pending");
    INTERN(s_next_deadline, "next_deadline");
    INTERN(s_rebuild, "rebuild");
    INTERN(s_ep, "_ep");
    INTERN(s_fd_to_key, "_fd_to_key");
    INTERN(s_ctx_mask, "_ctx_mask");
    INTERN(s_events_attr, "events");
    if ((empty_events = PyTuple_New(0)) == NULL)
        return NULL;
    if ((float_zero = PyFloat_FromDouble(0.0)) == NULL)
        return NULL;
    if ((float_inf = PyFloat_FromDouble(INFINITY)) == NULL)
        return NULL;
    if (PyType_Ready(&StatsType) < 0 || PyType_Ready(&SourceType) < 0
            || PyType_Ready(&ContextType) < 0 || PyType_Ready(&HookType) < 0
            || PyType_Ready(&PlainType) < 0 || PyType_Ready(&BHType) < 0)
        return NULL;
    plain_poll_descr = PyDict_GetItem(PlainType.tp_dict, s_poll);
    plain_place_descr = PyDict_GetItem(PlainType.tp_dict, s_place);
    if (plain_poll_descr == NULL || plain_place_descr == NULL)
        return NULL;
    if (timers_init() < 0)
        return NULL;
    hook_poll_descr = PyDict_GetItem(HookType.tp_dict, s_poll);
    hook_place_descr = PyDict_GetItem(HookType.tp_dict, s_place);
    if (hook_poll_descr == NULL || hook_place_descr == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&StatsType);
    Py_INCREF(&SourceType);
    Py_INCREF(&ContextType);
    Py_INCREF(&HookType);
    Py_INCREF(&PlainType);
    Py_INCREF(&BHType);
    if (PyModule_AddObject(m, "SourceStatistics", (PyObject *)&StatsType) < 0
            || PyModule_AddObject(m, "SourceCore", (PyObject *)&SourceType) < 0
            || PyModule_AddObject(m, "ContextCore", (PyObject *)&ContextType) < 0
            || PyModule_AddObject(m, "HookCore", (PyObject *)&HookType) < 0
            || PyModule_AddObject(m, "PlainCore", (PyObject *)&PlainType) < 0
            || PyModule_AddObject(m, "BHCore", (PyObject *)&BHType) < 0
            || PyModule_AddStringConstant(m, "SOURCE_HASH", AIOQLOOP_SOURCE_HASH) < 0
            || PyModule_AddIntConstant(m, "INPLACE", AIOQLOOP_INPLACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
