/* aioqloop._cengine, part common.h: what every part shares -- the module state (the
 * interned names, what configure() and configure_timers() set, the core's heap types),
 * the object structs' names, the helpers that call into Python objects, and the macros
 * that make a core type's GC functions and type spec.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <poll.h>
#include <sys/epoll.h>
#include <errno.h>
#define EPOLLIN_BIT EPOLLIN
#define EPOLLOUT_BIT EPOLLOUT
#include <string.h>
#include <time.h>

/* ------------------------------------------------------- the pending exception */
/* The pending exception is one object (PyErr_GetRaisedException, 3.12+).  3.10 and 3.11
 * have only the (type, value, traceback) triple: there the two calls are made of it,
 * with the same results (a normalised exception carrying its traceback). */
#if PY_VERSION_HEX < 0x030C0000
static inline PyObject *
PyErr_GetRaisedException(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
}

static inline void
PyErr_SetRaisedException(PyObject *exc)
{
    if (exc == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *type = (PyObject *)Py_TYPE(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
}
#endif

/* A finally block in C.  `PyObject *saved = PyErr_GetRaisedException();` before the
 * cleanup, then `finish_cleanup(saved, rc)` with the cleanup's result: an exception of
 * the cleanup replaces the saved one (as in Python); else the saved one is raised again.
 * -1 if an exception is pending afterwards, 0 if none. */
static inline int
finish_cleanup(PyObject *saved, int cleanup_rc)
{
    if (cleanup_rc < 0) {
        Py_XDECREF(saved);
        return -1;
    }
    if (saved == NULL)
        return 0;
    PyErr_SetRaisedException(saved);
    return -1;
}

/* --------------------------------------------------------------- module state */
/* Everything the core keeps between calls lives in the module state (PEP 489, PEP 573):
 * no file-scope Python objects, so each import of the module (a subinterpreter, a
 * reload) has its own.  Core objects cache a pointer to it at construction (their
 * heap type holds the module, so the state outlives them); module functions read it
 * from the module.  */

/* Interned attribute and method names: X(field, "text"). */
#define CORE_NAMES(X) \
    X(s_dispatch, "dispatch") \
    X(s_maybe_finalize, "_maybe_finalize") \
    X(s_destroy, "destroy") \
    X(s_poll, "poll") \
    X(s_place, "place") \
    X(s_set_ready_time, "set_ready_time") \
    X(s_drain, "drain") \
    X(s_ready_q, "_ready") \
    X(s_scheduled, "_scheduled") \
    X(s_select_name, "select") \
    X(s_call_soon, "call_soon") \
    X(s_attached, "_attached") \
    X(s_finalize, "finalize") \
    X(s_deadline_changed, "deadline_changed") \
    X(s_tm_time, "time") \
    X(s_tm_monotonic, "monotonic") \
    /* attach, waker, bottom halves, timers */ \
    X(s_core_flags, "_core_flags")

/* What configure() sets, by keyword: X(field) (the keyword is the field's name). */
#define CORE_CONFIG(X) \
    /* fd poll, selector hook, plain driver: each called with its object first */ \
    X(hook_woken)             /* _SelectorHook._woken: hook.h, select of an empty context */ \
    X(hook_take_epfd)         /* _SelectorHook._take_epfd: hook.h, private-epoll path */ \
    X(hook_poll_clock)        /* _SelectorHook._poll_clock: hook.h, poll with a VirtualClock */ \
    X(hook_expose_deadline)   /* _SelectorHook._expose_deadline: hook.h, wrapped select */ \
    X(hook_urgent)            /* _SelectorHook._urgent: hook.h, place() more urgent than default */ \
    X(hook_timer_due)         /* QSelectorEventLoop._timer_due: hook.h place(), with timers */ \
    X(deque_append)           /* collections.deque.append: the loop's ready queue (hook.h), a bottom-half queue (bh.h) */ \
    X(deque_clear)            /* collections.deque.clear: bh.h */ \
    X(deque_popleft)          /* collections.deque.popleft: hook.h place(), its own dispatch */ \
    X(shared_rebuild)         /* SelectorFds.rebuild: hook.h, a stale shared set */ \
    X(plain_deadline_changed) /* PlainDriver.deadline_changed: plain.h, arm the timer */ \
    X(plain_acquire)          /* PlainDriver._acquire: plain.h, the first iteration */ \
    X(plain_soon_refused)     /* PlainDriver._soon_refused: plain.h, call_soon raised */ \
    X(default_dispatch)       /* Source.dispatch (the plain function) */ \
    X(timeout_dispatch)       /* TimeoutSource.dispatch */ \
    X(fd_dispatch)            /* FdSource.dispatch */ \
    X(conditions)             /* tuple of 64 IOCondition values */ \
    X(default_attached)       /* Source._attached */ \
    X(timeout_attached)       /* TimeoutSource._attached */ \
    X(default_finalize)       /* Source.finalize */ \
    X(default_maybe_finalize) /* Source._maybe_finalize */ \
    X(default_destroy)        /* Source.destroy */ \
    X(default_set_ready_time) /* Source.set_ready_time */ \
    /* iteration and dispatch: upcalls into the project's own Python code, each called \
     * with vectorcall, the object first (no name lookup) */ \
    X(prepare_slow)     /* MainContext._prepare_slow(ctx, deferred): prepare's slow path */ \
    X(run_check_hooks)  /* MainContext._run_check_hooks(ctx): check's hooked sources */ \
    X(rebind_clock)     /* _contextcore._rebind_clock(ctx): the loop's class changed */ \
    X(audit_fds)        /* _contextcore._audit_fds(ctx, now): the NVAL audit, when due */ \
    X(always_ready)     /* FdPoller.always_ready_pending(fds): has_work, regular files */ \
    X(block)            /* _dispatch._block(ctx, src): ctx._dispatcher blocks a tree */ \
    X(unblock)          /* _dispatch._unblock(ctx, src): after its dispatch */ \
    X(count_waited)     /* _dispatch._count_waited(ctx, priority): statistics */ \
    X(report_dispatch)  /* _dispatch._report_dispatch(ctx, exc, src, callback) */ \
    X(slow_dispatch)    /* _dispatch._slow_dispatch(ctx, src, elapsed): over the floor */ \
    X(dispatch_stack)   /* _dispatch._dispatch_stack(): this thread's current sources */ \
    X(tap_dispatched)   /* DispatchTrace.dispatched(tap, src): the test tools' tap */ \
    X(tap_order)        /* DispatchTrace.order(tap, priority, pending) -> list */ \
    X(gate_enter)       /* LockGate.enter(gate) -> bool: before a dispatch phase */ \
    X(gate_between)     /* LockGate.between(gate) -> bool: between two dispatches */ \
    X(gate_leave)       /* LockGate.leave(gate): after the phase */ \
    X(gate_give_back)   /* LockGate.give_back(gate): nothing to dispatch after all */ \
    /* attach, waker, bottom halves, timers */ \
    X(waker_run_ops)          /* Waker.run_ops: collect runs the posted operations */ \
    X(waker_notify_locked)    /* Waker.notify_locked: schedule wakes the loop */ \
    X(ctx_insert_tree)        /* _sourceset._insert_tree(ctx, src): attach, with hooks */ \
    X(ctx_remove)             /* _sourceset._remove(ctx, src): destroy, with hooks */ \
    X(ctx_post_insert)        /* _sourceset._post_insert(ctx, src): from another thread */ \
    X(ctx_check_loop_open)    /* MainContext._check_loop_open: attach, schedule */ \
    X(ctx_report)             /* MainContext._report: a finalize that raised */

/* What configure_timers() sets: X(field, "keyword"). */
#define CORE_TIMER_CONFIG(X) \
    X(tm_timeout_class, "timeout_class")     /* TimeoutSource */ \
    X(tm_source_class, "source_class")       /* Source */ \
    /* attach, waker, bottom halves, timers */ \
    X(tm_default_context, "default_context") /* _registry.default_context */ \
    X(tm_context_class, "context_class")     /* MainContext, from _registry */ \
    X(tm_check_interval, "check_interval")   /* the argument checks that raise */ \
    X(tm_check_priority, "check_priority") \
    X(tm_check_name, "check_name") \
    X(tm_check_callback, "check_callback") \
    X(tm_noop_deadline, "noop_deadline")     /* bridge.Driver.deadline_changed */ \
    X(tm_plain_deadline, "plain_deadline")   /* bridge.PlainDriver.deadline_changed */ \
    X(tm_loop_time, "loop_time")             /* asyncio.BaseEventLoop.time */ \
    X(tm_time_module, "time_module")         /* time */ \
    X(tm_monotonic, "monotonic")             /* time.monotonic */ \
    X(tm_waker_notify, "waker_notify")       /* Waker.notify */

/* The Python objects of the state that can take part in reference cycles (through the
 * module that made them, or the Python modules they belong to): visited and cleared by
 * the module's GC functions.  The interned names and constants cannot, and stay until
 * the module is freed. */
#define CORE_TYPES(X) \
    X(StatsType) X(SourceType) X(ContextType) X(HookType) X(PlainType) X(BHType) \
    X(FdTagType) X(FdPollerType) X(SharedFdsType) X(WakerType) \
    /* iteration and dispatch */ \
    X(GateType) \
    /* attach, waker, bottom halves, timers */ \
    X(BHCarrierType) X(WakerLockType)
#define CORE_OWNED(X) \
    X(shared_select_fn)  /* SelectorFds.select (the plain function), from configure() */

#define DECLARE_NAME(field, text) PyObject *field;
#define DECLARE_FIELD(field) PyObject *field;
#define DECLARE_TYPE(field) PyTypeObject *field;
#define DECLARE_FIELD2(field, keyword) PyObject *field;

typedef struct ModState {
    CORE_TYPES(DECLARE_TYPE)
    CORE_CONFIG(DECLARE_FIELD)
    CORE_TIMER_CONFIG(DECLARE_FIELD2)
    CORE_OWNED(DECLARE_FIELD)
    CORE_NAMES(DECLARE_NAME)
    PyObject *empty_tuple, *float_zero, *float_inf;
    double slow_floor;     /* configure(slow_floor=): dispatches shorter are never slow */
    double max_wait;       /* configure(max_wait=): the longest poll, seconds */
    long reportable[4];    /* configure(reportable=): epoll bits asyncio's masks report */
    /* attach, waker, bottom halves, timers */
    PyTypeObject *vt_type; /* source_vtable()'s cache: the last source class looked at */
    unsigned int vt_tag;   /* its tp_version_tag then (a changed class gets a new one) */
    int vt_bits;           /* and what its vtable is (VT_* in source.h) */
    PyObject *vt_finalize, *vt_destroy;  /* the last class's methods (borrowed) */
} ModState;

static struct PyModuleDef moduledef;

static inline ModState *
module_state(PyObject *module)
{
    return (ModState *)PyModule_GetState(module);
}

/* The state of the module that made ``type`` or one of its bases (a Python subclass of
 * a core type has no module of its own): a slow path, for constructors only -- objects
 * keep the pointer.  NULL with a TypeError when no base is ours. */
static ModState *
state_of_type(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *module = PyType_GetModuleByDef(type, &moduledef);
    return module == NULL ? NULL : module_state(module);
#else
    /* 3.10 has no PyType_GetModuleByDef: walk the MRO as it does */
    PyObject *mro = type->tp_mro;
    Py_ssize_t n = mro != NULL && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == &moduledef)
            return module_state(module);
    }
    PyErr_Format(PyExc_TypeError, "%.100s is not a type of aioqloop._cengine",
                 type->tp_name);
    return NULL;
#endif
}

