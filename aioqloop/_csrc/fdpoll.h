/* aioqloop._cengine, part fdpoll.h: the fd records of a context (GLib's GPollRec list) as C
 * fields, and the zero-timeout poll of its private epoll set done in C.
 *
 *   FdTagCore     one add_unix_fd registration (base of aioqloop.source._FdRecord): the
 *                 watching source, the fd, the events wanted and the revents last seen;
 *   FdPollerCore  the hot state of aioqloop._fdpoll.FdPoller (its base): the epoll set,
 *                 fd -> records, fd -> merged mask, the always-ready and unpolled fds,
 *                 the wake-up fd and the last NVAL audit.
 *
 * The rules stay in Python (FdPoller's add/remove/sync/rebuild/audit, the reference of
 * both engines); the poll of the iteration and the recording of its results run here:
 * epoll_wait straight into a C array, each result applied to the records' revents and
 * their sources marked ready (GLib's g_main_context_check over the GPollFD array) with
 * no attribute lookup.  A zero-timeout epoll_wait never sleeps: the GIL is kept (its
 * release and retake cost more than the system call).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* Configured upcalls (upcall, upcall_void, upcall_truth): dispatch.h. */

/* ------------------------------------------------------------------- FdTagCore */
struct FdTagObject {
    PyObject_HEAD
    PyObject *source, *fd, *events, *ident;
    long revents;
};

#define FDTAG_FIELDS(X) X(source) X(fd) X(events) X(ident)
GC_FUNCTIONS(fdtag, FdTagObject, FDTAG_FIELDS)

#define FTM(name, type, field) {name, type, offsetof(FdTagObject, field), 0, NULL}
static PyMemberDef fdtag_members[] = {
    FTM("source", T_OBJECT_EX, source),
    FTM("fd", T_OBJECT_EX, fd),
    FTM("events", T_OBJECT_EX, events),
    FTM("ident", T_OBJECT, ident),
    FTM("revents", T_LONG, revents),
    {NULL}
};
static PyMethodDef fdtag_methods[] = {{NULL}};

CORE_SPEC(fdtag, FdTagObject, "FdTagCore",
    "One add_unix_fd registration as C fields (base of the tag add_unix_fd returns).",
    PyType_GenericNew)

/* ---------------------------------------------------------------- FdPollerCore */
struct FdPollerObject {
    PyObject_HEAD
    PyObject *epoll;     /* select.epoll, or None until opened (NULL before __init__) */
    PyObject *records;   /* fd -> list of FdTag */
    PyObject *masks;     /* fd -> merged epoll mask */
    PyObject *always;    /* set of always-ready fds (regular files) */
    PyObject *unpolled;  /* set of fds unpolled while their watchers are blocked */
    int wake_fd;         /* the Waker's eventfd in the set, -1 if none */
    double last_audit;   /* loop time of the last NVAL audit */
};

#define FDPOLLER_FIELDS(X) X(epoll) X(records) X(masks) X(always) X(unpolled)
GC_FUNCTIONS(fdpoller, FdPollerObject, FDPOLLER_FIELDS)

static PyObject *
fdpoller_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    FdPollerObject *self = (FdPollerObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->wake_fd = -1;
    return (PyObject *)self;
}

/* select.epoll's object: its fd is the one field after the header (-1 once closed), in
 * every CPython this module builds for.  Read only from an exact select.epoll. */
typedef struct {
    PyObject_HEAD
    int epfd;
} EpollLayout;

/* The live fd of ``ep`` if it is an exact select.epoll (-1 if closed), else -2: the
 * caller goes through its Python methods. */
static int
epoll_fileno(PyObject *ep)
{
    PyTypeObject *t = Py_TYPE(ep);
    if (strcmp(t->tp_name, "select.epoll") != 0
            || t->tp_basicsize < (Py_ssize_t)sizeof(EpollLayout))
        return -2;
    return ((EpollLayout *)ep)->epfd;
}

