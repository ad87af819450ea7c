/* aioqloop._cengine, part hook.h: HookCore: the stock base's selector hook -- one g_main_context_iterate around asyncio's
 * select (GLib's poll function replaced by the selector's), and the placement of the
 * dispatch against asyncio's ready queue.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ---------------------------------------------------------------------- HookCore */
/* The stock base's selector hook (aioqloop._stock._SelectorHook): one context iteration
 * around asyncio's select, and the placement of its dispatch against asyncio's ready
 * queue.  The rare paths (strict priorities, wake-ups of an empty context, a virtual
 * clock, a wrapped select) stay in Python on the subclass. */
struct HookObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    PyObject *loop, *ctx, *clock, *select, *timeout, *events, *dispatch_handle, *preset;
    PyObject *direct, *polls;
    char queued;
};


#define HOOK_FIELDS(X) \
    X(loop) X(ctx) X(clock) X(select) X(timeout) X(events) X(dispatch_handle) \
    X(preset) X(direct) X(polls)
GC_FUNCTIONS(hook, HookObject, HOOK_FIELDS)

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    HookObject *self = (HookObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    Py_INCREF(st->empty_tuple);
    self->events = st->empty_tuple;
    return (PyObject *)self;
}
/* MainContext._is_empty: no source attached and nothing posted by other threads, read
 * from the context's and its waker's C fields.  -1 with an exception. */
static int
context_is_empty(ModState *st, PyObject *ctx)
{
    if (!is_context(st, ctx)) {
        PyErr_SetString(PyExc_TypeError, "the hook's context is not a MainContext");
        return -1;
    }
    ContextObject *c = (ContextObject *)ctx;
    PyObject *sources = REQUIRED(c, sources, "_sources");
    int has = sources == NULL ? -1 : truth(sources);
    if (has)
        return has < 0 ? -1 : 0;
    if (IS_NONE(c->waker))
        return 1;
    WakerObject *w = ctx_waker(c);
    if (w == NULL) {
        PyErr_SetString(PyExc_TypeError, "the context's waker is not a Waker");
        return -1;
    }
    PyObject *ops = REQUIRED(w, ops, "ops");
    int any = ops == NULL ? -1 : truth(ops);
    return any < 0 ? -1 : !any;
}

static int
call_iterate(ModState *st, PyObject *ctx, PyObject *driver, int block)
{
    if (is_context(st, ctx))
        return iterate_impl((ContextObject *)ctx, driver, block, 1);
    PyErr_SetString(PyExc_TypeError, "the hook's context is not a MainContext");
    return -1;
}

/* Does the loop have a timer due (QSelectorEventLoop._timer_due)?  -1 on error. */
static int
timer_due(ModState *st, PyObject *loop)
{
    /* asyncio replaces the list when it purges cancelled timers: read it each time */
    PyObject *scheduled = PyObject_GetAttr(loop, st->s_scheduled);
    if (scheduled == NULL)
        return -1;
    int any = truth(scheduled);
    Py_DECREF(scheduled);
    if (any <= 0)
        return any;
    return upcall_truth(st->hook_timer_due, "hook_timer_due", loop, NULL, NULL);
}

/* asyncio's SelectorKey of a polled fd in the selector's own dict: 1 and *key (new), 0
 * if asyncio has none, -1. */
static int
selector_key(PyObject *fd_to_key, PyObject *fd_o, PyObject **key)
{
    *key = PyDict_GetItemWithError(fd_to_key, fd_o);
    if (*key == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(*key);
    return 1;
}

/* Append (key, events) to asyncio's ready list for a raw epoll result ``ev`` of its fd:
 * only what asyncio's own registration could have reported.  0, or -1. */
static int
report_key(ModState *st, PyObject *ready, PyObject *key, long ev)
{
    /* selectors.SelectorKey, a named tuple: (fileobj, fd, events, data) */
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 4) {
        PyErr_SetString(PyExc_TypeError, "the selector's keys must be selectors.SelectorKey");
        return -1;
    }
    long kevents = PyLong_AsLong(PyTuple_GET_ITEM(key, 2));
    if (kevents == -1 && PyErr_Occurred())
        return -1;
    long mine = ev & st->reportable[kevents & 3];
    if (!mine)
        return 0;
    long events = 0;
    if (mine & ~(long)EPOLLIN_BIT)
        events |= 2;  /* selectors.EVENT_WRITE */
    if (mine & ~(long)EPOLLOUT_BIT)
        events |= 1;  /* selectors.EVENT_READ */
    PyObject *pair = Py_BuildValue("(Ol)", key, events & kevents);
    int rc = pair == NULL ? -1 : PyList_Append(ready, pair);
    Py_XDECREF(pair);
    return rc;
}

