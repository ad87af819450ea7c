/* aioqloop._cengine, part context.h: ContextCore, its object and its ready sets: GLib's READY flag on a source and its
 * ancestors (g_source_set_ready_time's effect, the ready lists of g_main_context_check).
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

/* ------------------------------------------------------------------- ContextCore */
/* The ready sources of one priority, in GLib's dispatch order (the order of the context's
 * source list: attach order, children just before their parent, a source whose priority
 * changed at the tail): an intrusive list through the sources' rq_prev/rq_next.
 * Pushing looks for a source's place from the tail for at most RQ_WALK steps (a source
 * re-armed by its dispatch, or made ready in attach order, finds it at once); one that
 * would need a longer walk -- a burst of timeouts made ready in deadline order, not attach
 * order -- is appended and the queue marked unsorted, and the queue is sorted once, in
 * O(n log n), when it is next read in order (queue_of).  Walking every push instead made
 * a burst of n ready sources cost O(n^2): 65,000 timeouts due at once took a minute. */
typedef struct {
    long prio;
    PyObject *key;  /* the priority as an int object (what check returns) */
    SourceObject *head, *tail;
    Py_ssize_t count;
    char unsorted;  /* appended out of order: sort before reading in order */
} ReadyQueue;

#define RQ_WALK 32

/* One entry of the ready-time heap (GLib's per-source ready_time, kept here in one binary
 * heap so an iteration touches only what is due): ordered by (when, seq); a strong
 * reference to the source.  The entry is live while the source is in_heap with this
 * heap_seq; a re-armed or destroyed source leaves its old entry stale (lazy deletion,
 * the rules of aioqloop/_deadlines.py, the pure engine's twin). */
typedef struct {
    double when;
    uint64_t seq;
    SourceObject *src;
} DeadlineEntry;

struct ContextObject {
    PyObject_HEAD
    ModState *st;  /* the module state (common.h), kept for the hot paths */
    /* The ready queues that have sources, by ascending priority (few: a small array
     * kept sorted, never shrunk, so marking and dispatching allocate nothing). */
    ReadyQueue *rq;
    Py_ssize_t nrq, rq_cap;
    /* g_main_dispatch's pending dispatches: the batches of the dispatches running on
     * this context (a nested one stacked on the outer), strong references, reused. */
    PyObject **pend;
    Py_ssize_t npend, pend_cap;
    /* The dispatch stack of the owner thread (aioqloop._registry._tls.current), cached
     * with the thread it belongs to: one thread-local read per thread, not per dispatch. */
    PyObject *current;
    uint64_t current_thread;
    PyObject *blocked, *blocked_due;
    PyObject *gate, *port, *fds, *source_ready, *waker, *bh;
    PyObject *prepare_hooks, *check_hooks, *clock;
    PyObject *tap;             /* None, or the dispatch tap (aioqloop._trace) */
    double now, dispatch_time;
    Py_ssize_t in_iteration, serial, iterations;
    char in_hook;
    /* The ready-time heap (deadlines.h): a C array, its stale entries and the last
     * sequence number given (Deadlines.entries, _stale and _seq in the pure engine). */
    DeadlineEntry *dl;
    Py_ssize_t ndl, dl_cap, dl_stale;
    uint64_t dl_seq;
    /* g_source_attach's bookkeeping, read by every attach: the source table (id ->
     * source), the next id to try, the last attach order given (_sourceset.py's
     * _seq), and the closed/closing/owned-by-loop flags (plain attributes of the pure
     * engine's MainContext). */
    PyObject *sources;
    Py_ssize_t next_id, order_seq;
    char closed, closing, owned_by_loop;
    /* iteration and dispatch: what each iteration reads, as fields rather than by name.
     * The priorities of the prepare and check hook indexes (their PriorityIndex.prios,
     * lists never replaced); the loop and the class the clock was bound for (a new
     * class: rebind); the owner thread's id or None (g_main_context_acquire's owner);
     * the seconds between two NVAL audits of watched fds (fd_audit_interval). */
    PyObject *prepare_prios, *check_prios, *clock_loop, *clock_class, *owner;
    /* the driver (MainContext._driver: a bridge.Driver), told of a new earliest ready
     * time by timers_deadline_changed */
    PyObject *driver;
    double audit_interval;
};


