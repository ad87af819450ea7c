/* aioqloop._cengine, part fdresults.h: Fd results: the poll results of g_main_context_check (GPollFD revents) recorded on the
 * fd records and their sources made ready; a wake-up (GWakeup) drained.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* One poll result (fd, revents) of apply_events: its records and their sources. */
static int
apply_event(ContextObject *self, PyObject *records, PyObject *item, long wake, int *woken)
{
    ModState *st = self->st;
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
        PyObject *mask_o = PyObject_GetAttr(rec, st->s_events);
        long mask = mask_o ? PyLong_AsLong(mask_o) : -1;
        Py_XDECREF(mask_o);
        if (mask == -1 && PyErr_Occurred()) {
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        long revents = ev & (mask | POLLERR | POLLHUP | POLLNVAL);
        PyObject *rv = PyLong_FromLong(revents);
        if (rv == NULL || PyObject_SetAttr(rec, st->s_revents, rv) < 0) {
            Py_XDECREF(rv);
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        Py_DECREF(rv);
        if (revents) {
            PyObject *source = PyObject_GetAttr(rec, st->s_source);
            if (source == NULL) {
                Py_DECREF(rec);
                rc = -1;
                break;
            }
            if (Source_Check(st, source) && !((SourceObject *)source)->blocked)
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
    ModState *st = self->st;
    PyObject *fds = self->fds;
    if (IS_NONE(fds)) {
        PyErr_SetString(PyExc_RuntimeError, "the MainContext has no fd poller");
        return -1;
    }
    Py_INCREF(fds);
    PyObject *records = PyObject_GetAttr(fds, st->s_records);
    PyObject *wake_o = records ? PyObject_GetAttr(fds, st->s_wake_fd) : NULL;
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
        rc = call_method_void(self->waker, st->s_drain, NULL, NULL, NULL);
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
    ModState *st = self->st;
    PyObject *fds = REQUIRED(self, fds, "_fds");
    PyObject *epoll = fds ? PyObject_GetAttr(fds, st->s_epoll) : NULL;
    if (epoll == NULL)
        return NULL;
    if (epoll == Py_None) {
        /* No epoll set yet (opened on first need): a wake-up came through the driver's
         * own wake callback; consume it. */
        Py_DECREF(epoll);
        if (!IS_NONE(self->waker) && call_method_void(self->waker, st->s_drain, NULL, NULL, NULL) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *events = PyObject_CallMethodOneArg(epoll, st->s_poll, st->float_zero);
    Py_DECREF(epoll);
    if (events == NULL)
        return NULL;
    int rc = apply_events(self, events);
    Py_DECREF(events);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}