/* The object structs, defined in their parts. */
typedef struct StatsObject StatsObject;
typedef struct SourceObject SourceObject;
typedef struct ContextObject ContextObject;
typedef struct HookObject HookObject;
typedef struct PlainObject PlainObject;
typedef struct BHObject BHObject;
typedef struct FdTagObject FdTagObject;
typedef struct FdPollerObject FdPollerObject;
typedef struct SharedFdsObject SharedFdsObject;
typedef struct WakerObject WakerObject;
/* iteration and dispatch */
typedef struct GateObject GateObject;

#define IS_NONE(o) ((o) == NULL || (o) == Py_None)
#define Source_Check(st, o) PyObject_TypeCheck((o), (st)->SourceType)

/* Used before the part that defines them. */
static int timers_fast_clock(ModState *st, PyObject *clock, double *out);
static int timers_deadline_changed(ContextObject *self, double when);
static PyObject *timers_prepare(ContextObject *self, int deferred);
static int timers_notify(ModState *st, PyObject *waker);
static void dl_clear(ContextObject *self);
static int set_ref(PyObject **slot, PyObject *kw, const char *name);
static int schedule_ready_time_c(ContextObject *self, SourceObject *src);
static int destroy_source(SourceObject *src);
static PyObject *ctx_collect(ContextObject *self, PyObject *unused);
static PyObject *driver_poll(ModState *st, PyObject *driver, PyObject *timeout);
static PyObject *driver_place(ModState *st, PyObject *driver, PyObject *prio);