/* A context's bottom-half state (aioqloop.bottomhalf._BHCarrier, QEMU's per-AioContext
 * bh_list): the FIFO of scheduled bottom halves, how many of them are still scheduled,
 * and the source that runs them.  ``pending`` and ``queue`` are guarded by the context's
 * Waker lock (any thread schedules). */
typedef struct {
    PyObject_HEAD
    ModState *st;         /* the module state (common.h), kept for the hot paths */
    PyObject *source;     /* the carrying _BHSource */
    PyObject *queue;      /* deque of BottomHalf, scheduled or cancelled */
    Py_ssize_t pending;   /* scheduled and not yet run or cancelled */
} BHCarrierObject;

#define CTX_FIELDS(X) \
    X(blocked) X(blocked_due) X(gate) X(port) X(fds) X(source_ready) \
    X(waker) X(bh) X(prepare_hooks) X(check_hooks) X(clock) \
    X(tap) X(current) X(sources) \
    X(prepare_prios) X(check_prios) X(clock_loop) X(clock_class) X(owner) X(driver)

static int
ctx_traverse(ContextObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    CTX_FIELDS(VISIT_FIELD)
    for (Py_ssize_t i = 0; i < self->nrq; i++)
        for (SourceObject *s = self->rq[i].head; s != NULL; s = s->rq_next)
            Py_VISIT((PyObject *)s);
    for (Py_ssize_t i = 0; i < self->npend; i++)
        Py_VISIT(self->pend[i]);
    for (Py_ssize_t i = 0; i < self->ndl; i++)
        Py_VISIT((PyObject *)self->dl[i].src);
    return 0;
}

/* Empty every ready queue (the context is cleared or freed). */
static void
rq_clear_all(ContextObject *self)
{
    while (self->nrq > 0) {
        ReadyQueue *q = &self->rq[--self->nrq];
        SourceObject *s = q->head;
        Py_CLEAR(q->key);
        q->head = q->tail = NULL;
        q->count = 0;
        while (s != NULL) {
            SourceObject *next = s->rq_next;
            s->rq_prev = s->rq_next = NULL;
            s->rq_queued = 0;
            s->rq_owner = NULL;
            s->ready = 0;
            Py_DECREF(s);
            s = next;
        }
    }
}

static int
ctx_clear(ContextObject *self)
{
    rq_clear_all(self);
    while (self->npend > 0) {
        PyObject *o = self->pend[--self->npend];
        self->pend[self->npend] = NULL;
        Py_DECREF(o);
    }
    dl_clear(self);
    CTX_FIELDS(CLEAR_FIELD)
    return 0;
}

static void
ctx_dealloc(ContextObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ctx_clear(self);
    PyMem_Free(self->rq);
    PyMem_Free(self->pend);
    PyMem_Free(self->dl);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *
ctx_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ModState *st = state_of_type(type);
    if (st == NULL)
        return NULL;
    ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = st;
    self->audit_interval = 1.0;  /* MainContext.fd_audit_interval's default */
    self->owner = Py_None;
    Py_INCREF(Py_None);
    self->blocked = PyList_New(0);
    self->blocked_due = PyList_New(0);
    if (!self->blocked || !self->blocked_due) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* A source's _order (its place in the context's source list): a tuple of ints made by
 * the source set (aioqloop/_sourceset.py).  Compared here without running Python code, so
 * nothing can change a queue while it is walked.  -1, 0 or 1 as a < b, a == b, a > b;
 * -2 with an exception. */
