/* aioqloop._cengine, part stats.h: SourceStatistics: the per-source counters the context keeps for each dispatch (what
 * GLib leaves to profilers; aioqloop's MainContext.statistics reports them).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* -------------------------------------------------------------- SourceStatistics */
struct StatsObject {
    PyObject_HEAD
    Py_ssize_t dispatches;
    Py_ssize_t waited;
    double dispatch_time;
    double max_dispatch_time;
};

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

/* Not GC-tracked: it holds no object, so it cannot be part of a cycle (its reference
 * to its heap type is plain ownership). */
static void
stats_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot stats_slots[] = {
    {Py_tp_doc, (void *)"Per-source counters kept by the context (see MainContext.statistics)."},
    {Py_tp_members, stats_members},
    {Py_tp_init, (void *)stats_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)stats_dealloc},
    {0, NULL},
};

static PyType_Spec stats_spec = {
    .name = "aioqloop._cengine.SourceStatistics",
    .basicsize = sizeof(StatsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = stats_slots,
};