static PyObject *
fdpoller_get_epoll(FdPollerObject *self, void *closure)
{
    if (self->epoll == NULL) {
        PyErr_SetString(PyExc_AttributeError, "epoll");
        return NULL;
    }
    Py_INCREF(self->epoll);
    return self->epoll;
}

static int
fdpoller_set_epoll(FdPollerObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete epoll");
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(self->epoll, value);
    return 0;
}

static PyGetSetDef fdpoller_getset[] = {
    {"epoll", (getter)fdpoller_get_epoll, (setter)fdpoller_set_epoll,
     "The epoll object once open (its fd number never changes across a rebuild).", NULL},
    {NULL}
};

#define FPM(name, type, field) {name, type, offsetof(FdPollerObject, field), 0, NULL}
static PyMemberDef fdpoller_members[] = {
    FPM("records", T_OBJECT_EX, records),
    FPM("masks", T_OBJECT_EX, masks),
    FPM("always", T_OBJECT_EX, always),
    FPM("unpolled", T_OBJECT_EX, unpolled),
    FPM("_wake_fd", T_INT, wake_fd),
    FPM("last_audit", T_DOUBLE, last_audit),
    {NULL}
};

static PyType_Slot fdpoller_slots[] = {
    {Py_tp_doc, (void *)"The hot state of a context's fd poller as C fields (base of FdPoller)."},
    {Py_tp_traverse, (void *)fdpoller_traverse},
    {Py_tp_clear, (void *)fdpoller_clear},
    {Py_tp_dealloc, (void *)fdpoller_dealloc},
    {Py_tp_members, fdpoller_members},
    {Py_tp_getset, fdpoller_getset},
    {Py_tp_new, (void *)fdpoller_new},
    {0, NULL},
};