static int
order_cmp(PyObject *a, PyObject *b)
{
    if (a == NULL || b == NULL || !PyTuple_CheckExact(a) || !PyTuple_CheckExact(b)) {
        PyErr_SetString(PyExc_TypeError, "a source's _order must be a tuple of ints");
        return -2;
    }
    Py_ssize_t na = PyTuple_GET_SIZE(a), nb = PyTuple_GET_SIZE(b);
    for (Py_ssize_t i = 0; i < na && i < nb; i++) {
        PyObject *x = PyTuple_GET_ITEM(a, i), *y = PyTuple_GET_ITEM(b, i);
        if (x == y)
            continue;
        if (!PyLong_CheckExact(x) || !PyLong_CheckExact(y)) {
            PyErr_SetString(PyExc_TypeError, "a source's _order must be a tuple of ints");
            return -2;
        }
        long long u = PyLong_AsLongLong(x), v = PyLong_AsLongLong(y);
        if ((u == -1 || v == -1) && PyErr_Occurred())
            return -2;
        if (u != v)
            return u < v ? -1 : 1;
    }
    return na == nb ? 0 : (na < nb ? -1 : 1);
}

/* 0 if o is an order order_cmp can compare (a tuple of ints), else -1 with its error. */
static int
order_check(PyObject *o)
{
    int ok = o != NULL && PyTuple_CheckExact(o);
    for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(o); i++)
        ok = PyLong_CheckExact(PyTuple_GET_ITEM(o, i));
    if (!ok)
        PyErr_SetString(PyExc_TypeError, "a source's _order must be a tuple of ints");
    return ok ? 0 : -1;
}

static void rq_remove(SourceObject *src);

/* The index of the queue of priority prio, or where it would go (*found says which). */
static Py_ssize_t
rq_find(ContextObject *self, long prio, int *found)
{
    Py_ssize_t lo = 0, hi = self->nrq;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (self->rq[mid].prio < prio)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < self->nrq && self->rq[lo].prio == prio;
    return lo;
}