/* SelectorFds.select in Python (the configured plain function): for a selector whose
 * epoll object or key dict is not the stock one. */
static PyObject *
shared_select_upcall(ModState *st, PyObject *direct, PyObject *timeout)
{
    return upcall(st->shared_select_fn, "shared_select", direct, timeout, NULL);
}

/* The hook's shared set as the C type; NULL with a TypeError for anything else. */
static SharedFdsObject *
shared_fds(ModState *st, PyObject *direct)
{
    if (!PyObject_TypeCheck(direct, st->SharedFdsType)) {
        PyErr_SetString(PyExc_TypeError, "the hook's shared set is not a SelectorFds");
        return NULL;
    }
    return (SharedFdsObject *)direct;
}

/* Is raw (the results not taken yet) non-empty?  Read directly from the C base. */
static int
shared_raw_nonempty(ModState *st, PyObject *direct)
{
    SharedFdsObject *d = shared_fds(st, direct);
    if (d == NULL)
        return -1;
    PyObject *raw = d->raw;
    if (raw == NULL) {
        PyErr_SetString(PyExc_AttributeError, "raw");
        return -1;
    }
    return PyList_CheckExact(raw) ? PyList_GET_SIZE(raw) != 0 : PyObject_IsTrue(raw);
}

/* SelectorFds.take_raw of the C base: the raw results, replaced by a new empty list. */
static PyObject *
shared_take_raw(ModState *st, PyObject *direct)
{
    SharedFdsObject *d = shared_fds(st, direct);
    if (d == NULL)
        return NULL;
    if (d->raw == NULL) {
        PyErr_SetString(PyExc_AttributeError, "raw");
        return NULL;
    }
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL)
        return NULL;
    PyObject *raw = d->raw;
    d->raw = fresh;
    return raw;
}

/* SelectorFds.select with the C base: one epoll_wait of the shared set straight into a
 * C array (the GIL released only for a wait, see epoll_wait_c), asyncio's (key, events)
 * list built from it, and the raw results kept for the context when one of its fds is
 * among them.  Same rules as the Python method; an epoll object that is not an exact
 * select.epoll, or a key map that is not an exact dict, goes through it. */
static PyObject *
shared_select(ModState *st, PyObject *direct, PyObject *timeout)
{
    SharedFdsObject *d = shared_fds(st, direct);
    if (d == NULL)
        return NULL;
    if (d->stale && upcall_void(st->shared_rebuild, "shared_rebuild", direct, NULL, NULL) < 0)
        return NULL;
    int ms = -1;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        /* epoll's milliseconds, rounded up (EpollSelector.select's rule) */
        double m = t <= 0 ? 0.0 : ceil(t * 1e3);
        ms = m >= (double)INT_MAX ? INT_MAX : (int)m;
    }
    if (d->ep == NULL || d->fd_to_key == NULL || d->ctx_mask == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SelectorFds is not initialised");
        return NULL;
    }
    int epfd = epoll_fileno(d->ep);
    if (epfd == -2 || !PyDict_CheckExact(d->fd_to_key))
        return shared_select_upcall(st, direct, timeout);
    if (epfd < 0) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed epoll object");
        return NULL;
    }
    if (!PyDict_Check(d->ctx_mask)) {
        PyErr_SetString(PyExc_TypeError, "SelectorFds._ctx_mask must be a dict");
        return NULL;
    }
    struct epoll_event evs[FD_POLL_MAX];
    int n = epoll_wait_c(epfd, evs, FD_POLL_MAX, ms);
    if (n < 0)
        return NULL;
    PyObject *ready = PyList_New(0);
    if (ready == NULL || n == 0)
        return ready;
    /* held: a key's hash or comparison may run Python code that replaces the fields */
    PyObject *fd_to_key = d->fd_to_key, *ctx_mask = d->ctx_mask;
    Py_INCREF(fd_to_key);
    Py_INCREF(ctx_mask);
    int hit = 0;
    for (int i = 0; i < n; i++) {
        PyObject *fd_o = PyLong_FromLong((long)evs[i].data.fd);
        if (fd_o == NULL)
            goto fail;
        int mine_ctx = PyDict_Contains(ctx_mask, fd_o);
        PyObject *key = NULL;
        int known = mine_ctx < 0 ? -1 : selector_key(fd_to_key, fd_o, &key);
        Py_DECREF(fd_o);
        if (known < 0)
            goto fail;
        hit |= mine_ctx;
        if (known == 0)
            continue;
        int rc = report_key(st, ready, key, (long)evs[i].events);
        Py_DECREF(key);
        if (rc < 0)
            goto fail;
    }
    if (hit) {
        /* the raw list matters to the context only if one of its fds is in it */
        PyObject *raw = PyList_New(n);
        if (raw == NULL)
            goto fail;
        for (int i = 0; i < n; i++) {
            PyObject *pair = Py_BuildValue("(iI)", evs[i].data.fd, (unsigned int)evs[i].events);
            if (pair == NULL) {
                Py_DECREF(raw);
                goto fail;
            }
            PyList_SET_ITEM(raw, i, pair);
        }
        int rc;
        PyObject *prev = d->raw;
        if (prev != NULL && PyList_CheckExact(prev) && PyList_GET_SIZE(prev)) {
            rc = PyList_SetSlice(prev, PyList_GET_SIZE(prev), PyList_GET_SIZE(prev), raw);
            Py_DECREF(raw);
        }
        else {
            Py_XSETREF(d->raw, raw);
            rc = 0;
        }
        if (rc < 0)
            goto fail;
    }
    Py_DECREF(fd_to_key);
    Py_DECREF(ctx_mask);
    return ready;