static PyType_Spec fdpoller_spec = {
    .name = "aioqloop._cengine.FdPollerCore",
    .basicsize = sizeof(FdPollerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = fdpoller_slots,
};

/* The context's poller as the C type, or NULL (no exception) if it is something else. */
static inline FdPollerObject *
ctx_fdpoller(ContextObject *self)
{
    PyObject *f = self->fds;
    if (f == NULL || !PyObject_TypeCheck(f, self->st->FdPollerType))
        return NULL;
    return (FdPollerObject *)f;
}

/* The context's poller as the C type; NULL with an exception if it is not one (the
 * context's FdPoller always is: the core reads its fields, never its attributes). */
static FdPollerObject *
ctx_fdpoller_required(ContextObject *self)
{
    FdPollerObject *fp = ctx_fdpoller(self);
    if (fp == NULL) {
        if (IS_NONE(self->fds))
            PyErr_SetString(PyExc_RuntimeError, "the MainContext has no fd poller");
        else
            PyErr_SetString(PyExc_TypeError, "the MainContext's fd poller is not an FdPoller");
    }
    return fp;
}

/* Truth of one of the poller's containers (masks, always), read from the C poller.
 * No poller (a half-made context) has none.  -1 on error. */
static int
fds_truth(ContextObject *self, size_t offset, const char *name)
{
    if (IS_NONE(self->fds))
        return 0;
    FdPollerObject *fp = ctx_fdpoller_required(self);
    if (fp == NULL)
        return -1;
    PyObject *o = *(PyObject **)((char *)fp + offset);
    if (o == NULL) {
        PyErr_SetString(PyExc_AttributeError, name);
        return -1;
    }
    if (PyDict_CheckExact(o))
        return PyDict_GET_SIZE(o) != 0;
    if (PyAnySet_CheckExact(o))
        return PySet_GET_SIZE(o) != 0;
    return PyObject_IsTrue(o);
}
#define FDS_MASKS(ctx) fds_truth((ctx), offsetof(FdPollerObject, masks), "masks")
#define FDS_ALWAYS(ctx) fds_truth((ctx), offsetof(FdPollerObject, always), "always")

/* FdPoller.last_audit: the loop time of the last NVAL audit.  -1 on error. */
static int
fds_last_audit(ContextObject *self, double *out)
{
    FdPollerObject *fp = ctx_fdpoller_required(self);
    if (fp == NULL)
        return -1;
    *out = fp->last_audit;
    return 0;
}

/* The records of one polled fd: their revents (what they asked for, plus ERR, HUP and
 * NVAL, which poll(2) always reports) and their sources marked ready (FdPoller.apply for
 * one result).  ``recs`` is the fd's list of records. */
static int
apply_records(ContextObject *self, PyObject *recs, long ev)
{
    ModState *st = self->st;
    if (!PyList_Check(recs))
        return 0;
    Py_INCREF(recs);
    int rc = 0;
    /* by index: a callback run by mark_ready may change the list */
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(recs) && rc == 0; j++) {
        PyObject *rec = PyList_GET_ITEM(recs, j);
        Py_INCREF(rec);
        PyObject *source = NULL;
        if (!PyObject_TypeCheck(rec, st->FdTagType)) {
            /* the records are the tags add_unix_fd made: the core reads their fields */
            PyErr_SetString(PyExc_TypeError, "an fd record is not an add_unix_fd tag");
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        FdTagObject *tag = (FdTagObject *)rec;
        PyObject *events = tag->events;
        long mask = events ? PyLong_AsLong(events) : -1;
        if (events == NULL)
            PyErr_SetString(PyExc_AttributeError, "events");
        if (mask == -1 && PyErr_Occurred()) {
            Py_DECREF(rec);
            rc = -1;
            break;
        }
        long revents = ev & (mask | POLLERR | POLLHUP | POLLNVAL);
        tag->revents = revents;
        if (revents) {
            source = tag->source;
            if (source == NULL) {
                PyErr_SetString(PyExc_AttributeError, "source");
                rc = -1;
            }
            Py_XINCREF(source);
        }
        if (rc == 0 && source != NULL && Source_Check(st, source)
                && !((SourceObject *)source)->blocked)
            rc = mark_ready(self, source);
        Py_XDECREF(source);
        Py_DECREF(rec);
    }
    Py_DECREF(recs);
    return rc;
}

/* One poll result (fd, ev) against the records dict: 1 if it was the wake-up fd. */
static int
apply_fd(ContextObject *self, PyObject *records, long fd, long ev, long wake)
{
    if (fd == wake)
        return 1;
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL)
        return -1;
    PyObject *recs = PyDict_GetItemWithError(records, key);
    Py_DECREF(key);
    if (recs == NULL)
        return PyErr_Occurred() ? -1 : 0;
    return apply_records(self, recs, ev) < 0 ? -1 : 0;
}

/* The poller's records dict and wake-up fd, read from the C poller.  *records is a new
 * reference.  -1 on error. */
static int
fds_records(ContextObject *self, PyObject **records, long *wake)
{
    FdPollerObject *fp = ctx_fdpoller_required(self);
    if (fp == NULL)
        return -1;
    if (fp->records == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the fd poller is not initialised");
        return -1;
    }
    *records = fp->records;
    Py_INCREF(*records);
    *wake = fp->wake_fd;
    if (!PyDict_Check(*records)) {
        PyErr_SetString(PyExc_TypeError, "FdPoller.records must be a dict");
        Py_CLEAR(*records);
        return -1;
    }
    return 0;
}

/* epoll_wait on ``epfd`` for ``ms`` milliseconds (-1: forever) into ``evs``: a look
 * without a wait first, with the GIL held (what is ready now costs no release and
 * retake of the GIL); a wait only when nothing is, with the GIL released.  The count,
 * 0 when interrupted by a signal (after its handler ran), -1 with an exception. */
static int
epoll_wait_c(int epfd, struct epoll_event *evs, int max, int ms)
{
    int n = epoll_wait(epfd, evs, max, 0);
    if (n == 0 && ms != 0) {
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, evs, max, ms);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        return PyErr_CheckSignals() < 0 ? -1 : 0;
    }
    return n;
}

/* Waker.drain() of the context's waker, if it has one: a wake-up was seen.  Looked up by
 * name, the one place the fd poll does so: Waker.drain holds the handshake's rules and a
 * test replaces it on the class.  0, or -1 with an exception. */
