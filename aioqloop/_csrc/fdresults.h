/* aioqloop._cengine, part fdresults.h: Fd results: the poll results of g_main_context_check (GPollFD revents) recorded on the
 * fd records and their sources made ready; a wake-up (GWakeup) drained.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* FdPoller.apply: record poll results (fd, revents) on the fd records and mark their
 * sources ready; a wake-up is drained (MainContext._apply_polled). */
static int
apply_events(ContextObject *self, PyObject *events)
{
    PyObject *records;
    long wake;
    if (fds_records(self, &records, &wake) < 0)
        return -1;
    PyObject *seq = PySequence_Fast(events, "poll results must be a sequence");
    if (seq == NULL) {
        Py_DECREF(records);
        return -1;
    }
    int woken = 0, rc = 0;
    /* The size is read again each time, and the item held: a list of results may be
     * changed by the Python code that marking a source ready runs (the driver's
     * source_ready). */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && rc >= 0; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "poll results must be (fd, events) pairs");
            rc = -1;
            break;
        }
        Py_INCREF(item);
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        long ev = fd == -1 && PyErr_Occurred() ? -1 : PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if ((fd == -1 || ev == -1) && PyErr_Occurred())
            rc = -1;
        else
            rc = apply_fd(self, records, fd, ev, wake);
        Py_DECREF(item);
        if (rc > 0) {
            woken = 1;
            rc = 0;
        }
    }
    Py_DECREF(seq);
    Py_DECREF(records);
    if (rc == 0 && woken)
        rc = ctx_drain_waker(self);
    return rc;
}

static PyObject *
ctx_apply_polled(ContextObject *self, PyObject *events)
{
    if (apply_events(self, events) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* MainContext._poll_ready: a look at the context's fds without a wait, the results
 * recorded (FdPoller.poll(0) with _apply_polled). */
static PyObject *
ctx_poll_ready(ContextObject *self, PyObject *unused)
{
    if (REQUIRED(self, fds, "_fds") == NULL)
        return NULL;
    FdPollerObject *fp = ctx_fdpoller_required(self);
    if (fp == NULL || fds_poll_now(self, fp) < 0)
        return NULL;
    Py_RETURN_NONE;
}