fail:
    Py_DECREF(fd_to_key);
    Py_DECREF(ctx_mask);
    Py_DECREF(ready);
    return NULL;
}

/* The hook's select function: SelectorFds.select runs here in C. */
static PyObject *
hook_call_select(HookObject *self, PyObject *timeout)
{
    ModState *st = self->st;
    PyObject *fn = REQUIRED(self, select, "_select");
    if (fn == NULL)
        return NULL;
    if (st->shared_select_fn != NULL && PyMethod_Check(fn)
            && PyMethod_GET_FUNCTION(fn) == st->shared_select_fn
            && PyMethod_GET_SELF(fn) == self->direct)
        return shared_select(st, self->direct, timeout);
    return PyObject_CallOneArg(fn, timeout);
}

/* _SelectorHook.select(timeout=None): prepare, the real select, check, place. */
static PyObject *
hook_select(HookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    ModState *st = self->st;
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
        int empty = context_is_empty(st, ctx);
        if (empty < 0)
            goto fail;
        if (empty) {
            /* plain asyncio work: the real select, and a look for a wake-up */
            events = hook_call_select(self, timeout);
            if (events == NULL)
                goto fail;
            /* only raw results (shared epoll) or events (private epoll) can hold one */
            int woken = IS_NONE(self->direct) ? PyObject_IsTrue(events)
                                              : shared_raw_nonempty(st, self->direct);
            if (woken > 0)
                woken = upcall_truth(st->hook_woken, "hook_woken", (PyObject *)self,
                                     events, NULL);
            if (woken < 0)
                goto fail;
            if (woken) {
                /* a wake-up: run what other threads posted, on the events we have */
                Py_INCREF(events);
                Py_XSETREF(self->preset, events);
                if (call_iterate(st, ctx, (PyObject *)self, 0) < 0)
                    goto fail;
            }
            Py_DECREF(ctx);
            return events;
        }
    }
    Py_INCREF(timeout);
    Py_XSETREF(self->timeout, timeout);
    Py_INCREF(st->empty_tuple);
    Py_XSETREF(self->events, st->empty_tuple);
    if (call_iterate(st, ctx, (PyObject *)self, 1) < 0)
        goto fail;
    events = self->events;  /* the reference moves to the caller */
    Py_INCREF(st->empty_tuple);
    self->events = st->empty_tuple;
    if (events == NULL) {  /* deleted during the iteration */
        Py_INCREF(st->empty_tuple);
        events = st->empty_tuple;
    }
    {
        /* a tool wrapped this select (looptime does): keep the deadline visible */
        PyObject *dict = PyObject_GenericGetDict((PyObject *)self, NULL);
        int wrapped = dict ? PyDict_Contains(dict, st->s_select_name) : -1;
        Py_XDECREF(dict);
        if (wrapped < 0 || (wrapped && upcall_void(st->hook_expose_deadline,
                                                   "hook_expose_deadline", (PyObject *)self,
                                                   ctx, NULL) < 0))
            goto fail;
    }
    Py_DECREF(ctx);
    return events;
