/* aioqloop._cengine, part deadlines.h: the ready-time heap of a context, a C array of
 * (when, seq, source) owned by ContextCore (GLib's per-source ready_time, which
 * g_main_context_prepare scans; here one binary heap, so an iteration touches only what
 * is due).
 *
 * The twin of aioqloop/_deadlines.py (the pure engine's Deadlines) with the same data
 * model and rules: entries ordered by (when, seq), a source's entry live while the
 * source is in_heap with that heap_seq, removal lazy (a re-armed or destroyed source
 * leaves its old entry stale), and a rebuild once at least REBUILD_MIN_STALE entries are
 * stale and they are more than half of the heap.  No Python code runs while the array is
 * being reordered: the comparisons read C doubles and integers, and a reference dropped
 * here is dropped only once the heap is consistent again.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

#define DL_REBUILD_MIN_STALE 64  /* Deadlines.REBUILD_MIN_STALE */

static inline int
dl_less(const DeadlineEntry *a, const DeadlineEntry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline int
dl_live(const DeadlineEntry *e)
{
    return e->src->in_heap && (uint64_t)e->src->heap_seq == e->seq;
}

/* Move the entry at pos up to its place. */
static void
dl_sift_up(DeadlineEntry *heap, Py_ssize_t pos)
{
    DeadlineEntry item = heap[pos];
    while (pos > 0) {
        Py_ssize_t parent = (pos - 1) >> 1;
        if (!dl_less(&item, &heap[parent]))
            break;
        heap[pos] = heap[parent];
        pos = parent;
    }
    heap[pos] = item;
}

/* Move the entry at pos down to its place in a heap of n entries. */
static void
dl_sift_down(DeadlineEntry *heap, Py_ssize_t n, Py_ssize_t pos)
{
    DeadlineEntry item = heap[pos];
    for (;;) {
        Py_ssize_t child = 2 * pos + 1;
        if (child >= n)
            break;
        if (child + 1 < n && dl_less(&heap[child + 1], &heap[child]))
            child++;
        if (!dl_less(&heap[child], &item))
            break;
        heap[pos] = heap[child];
        pos = child;
    }
    heap[pos] = item;
}

/* Room for one more entry: 0, or -1 with MemoryError (nothing changed). */
static int
dl_reserve(ContextObject *self)
{
    if (self->ndl < self->dl_cap)
        return 0;
    Py_ssize_t cap = self->dl_cap ? self->dl_cap * 2 : 16;
    DeadlineEntry *a = PyMem_Realloc(self->dl, (size_t)cap * sizeof(DeadlineEntry));
    if (a == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->dl = a;
    self->dl_cap = cap;
    return 0;
}

/* Take the head out of the heap; its source reference becomes the caller's. */
static SourceObject *
dl_pop_head(ContextObject *self)
{
    SourceObject *src = self->dl[0].src;
    Py_ssize_t n = --self->ndl;
    if (n > 0) {
        self->dl[0] = self->dl[n];
        dl_sift_down(self->dl, n, 0);
    }
    return src;
}

/* Deadlines.rebuild: drop every stale entry now (O(n)).  The stale sources' references
 * are released after the heap is whole again (releasing one may run a finalizer that
 * pushes).  Skipped, and tried at the next drop, when the list of them cannot be made. */
static void
dl_rebuild(ContextObject *self)
{
    Py_ssize_t n = self->ndl, live = 0, nstale = 0;
    SourceObject **gone = PyMem_Malloc((size_t)(self->dl_stale > 0 ? self->dl_stale : 1)
                                       * sizeof(SourceObject *));
    if (gone == NULL)
        return;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (dl_live(&self->dl[i]))
            self->dl[live++] = self->dl[i];
        else if (nstale < self->dl_stale)
            gone[nstale++] = self->dl[i].src;
        else {  /* more stale entries than counted: cannot happen; keep it rather than leak */
            self->dl[live++] = self->dl[i];
        }
    }
    self->ndl = live;
    for (Py_ssize_t i = live / 2 - 1; i >= 0; i--)
        dl_sift_down(self->dl, live, i);
    self->dl_stale = 0;
    for (Py_ssize_t i = 0; i < nstale; i++)
        Py_DECREF(gone[i]);
    PyMem_Free(gone);
}

/* Deadlines.drop: forget src's entry (it stays in the heap, stale, until popped or
 * rebuilt away). */
static void
dl_drop(ContextObject *self, SourceObject *src)
{
    if (!src->in_heap)
        return;
    src->in_heap = 0;
    self->dl_stale++;
    if (self->dl_stale >= DL_REBUILD_MIN_STALE && self->dl_stale * 2 > self->ndl)
        dl_rebuild(self);
}

/* Deadlines.push: enter src at when (dropping an older entry); 1 if it is the new head,
 * 0 if not, -1 with MemoryError (nothing changed). */
static int
dl_push(ContextObject *self, SourceObject *src, double when)
{
    if (dl_reserve(self) < 0)
        return -1;
    dl_drop(self, src);  /* a rebuild only shrinks the heap: the room stays */
    uint64_t seq = ++self->dl_seq;
    src->heap_seq = (Py_ssize_t)seq;
    src->in_heap = 1;
    Py_INCREF(src);
    Py_ssize_t pos = self->ndl++;
    self->dl[pos].when = when;
    self->dl[pos].seq = seq;
    self->dl[pos].src = src;
    dl_sift_up(self->dl, pos);
    return self->dl[0].seq == seq;
}

/* Deadlines.head: the earliest entry's time, possibly stale (inf if empty). */
static inline double
dl_head(ContextObject *self)
{
    return self->ndl > 0 ? self->dl[0].when : INFINITY;
}

/* Deadlines.next_deadline: the earliest live ready time (inf if none); prunes stale
 * heads. */
static double
dl_next_deadline(ContextObject *self)
{
    while (self->ndl > 0) {
        if (dl_live(&self->dl[0]))
            return self->dl[0].when;
        SourceObject *src = dl_pop_head(self);
        self->dl_stale--;
        Py_DECREF(src);
    }
    return INFINITY;
}

/* Deadlines.shift: move every entry by offset seconds (the heap order does not change). */
static void
dl_shift(ContextObject *self, double offset)
{
    for (Py_ssize_t i = 0; i < self->ndl; i++)
        self->dl[i].when += offset;
}

/* Empty the heap (the context is cleared or freed): the sources leave it. */
static void
dl_clear(ContextObject *self)
{
    DeadlineEntry *heap = self->dl;
    Py_ssize_t n = self->ndl;
    self->dl = NULL;
    self->ndl = self->dl_cap = self->dl_stale = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        SourceObject *src = heap[i].src;
        if (dl_live(&heap[i]))
            src->in_heap = 0;
        Py_DECREF(src);
    }
    PyMem_Free(heap);
}

/* ------------------------------------------- the heap's methods on ContextCore */

/* _drop_ready_time(src): Deadlines.drop for the Python slow paths (a source taken out). */
static PyObject *
ctx_drop_ready_time(ContextObject *self, PyObject *src)
{
    if (!Source_Check(self->st, src)) {
        PyErr_SetString(PyExc_TypeError, "expected a Source");
        return NULL;
    }
    dl_drop(self, (SourceObject *)src);
    Py_RETURN_NONE;
}

/* _shift_deadlines(offset): Deadlines.shift (the context moved to another loop clock). */
static PyObject *
ctx_shift_deadlines(ContextObject *self, PyObject *offset)
{
    double d = PyFloat_AsDouble(offset);
    if (d == -1.0 && PyErr_Occurred())
        return NULL;
    if (!isfinite(d)) {
        PyErr_SetString(PyExc_ValueError, "the offset must be finite");
        return NULL;
    }
    dl_shift(self, d);
    Py_RETURN_NONE;
}

/* _deadline_count(): len(Deadlines), stale entries included. */
static PyObject *
ctx_deadline_count(ContextObject *self, PyObject *unused)
{
    return PyLong_FromSsize_t(self->ndl);
}
