/* aioqloop._cengine, part stats.h: SourceStatistics: the per-source counters the context keeps for each dispatch (what
 * GLib leaves to profilers; aioqloop's MainContext.statistics reports them).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

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