fail:
    Py_XDECREF(events);
    Py_DECREF(ctx);
    return NULL;
}

/* A driver's context as the core type, or NULL with an exception. */
static ContextObject *
driver_context(ModState *st, PyObject *ctx)
{
    return (ContextObject *)core_part(ctx, st->ContextType, "the driver has no context",
                                      "a MainContext as the driver's context");
}

static int
ctx_call_poll_ready(ModState *st, PyObject *ctx)
{
    ContextObject *c = driver_context(st, ctx);
    if (c == NULL)
        return -1;
    PyObject *r = ctx_poll_ready(c, NULL);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The select's timeout: the shorter of asyncio's (self->timeout) and the context's wait,
 * at most max_wait (a poll takes 32-bit milliseconds).  A new reference (None: no
 * timeout); *zero says it is 0.  NULL with an exception. */
static PyObject *
poll_timeout(HookObject *self, PyObject *wait, int *zero)
{
    ModState *st = self->st;
    PyObject *timeout = self->timeout ? self->timeout : Py_None;
    *zero = 0;
    if (wait != Py_None) {
        double w = PyFloat_AsDouble(wait);
        if (w == -1.0 && PyErr_Occurred())
            return NULL;
        int shorter = timeout == Py_None;
        if (!shorter) {
            double t = PyFloat_AsDouble(timeout);
            if (t == -1.0 && PyErr_Occurred())
                return NULL;
            shorter = w < t;
        }
        if (shorter && w > st->max_wait) {
            *zero = st->max_wait == 0.0;
            return PyFloat_FromDouble(st->max_wait);
        }
        if (shorter)
            timeout = wait;
    }
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        *zero = t == 0.0;
    }
    Py_INCREF(timeout);
    return timeout;
}

/* After the select: hand what it found of the context's fds to the context (the shared
 * epoll set's raw results, or a look at the private set when its fd was ready). */
static int
take_context_events(HookObject *self, PyObject *ctx, PyObject *events)
{
    ModState *st = self->st;
    if (IS_NONE(self->direct)) {
        int any = PyObject_IsTrue(events);
        if (any <= 0)
            return any;
        int hit = upcall_truth(st->hook_take_epfd, "hook_take_epfd", (PyObject *)self,
                               events, NULL);
        if (hit <= 0)
            return hit;
        return ctx_call_poll_ready(st, ctx);
    }
    PyObject *direct = self->direct;
    Py_INCREF(direct);
    int rc = shared_raw_nonempty(st, direct);
    if (rc > 0) {
        PyObject *taken = shared_take_raw(st, direct);
        if (taken == NULL)
            rc = -1;
        else {
            if (is_context(st, ctx))
                rc = apply_events((ContextObject *)ctx, taken);
            else {
                PyErr_SetString(PyExc_TypeError, "the hook's context is not a MainContext");
                rc = -1;
            }
            Py_DECREF(taken);
        }
    }
    Py_DECREF(direct);
    return rc < 0 ? -1 : 0;
}

/* _SelectorHook.poll(wait): asyncio's own select, for the shorter of both timeouts. */
static PyObject *
hook_poll(HookObject *self, PyObject *wait)
{
    ModState *st = self->st;
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the selector hook is not bound to a context");
        return NULL;
    }
    Py_INCREF(ctx);
    PyObject *events = NULL;
    if (!IS_NONE(self->preset)) {
        /* a wake-up's iteration: the events the select already returned */
        PyObject *preset = self->preset;
        self->preset = NULL;
        if (IS_NONE(self->direct) && ctx_call_poll_ready(st, ctx) < 0) {
            Py_DECREF(preset);
            goto fail;
        }
        Py_XSETREF(self->events, preset);
        Py_DECREF(ctx);
        Py_RETURN_NONE;
    }
    int zero;
    PyObject *timeout = poll_timeout(self, wait, &zero);
    if (timeout == NULL)
        goto fail;
    if (!IS_NONE(self->clock) && !zero)
        events = upcall(st->hook_poll_clock, "hook_poll_clock", (PyObject *)self, timeout, NULL);
    else
        events = hook_call_select(self, timeout);
    Py_DECREF(timeout);
    if (events == NULL || take_context_events(self, ctx, events) < 0)
        goto fail;
    Py_XSETREF(self->events, events);
    Py_DECREF(ctx);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(events);
    Py_DECREF(ctx);
    return NULL;
}