static inline double
perf_now(void)
{
    /* time.perf_counter() is CLOCK_MONOTONIC on Linux; only differences are used. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* tp_traverse, tp_clear and tp_dealloc of a core type whose object fields FIELDS(X)
 * lists.  The types are heap types: an instance holds a reference to its type, which
 * traverse visits and dealloc releases (after the object's memory: the type may go
 * with it).  A Python subclass's own traverse and dealloc call these. */
#define VISIT_FIELD(f) Py_VISIT(self->f);
#define CLEAR_FIELD(f) Py_CLEAR(self->f);
#define GC_FUNCTIONS(prefix, Type, FIELDS)                                  \
    static int                                                             \
    prefix##_traverse(Type *self, visitproc visit, void *arg)              \
    {                                                                      \
        Py_VISIT(Py_TYPE(self));                                           \
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
        PyTypeObject *type = Py_TYPE(self);                                \
        PyObject_GC_UnTrack(self);                                         \
        prefix##_clear(self);                                              \
        type->tp_free((PyObject *)self);                                   \
        Py_DECREF(type);                                                   \
    }

/* The spec of one of the core's GC-tracked, subclassable types (made per module by
 * PyType_FromModuleAndSpec).  Immutable, as static types were: a class attribute
 * cannot be set on the core type itself, only on a Python subclass. */
#define CORE_SPEC(prefix, Obj, pyname, doc, newfunc)                        \
    static PyType_Slot prefix##_slots[] = {                                 \
        {Py_tp_doc, (void *)(doc)},                                         \
        {Py_tp_traverse, (void *)prefix##_traverse},                        \
        {Py_tp_clear, (void *)prefix##_clear},                              \
        {Py_tp_dealloc, (void *)prefix##_dealloc},                          \
        {Py_tp_members, prefix##_members},                                  \
        {Py_tp_methods, prefix##_methods},                                  \
        {Py_tp_new, (void *)(newfunc)},                                     \
        {0, NULL},                                                          \
    };                                                                      \
    static PyType_Spec prefix##_spec = {                                    \
        .name = "aioqloop._cengine." pyname,                                \
        .basicsize = sizeof(Obj),                                           \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC \
                 | Py_TPFLAGS_IMMUTABLETYPE,                                \
        .slots = prefix##_slots,                                            \
    };

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

/* o as an instance of the core type ``type``: o itself (borrowed), or NULL with a
 * RuntimeError saying ``if_none`` when o is None (the part is gone: a closed context), or a
 * TypeError naming ``what`` when o is something else. */
static PyObject *
core_part(PyObject *o, PyTypeObject *type, const char *if_none, const char *what)
{
    if (IS_NONE(o)) {
        PyErr_SetString(PyExc_RuntimeError, if_none);
        return NULL;
    }
    if (!PyObject_TypeCheck(o, type)) {
        PyErr_Format(PyExc_TypeError, "expected %s, not %.100s", what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    return o;
}

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

/* PyObject_IsTrue, with the answers of the types the core reads most (bools, None,
 * exact lists and dicts, ints) taken without a slot call; -1 on error. */
static inline int
truth(PyObject *o)
{
    if (o == Py_True)
        return 1;
    if (o == Py_False || o == Py_None)
        return 0;
    if (PyList_CheckExact(o))
        return PyList_GET_SIZE(o) != 0;
    if (PyDict_CheckExact(o))
        return PyDict_GET_SIZE(o) != 0;
    return PyObject_IsTrue(o);
}

/* Drop the last item of an exact, non-empty list (list.pop() without the result). */
static inline void
list_drop_last(PyObject *list)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    PyObject *last = PyList_GET_ITEM(list, n - 1);
    PyList_SET_ITEM(list, n - 1, NULL);
    Py_SET_SIZE(list, n - 1);  /* the capacity stays: the next push reuses it */
    Py_DECREF(last);
}