/* A source's priority as a C long (GLib's gint), or -1 with an exception. */
static int
priority_of(SourceObject *src, long *prio)
{
    PyObject *p = src->priority;
    if (p == NULL || !PyLong_Check(p)) {
        PyErr_SetString(PyExc_TypeError, "a source's _priority must be an int");
        return -1;
    }
    *prio = PyLong_AsLong(p);
    return (*prio == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* Queue src (not queued) at its place in the ready queue of prio, searched from the
 * tail: a source re-armed by its dispatch, or made ready in attach order, goes there at
 * once.  The queue takes a reference.  0, or -1 with an exception (nothing changed). */
static int
rq_push(ContextObject *self, SourceObject *src, long prio)
{
    if (src->rq_queued) {
        /* READY was cleared behind the queue's back (a write to _ready): requeue */
        Py_INCREF(src);
        rq_remove(src);
        int rc = rq_push(self, src, prio);
        Py_DECREF(src);
        return rc;
    }
    int found;
    Py_ssize_t i = rq_find(self, prio, &found);
    SourceObject *after = NULL;
    char unsorted = 0;
    if (found) {
        ReadyQueue *q = &self->rq[i];
        after = q->tail;
        if (q->unsorted) {
            /* sorted on the next ordered read; checked now, so that sort cannot fail */
            if (order_check(src->order) < 0)
                return -1;
            unsorted = 1;
        }
        for (int steps = 0; !unsorted && after != NULL; steps++) {
            if (steps == RQ_WALK) {
                after = q->tail;  /* too far back: append, sort when read */
                unsorted = 1;
                break;
            }
            int c = order_cmp(after->order, src->order);
            if (c == -2)
                return -1;
            if (c < 0)
                break;
            after = after->rq_prev;
        }
    }
    else {
        if (self->nrq == self->rq_cap) {
            Py_ssize_t cap = self->rq_cap ? self->rq_cap * 2 : 4;
            ReadyQueue *rq = PyMem_Realloc(self->rq, (size_t)cap * sizeof(ReadyQueue));
            if (rq == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->rq = rq;
            self->rq_cap = cap;
        }
        memmove(&self->rq[i + 1], &self->rq[i], (size_t)(self->nrq - i) * sizeof(ReadyQueue));
        self->nrq++;
        PyObject *key = src->priority;
        Py_INCREF(key);
        self->rq[i] = (ReadyQueue){prio, key, NULL, NULL, 0, 0};
    }
    ReadyQueue *q = &self->rq[i];
    src->rq_prev = after;
    src->rq_next = after ? after->rq_next : q->head;
    if (src->rq_next)
        src->rq_next->rq_prev = src;
    else
        q->tail = src;
    if (after)
        after->rq_next = src;
    else
        q->head = src;
    q->count++;
    q->unsorted |= unsorted;
    src->rq_prio = prio;
    src->rq_owner = self;
    src->rq_queued = 1;
    Py_INCREF(src);
    return 0;
}

/* Take src out of its ready queue, if queued (never fails; drops the queue's
 * reference, so the caller must hold its own). */
static void
rq_remove(SourceObject *src)
{
    if (!src->rq_queued)
        return;
    ContextObject *self = src->rq_owner;  /* alive: it empties its queues when cleared */
    int found;
    Py_ssize_t i = rq_find(self, src->rq_prio, &found);
    if (!found)
        return;  /* cannot happen: a queued source's queue exists */
    ReadyQueue *q = &self->rq[i];
    if (src->rq_prev)
        src->rq_prev->rq_next = src->rq_next;
    else
        q->head = src->rq_next;
    if (src->rq_next)
        src->rq_next->rq_prev = src->rq_prev;
    else
        q->tail = src->rq_prev;
    src->rq_prev = src->rq_next = NULL;
    src->rq_queued = 0;
    src->rq_owner = NULL;
    if (--q->count == 0) {
        Py_DECREF(q->key);  /* an int: runs no code */
        self->nrq--;
        memmove(&self->rq[i], &self->rq[i + 1], (size_t)(self->nrq - i) * sizeof(ReadyQueue));
    }
    Py_DECREF(src);
}

/* The ready queue of prio, or NULL if none of its sources is ready. */
static ReadyQueue *
rq_get(ContextObject *self, long prio)
{
    int found;
    Py_ssize_t i = rq_find(self, prio, &found);
    return found ? &self->rq[i] : NULL;
}

/* Put an unsorted queue back in dispatch order: a stable bottom-up merge sort of the
 * list (no allocation, no recursion).  Every order was checked when pushed; should one
 * have been replaced since by something that does not compare, the sort still ends with
 * every source in the list once, and returns -1 with the TypeError. */
static int
rq_sort(ReadyQueue *q)
{
    if (!q->unsorted)
        return 0;
    int failed = 0;
    SourceObject *list = q->head;
    for (Py_ssize_t width = 1;; width *= 2) {
        SourceObject *p = list, *tail = NULL;
        Py_ssize_t merges = 0;
        list = NULL;
        while (p != NULL) {
            merges++;
            SourceObject *r = p;
            Py_ssize_t np = 0, nr = width;
            while (np < width && r != NULL) {
                np++;
                r = r->rq_next;
            }
            while (np > 0 || (nr > 0 && r != NULL)) {
                SourceObject *e;
                int take_p;
                if (np == 0)
                    take_p = 0;
                else if (nr == 0 || r == NULL)
                    take_p = 1;
                else if (failed)
                    take_p = 1;  /* keep the list whole; the error is already set */
                else {
                    int c = order_cmp(p->order, r->order);
                    failed = c == -2;
                    take_p = c <= 0;
                }
                if (take_p) {
                    e = p;
                    p = p->rq_next;
                    np--;
                }
                else {
                    e = r;
                    r = r->rq_next;
                    nr--;
                }
                if (tail != NULL)
                    tail->rq_next = e;
                else
                    list = e;
                tail = e;
            }
            p = r;
        }
        if (tail != NULL)
            tail->rq_next = NULL;
        if (merges <= 1)
            break;
    }
    SourceObject *prev = NULL;
    for (SourceObject *s = list; s != NULL; s = s->rq_next) {
        s->rq_prev = prev;
        prev = s;
    }
    q->head = list;
    q->tail = prev;
    q->unsorted = 0;
    return failed ? -1 : 0;
}

static PyObject *hook_source_ready(HookObject *self, PyObject *priority);

/* A source just became READY: tell the driver (its source_ready(priority)).  0, or -1
 * with an exception.  The stock base's hook (hook.h) is called without a bound call. */
static int
notify_ready(ContextObject *self, SourceObject *src)
{
    PyObject *notify = self->source_ready;
    if (IS_NONE(notify))
        return 0;
    PyObject *p = src->priority ? src->priority : Py_None;
    Py_INCREF(notify);
    Py_INCREF(p);
    PyObject *r;
    if (PyCFunction_Check(notify)
            && PyCFunction_GET_FUNCTION(notify) == (PyCFunction)hook_source_ready
            && PyObject_TypeCheck(PyCFunction_GET_SELF(notify), self->st->HookType))
        r = hook_source_ready((HookObject *)PyCFunction_GET_SELF(notify), p);
    else
        r = PyObject_CallOneArg(notify, p);
    Py_DECREF(p);
    Py_DECREF(notify);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* _mark_ready: GLib's READY flag on src and its ancestors. */
static int
mark_ready(ContextObject *self, PyObject *srcobj)
{
    ModState *st = self->st;
    int via_child = 0;
    Py_INCREF(srcobj);
    while (!IS_NONE(srcobj)) {
        if (!Source_Check(st, srcobj)) {
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
            long prio;
            if (priority_of(src, &prio) < 0 || rq_push(self, src, prio) < 0) {
                Py_DECREF(srcobj);
                return -1;
            }
            src->ready = 1;
            src->ready_by_child = (char)via_child;
            if (notify_ready(self, src) < 0) {
                Py_DECREF(srcobj);
                return -1;
            }
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

static int
unmark_ready(ContextObject *self, SourceObject *src)
{
    src->ready_by_time = src->ready_by_child = 0;
    if (src->ready || src->rq_queued) {
        src->ready = 0;
        rq_remove(src);
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
    ModState *st = self->st;
    if (!Source_Check(st, src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    if (unmark_ready(self, (SourceObject *)src) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Is o a ContextCore (MainContext)? */
static inline int
is_context(ModState *st, PyObject *o)
{
    return o != NULL && PyObject_TypeCheck(o, st->ContextType);
}

/* Which thread owns a context (g_main_context_acquire's owner, MainContext._owner). */
enum { OWNER_NONE, OWNER_THIS, OWNER_OTHER };

/* OWNER_NONE, OWNER_THIS or OWNER_OTHER; -1 with an exception. */
static int
context_owner(ModState *st, PyObject *ctx)
{
    if (!is_context(st, ctx)) {
        PyErr_SetString(PyExc_TypeError, "expected a MainContext");
        return -1;
    }
    PyObject *owner = REQUIRED((ContextObject *)ctx, owner, "_owner");
    if (owner == NULL)
        return -1;
    Py_INCREF(owner);
    int who = OWNER_NONE;
    if (owner != Py_None) {
        unsigned long id = PyLong_AsUnsignedLong(owner);
        if (id == (unsigned long)-1 && PyErr_Occurred())
            who = -1;
        else
            who = id == PyThread_get_thread_ident() ? OWNER_THIS : OWNER_OTHER;
    }
    Py_DECREF(owner);
    return who;
}

