/* aioqloop._cengine, part common.h: Common ground of every part: includes, the module's globals, the helpers that call into
 * Python objects, and the macros that make a core type's GC functions.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

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


/* ------------------------------------------------------------------ configuration */
/* The module's globals: interned names, what configure() and configure_timers() set,
 * and the core's types. */
static PyTypeObject SourceType;
static PyObject *s_idle, *s_survives;
static PyTypeObject ContextType;
static PyObject *s_tap_order, *s_tap_dispatched;
static PyObject *default_attached, *timeout_attached, *default_finalize, *default_maybe_finalize;
static PyObject *heappush;
static PyObject *s_has_prepare, *s_has_check, *s_attached, *s_finalize, *s_insert_tree;
static PyObject *s_remove, *s_seq_attr, *s_drop, *s_driver, *s_deadline_changed;
static PyObject *heappop, *default_destroy;
static PyObject *s_run_ops, *s_lock, *s_owner, *s_closed_attr, *s_notify;
static PyObject *s_check_loop_open, *s_is_closed, *s_owned_by_loop;
static PyObject *s_bh_source, *s_stale_attr, *s_release, *s_acquire;
static PyObject *s_closing_attr, *s_next_id, *s_post_insert;
static PyTypeObject HookType;
static PyObject *hook_poll_descr, *hook_place_descr;
static double MAX_WAIT = 86400.0;
static PyObject *s_ready_q, *s_scheduled, *s_timer_due, *s_urgent, *s_woken, *s_raw;
static PyObject *s_dispatch_postponed;
static PyObject *s_take_raw, *s_take_epfd, *s_poll_clock, *s_expose_deadline, *s_sources;
static PyObject *s_append, *s_clear, *s_select_name;
static PyObject *empty_events;
static PyObject *shared_select_func;   /* SelectorFds.select (the plain function) */
static long reportable[4];
static PyObject *s_stale, *s_rebuild, *s_ep, *s_fd_to_key, *s_ctx_mask, *s_events_attr;
static PyTypeObject PlainType;
static PyObject *plain_poll_descr, *plain_place_descr;
static PyObject *s_call_soon, *s_run, *s_cancel;
static PyObject *s_always_ready_pending, *s_next_deadline;
static PyObject *s_bh, *s_queue, *s_pending_attr, *s_notify_locked, *s_waker_attr;
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
static PyObject *tm_waker_notify;      /* Waker.notify */
static PyObject *s_tm_locked, *s_tm_closed, *s_tm_notified;
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
static PyObject *timers_order_key;

/* The timer paths (see the section "timers" below): defined there, used here. */
static int timers_fast_clock(PyObject *clock, double *out);
static int timers_deadline_changed(PyObject *ctx, double when);
static PyObject *timers_prepare(PyObject *ctx, int deferred);
static int timers_next_deadline(PyObject *deadlines, double *out);
static int timers_notify(PyObject *waker);
static int timers_heappush(PyObject *heap, PyObject *entry);
static PyObject *timers_heappop(PyObject *heap);
static int set_ref(PyObject **slot, PyObject *kw, const char *name);

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

static inline Py_ssize_t
list_len(PyObject *o)
{
    if (o == NULL || o == Py_None)
        return 0;
    if (PyList_CheckExact(o))
        return PyList_GET_SIZE(o);
    return PyObject_Length(o);
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

