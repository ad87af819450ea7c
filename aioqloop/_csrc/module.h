/* aioqloop._cengine, part module.h: The module: configure() and configure_timers() (the Python objects the core compares
 * against or calls), the module definition and its initialisation.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

#ifndef AIOQLOOP_SOURCE_HASH
#define AIOQLOOP_SOURCE_HASH ""
#endif
/* 1: built in place (an editable install, a checkout), whose sources may change under
 * the build, so aioqloop._engine compares SOURCE_HASH at import; 0: built for a wheel. */
#ifndef AIOQLOOP_INPLACE
#define AIOQLOOP_INPLACE 0
#endif

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
    ModState *st = module_state(module);
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "configure() takes keyword arguments only");
        return NULL;
    }
    if (kw == NULL)
        Py_RETURN_NONE;
    Py_ssize_t used = 0;
    int r;
#define SET_REF(field)                                 \
    if ((r = set_ref(&st->field, kw, #field)) < 0)     \
        return NULL;                                   \
    used += r;
    CORE_CONFIG(SET_REF)
#undef SET_REF
    st->vt_type = NULL;  /* source_vtable() compares against what was just set */
    PyObject *sf = PyDict_GetItemString(kw, "shared_select");
    if (sf != NULL) {
        Py_INCREF(sf);
        Py_XSETREF(st->shared_select_fn, sf);
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
            st->reportable[i] = v;
        }
        used++;
    }
    PyObject *mw = PyDict_GetItemString(kw, "max_wait");
    if (mw != NULL) {
        double v = PyFloat_AsDouble(mw);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        st->max_wait = v;
        used++;
    }
    PyObject *floor = PyDict_GetItemString(kw, "slow_floor");
    if (floor != NULL) {
        double v = PyFloat_AsDouble(floor);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        st->slow_floor = v;
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

/* A core type, made for this module and added to it. */
static int
add_type(PyObject *module, PyTypeObject **slot, PyType_Spec *spec)
{
    PyObject *type = PyType_FromModuleAndSpec(module, spec, NULL);
    if (type == NULL)
        return -1;
    *slot = (PyTypeObject *)type;  /* the state's reference */
    return PyModule_AddType(module, *slot);
}

/* Py_mod_exec: fill the module state and add the types (PEP 489). */
static int
module_exec(PyObject *module)
{
    ModState *st = module_state(module);
#define INTERN_NAME(field, text)                                    \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL)     \
        return -1;
    CORE_NAMES(INTERN_NAME)
#undef INTERN_NAME
    st->slow_floor = 0.001;
    st->max_wait = 86400.0;
    if ((st->empty_tuple = PyTuple_New(0)) == NULL
            || (st->float_zero = PyFloat_FromDouble(0.0)) == NULL
            || (st->float_inf = PyFloat_FromDouble(INFINITY)) == NULL)
        return -1;
    if (add_type(module, &st->StatsType, &stats_spec) < 0
            || add_type(module, &st->SourceType, &source_spec) < 0
            || add_type(module, &st->ContextType, &ctx_spec) < 0
            || add_type(module, &st->HookType, &hook_spec) < 0
            || add_type(module, &st->PlainType, &plain_spec) < 0
            || add_type(module, &st->BHType, &bh_spec) < 0
            || add_type(module, &st->FdTagType, &fdtag_spec) < 0
            || add_type(module, &st->FdPollerType, &fdpoller_spec) < 0
            || add_type(module, &st->SharedFdsType, &sharedfds_spec) < 0
            /* attach, waker, bottom halves, timers */
            || add_type(module, &st->WakerLockType, &wlock_spec) < 0
            || add_type(module, &st->WakerType, &waker_spec) < 0
            || add_type(module, &st->BHCarrierType, &bhcarrier_spec) < 0)
        return -1;
    /* iteration and dispatch */
    if (add_type(module, &st->GateType, &gate_spec) < 0)
        return -1;
    /* attach, waker, bottom halves, timers: the bits of Source._core_flags */
    if (PyModule_AddIntConstant(module, "CLASS_IDLE", VT_IDLE) < 0
            || PyModule_AddIntConstant(module, "CLASS_SURVIVES", VT_SURVIVES) < 0
            || PyModule_AddIntConstant(module, "CLASS_HOOKS", VT_HOOKS) < 0)
        return -1;
    if (PyModule_AddStringConstant(module, "SOURCE_HASH", AIOQLOOP_SOURCE_HASH) < 0
            || PyModule_AddIntConstant(module, "INPLACE", AIOQLOOP_INPLACE) < 0)
        return -1;
    return 0;
}

#define VISIT_STATE(field) Py_VISIT(st->field);
#define VISIT_STATE2(field, keyword) Py_VISIT(st->field);
#define CLEAR_STATE(field) Py_CLEAR(st->field);
#define CLEAR_STATE2(field, keyword) Py_CLEAR(st->field);

/* m_traverse and m_clear: the objects of the state that can be part of a cycle (the
 * types hold the module; configured functions hold their modules' globals). */
static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModState *st = module_state(module);
    CORE_TYPES(VISIT_STATE)
    CORE_CONFIG(VISIT_STATE)
    CORE_TIMER_CONFIG(VISIT_STATE2)
    CORE_OWNED(VISIT_STATE)
    return 0;
}

static int
module_clear(PyObject *module)
{
    ModState *st = module_state(module);
    CORE_TYPES(CLEAR_STATE)
    CORE_CONFIG(CLEAR_STATE)
    CORE_TIMER_CONFIG(CLEAR_STATE2)
    CORE_OWNED(CLEAR_STATE)
    return 0;
}

/* m_free: the rest (names and constants) goes with the module itself. */
static void
module_free(void *module)
{
    module_clear((PyObject *)module);
    ModState *st = module_state((PyObject *)module);
    CORE_NAMES(CLEAR_STATE2)
    Py_CLEAR(st->empty_tuple);
    Py_CLEAR(st->float_zero);
    Py_CLEAR(st->float_inf);
}

/* Subinterpreters: all the core keeps is in the module state and every object it
 * touches belongs to the importing interpreter, so each interpreter, even one with its
 * own GIL (PEP 684), gets an independent copy.  Free-threaded builds (PEP 703): the
 * core relies on the GIL to order its plain field accesses, so it says it needs one;
 * aioqloop._engine picks the pure-Python engine there and never imports it. */
static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aioqloop._cengine",
    .m_doc = "The compiled core of aioqloop's engine (see the C source's header).",
    .m_size = sizeof(ModState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__cengine(void)
{
    return PyModuleDef_Init(&moduledef);
}