/* The loop's ready queue (asyncio's loop._ready, a deque), a new reference.  Read each
 * time: a dispatch trace (aioqloop._trace) and the strict-priority path (_urgent)
 * replace it. */
static PyObject *
hook_ready_queue(HookObject *self, PyObject *loop)
{
    return PyObject_GetAttr(loop, self->st->s_ready_q);
}

/* _SelectorHook.source_ready(priority): queue the default-priority dispatch, FIFO. */
static int
hook_queue(HookObject *self)
{
    ModState *st = self->st;
    if (self->queued || IS_NONE(self->dispatch_handle))
        return 0;
    PyObject *loop = REQUIRED(self, loop, "_loop");
    PyObject *ready = loop ? hook_ready_queue(self, loop) : NULL;
    if (ready == NULL)
        return -1;
    /* deque's own append: asyncio's queue and its subclasses (the trace's) keep it */
    int rc = upcall_void(st->deque_append, "deque_append", ready, self->dispatch_handle, NULL);
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
ctx_call_dispatch(ModState *st, PyObject *ctx, PyObject *priority)
{
    ContextObject *c = driver_context(st, ctx);
    if (c == NULL)
        return -1;
    PyObject *r = ctx_dispatch(c, priority);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* _SelectorHook.place(priority): run the dispatch now or queue it, by GLib's rules with
 * asyncio's handles counting as sources of PRIORITY_DEFAULT. */
static PyObject *
hook_place(HookObject *self, PyObject *priority)
{
    ModState *st = self->st;
    /* an int priority (what check returns) without a float conversion */
    double p = PyLong_CheckExact(priority) ? (double)PyLong_AsLong(priority)
                                           : PyFloat_AsDouble(priority);
    if (p == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *ctx = self->ctx;
    if (IS_NONE(ctx)) {
        PyErr_SetString(PyExc_RuntimeError, "the selector hook is not bound to a context");
        return NULL;
    }
    if (p < 0) {
        if (upcall_void(st->hook_urgent, "hook_urgent", (PyObject *)self, ctx, priority) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *loop = REQUIRED(self, loop, "_loop");
    if (loop == NULL)
        return NULL;
    if (!is_context(st, ctx)) {
        PyErr_SetString(PyExc_TypeError, "the hook's context is not a MainContext");
        return NULL;
    }
    Py_INCREF(ctx);
    Py_INCREF(loop);
    PyObject *ready = hook_ready_queue(self, loop);
    if (ready == NULL) {
        Py_DECREF(loop);
        Py_DECREF(ctx);
        return NULL;
    }
    int events = PyObject_IsTrue(self->events ? self->events : Py_None);
    if (events < 0)
        goto fail_ready;
    int quiet = !events;
    if (quiet) {
        /* Python code: another thread may append to the ready queue meanwhile, so the
         * queue is looked at only after it */
        int due = timer_due(st, loop);
        if (due < 0)
            goto fail_ready;
        quiet = !due;
    }
    Py_ssize_t nready = PyObject_Length(ready);
    if (nready < 0)
        goto fail_ready;
    int rc = 0;
    if (p == 0) {
        if (quiet && nready == 0) {
            rc = ctx_call_dispatch(st, ctx, priority);  /* nothing of asyncio's to keep FIFO */
        }
        else if (quiet && nready == 1) {
            PyObject *first = PySequence_GetItem(ready, 0);
            if (first == NULL)
                goto fail_ready;
            int ours = first == self->dispatch_handle;
            Py_DECREF(first);
            if (ours) {
                /* only our own queued dispatch: run it here, in order.  Take just that
                 * handle off the left: other threads only append (call_soon_threadsafe),
                 * so whatever they added since stays queued */
                rc = upcall_void(st->deque_popleft, "deque_popleft", ready, NULL, NULL);
                if (rc == 0) {
                    self->queued = 0;
                    rc = ctx_call_dispatch(st, ctx, priority);
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
        rc = ctx_call_dispatch(st, ctx, priority);  /* idle-class: asyncio has nothing to run */
    }
    else {
        /* asyncio's work first: no big lock held meanwhile */
        PyObject *r = ctx_dispatch_postponed((ContextObject *)ctx, NULL);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_DECREF(ready);
    Py_DECREF(loop);
    Py_DECREF(ctx);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
fail_ready:
    Py_DECREF(ready);
    Py_DECREF(loop);
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

CORE_SPEC(hook, HookObject, "HookCore",
    "The stock base's selector hook, as C (base of aioqloop._stock._SelectorHook).",
    hook_new)