static int
ctx_drain_waker(ContextObject *self)
{
    PyObject *waker = self->waker;
    if (IS_NONE(waker))
        return 0;
    Py_INCREF(waker);
    int rc = call_method_void(waker, self->st->s_drain, NULL, NULL, NULL);
    Py_DECREF(waker);
    return rc;
}

/* The most results one epoll_wait returns here (what select.epoll.poll takes by default). */
#define FD_POLL_MAX 1023

/* FdPoller.poll(0) of the C poller: epoll_wait with no wait, straight into a C array,
 * and the results applied.  1 if done, -1 on error.  A wake-up is drained. */
static int
fds_poll_now(ContextObject *self, FdPollerObject *fp)
{
    if (fp->epoll == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the fd poller is not initialised");
        return -1;
    }
    if (fp->epoll == Py_None) {
        /* No epoll set yet (opened on first need): a wake-up came through the driver's
         * own wake callback; consume it. */
        return ctx_drain_waker(self) < 0 ? -1 : 1;
    }
    int epfd = epoll_fileno(fp->epoll);
    if (epfd == -2) {
        PyErr_SetString(PyExc_TypeError, "FdPoller.epoll must be a select.epoll");
        return -1;
    }
    if (epfd < 0) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed epoll object");
        return -1;
    }
    struct epoll_event evs[FD_POLL_MAX];
    /* zero timeout: it never sleeps, so the GIL stays held; interrupted: nothing
     * reported (FdPoller.poll's InterruptedError) */
    int n = epoll_wait_c(epfd, evs, FD_POLL_MAX, 0);
    if (n <= 0)
        return n < 0 ? -1 : 1;
    PyObject *records;
    long wake;
    if (fds_records(self, &records, &wake) < 0)
        return -1;
    int woken = 0, rc = 0;
    for (int i = 0; i < n && rc >= 0; i++) {
        rc = apply_fd(self, records, (long)evs[i].data.fd, (long)evs[i].events, wake);
        if (rc > 0)
            woken = 1;
    }
    Py_DECREF(records);
    if (rc < 0)
        return -1;
    if (woken && ctx_drain_waker(self) < 0)
        return -1;
    return 1;
}

/* ------------------------------------------------------------- SharedFdsCore */
/* The hot state of aioqloop._selectorfds.SelectorFds (its base): the stock base's one
 * epoll object shared by asyncio's selector and the context.  hook.h's shared_select
 * reads these fields directly and polls the object in C. */
struct SharedFdsObject {
    PyObject_HEAD
    PyObject *ep;          /* _ep: the selector's select.epoll */
    PyObject *fd_to_key;   /* _fd_to_key: asyncio's fd -> SelectorKey */
    PyObject *ctx_mask;    /* _ctx_mask: fd -> the context's merged epoll mask */
    PyObject *raw;         /* raw: (fd, revents) polled and not taken yet */
    char stale, closed;
};

#define SHAREDFDS_FIELDS(X) X(ep) X(fd_to_key) X(ctx_mask) X(raw)
GC_FUNCTIONS(sharedfds, SharedFdsObject, SHAREDFDS_FIELDS)

#define SFM(name, type, field) {name, type, offsetof(SharedFdsObject, field), 0, NULL}
static PyMemberDef sharedfds_members[] = {
    SFM("_ep", T_OBJECT_EX, ep),
    SFM("_fd_to_key", T_OBJECT_EX, fd_to_key),
    SFM("_ctx_mask", T_OBJECT_EX, ctx_mask),
    SFM("raw", T_OBJECT_EX, raw),
    SFM("stale", T_BOOL, stale),
    SFM("closed", T_BOOL, closed),
    {NULL}
};
static PyMethodDef sharedfds_methods[] = {{NULL}};

CORE_SPEC(sharedfds, SharedFdsObject, "SharedFdsCore",
    "The hot state of the epoll object shared with asyncio's selector (base of SelectorFds).",
    PyType_GenericNew)

