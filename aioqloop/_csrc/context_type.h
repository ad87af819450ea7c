/* aioqloop._cengine, part context_type.h: ContextCore's method table, members and type: the hot part of a GMainContext, the
 * base of aioqloop.MainContext.
 *
 * Included by aioqloop/_cengine.c (one compilation unit); not compiled on its own. */

static PyObject *ctx_has_work(ContextObject *self, PyObject *unused);
static PyObject *ctx_attach(ContextObject *self, PyObject *src);
static PyObject *ctx_schedule_ready_time(ContextObject *self, PyObject *src);
static PyObject *ctx_insert(ContextObject *self, PyObject *src);
static PyObject *ctx_remove_source(ContextObject *self, PyObject *src);
static PyObject *ctx_next_deadline(ContextObject *self, PyObject *unused);
static PyObject *ctx_time(ContextObject *self, PyObject *unused);
static PyObject *ctx_best_ready(ContextObject *self, PyObject *unused);

static PyMethodDef ctx_methods[] = {
    {"_schedule_ready_time", (PyCFunction)ctx_schedule_ready_time, METH_O,
     "_schedule_ready_time($self, src, /)\n--\n\n"
     "(Re)enter a source's ready time in the heap (owner thread)."},
    {"_attach", (PyCFunction)ctx_attach, METH_O,
     "_attach($self, src, /)\n--\n\n"
     "Give an attached source its id and insert it (any thread); returns the id."},
    {"_insert", (PyCFunction)ctx_insert, METH_O,
     "_insert($self, src, /)\n--\n\n"
     "Insert an attached source (owner thread)."},
    {"_remove_source", (PyCFunction)ctx_remove_source, METH_O,
     "_remove_source($self, src, /)\n--\n\n"
     "Take a destroyed source out of the context (owner thread)."},
    {"_collect", (PyCFunction)ctx_collect, METH_NOARGS,
     "_collect($self, /)\n--\n\n"
     "Start of prepare and check: foreign ops, the cached time, bottom halves, due ready "
     "times; returns the time."},
    {"_has_work", (PyCFunction)ctx_has_work, METH_NOARGS,
     "_has_work($self, /)\n--\n\n"
     "Is anything ready or due without waiting?  Owner thread."},
    {"_next_deadline", (PyCFunction)ctx_next_deadline, METH_NOARGS,
     "_next_deadline($self, /)\n--\n\n"
     "The earliest ready time in loop seconds (inf if none)."},
    {"_drop_ready_time", (PyCFunction)ctx_drop_ready_time, METH_O,
     "_drop_ready_time($self, src, /)\n--\n\n"
     "Forget a source's entry in the ready-time heap (it goes stale).  Owner thread."},
    {"_shift_deadlines", (PyCFunction)ctx_shift_deadlines, METH_O,
     "_shift_deadlines($self, offset, /)\n--\n\n"
     "Move every ready time by ``offset`` seconds (a new loop clock).  Owner thread."},
    {"_deadline_count", (PyCFunction)ctx_deadline_count, METH_NOARGS,
     "_deadline_count($self, /)\n--\n\n"
     "Entries in the ready-time heap, stale ones included."},
    {"_time", (PyCFunction)ctx_time, METH_NOARGS,
     "_time($self, /)\n--\n\n"
     "The context's time in seconds: cached during an iteration, else the loop's now."},
    {"_dispatch_postponed", (PyCFunction)ctx_dispatch_postponed, METH_NOARGS,
     "_dispatch_postponed($self, /)\n--\n\n"
     "The driver does not dispatch what the check found ready: give back a handed lock."},
    {"_dispatch", (PyCFunction)ctx_dispatch, METH_O,
     "_dispatch($self, priority, /)\n--\n\n"
     "Dispatch the ready sources of ``priority`` in attach order.  Owner thread."},
    {"_ready_sources", (PyCFunction)ctx_ready_sources, METH_O,
     "_ready_sources($self, priority, /)\n--\n\n"
     "The ready sources of ``priority`` in dispatch order (a new list)."},
    {"_best_ready", (PyCFunction)ctx_best_ready, METH_NOARGS,
     "_best_ready($self, /)\n--\n\n"
     "The most urgent priority with ready sources (inf if none)."},
    {"_ready_priorities", (PyCFunction)ctx_ready_priorities, METH_NOARGS,
     "_ready_priorities($self, /)\n--\n\n"
     "The priorities that have ready sources, ascending (a new list)."},
    {"_mark_ready", (PyCFunction)ctx_mark_ready, METH_O,
     "_mark_ready($self, src, /)\n--\n\n"
     "Set GLib's READY flag on a source and its ancestors.  Owner thread only."},
    {"_unmark_ready", (PyCFunction)ctx_unmark_ready, METH_O,
     "_unmark_ready($self, src, /)\n--\n\n"
     "Clear READY on a source."},
    {"_apply_polled", (PyCFunction)ctx_apply_polled, METH_O,
     "_apply_polled($self, events, /)\n--\n\n"
     "Record raw epoll results (fd, revents) polled by a driver that shares the context's "
     "fds; a wake-up is drained.  Owner thread, during the driver's poll."},
    {"_poll_ready", (PyCFunction)ctx_poll_ready, METH_NOARGS,
     "_poll_ready($self, /)\n--\n\n"
     "Record what the private epoll set reports now, without waiting (owner thread)."},
    {"_check", (PyCFunction)ctx_check, METH_NOARGS,
     "_check($self, /)\n--\n\n"
     "GLib's check: the priority to dispatch (inf if none).  Owner thread."},
    {"_prepare", (PyCFunction)ctx_prepare, METH_NOARGS,
     "_prepare($self, /)\n--\n\n"
     "GLib's prepare (+ query): the poll timeout in seconds (None = forever)."},
    {"_iterate", (PyCFunction)(void (*)(void))ctx_iterate, METH_FASTCALL | METH_KEYWORDS,
     "_iterate($self, driver, /, *, block, dispatch)\n--\n\n"
     "One iteration (g_main_context_iterate); True if a source was ready.  Owner thread."},
    {NULL}
};

#define CM(name, type, field) {name, type, offsetof(ContextObject, field), 0, NULL}
static PyMemberDef ctx_members[] = {
    CM("_blocked", T_OBJECT_EX, blocked),
    CM("_blocked_due", T_OBJECT_EX, blocked_due),
    CM("_gate", T_OBJECT, gate),
    CM("_port", T_OBJECT_EX, port),
    CM("_fds", T_OBJECT_EX, fds),
    CM("_source_ready", T_OBJECT, source_ready),
    CM("_waker", T_OBJECT_EX, waker),
    CM("_bh", T_OBJECT, bh),
    CM("_prepare_hooks", T_OBJECT_EX, prepare_hooks),
    CM("_check_hooks", T_OBJECT_EX, check_hooks),
    CM("_clock", T_OBJECT_EX, clock),
    CM("_tap", T_OBJECT, tap),
    CM("_now", T_DOUBLE, now),
    CM("_dispatch_time", T_DOUBLE, dispatch_time),
    CM("_in_iteration", T_PYSSIZET, in_iteration),
    CM("_serial", T_PYSSIZET, serial),
    CM("_iterations", T_PYSSIZET, iterations),
    CM("_in_hook", T_BOOL, in_hook),
    CM("_sources", T_OBJECT_EX, sources),
    CM("_next_id", T_PYSSIZET, next_id),
    CM("_seq", T_PYSSIZET, order_seq),
    CM("_closed", T_BOOL, closed),
    CM("_closing", T_BOOL, closing),
    CM("_owned_by_loop", T_BOOL, owned_by_loop),
    /* iteration and dispatch */
    CM("_prepare_prios", T_OBJECT, prepare_prios),
    CM("_check_prios", T_OBJECT, check_prios),
    CM("_clock_loop", T_OBJECT_EX, clock_loop),
    CM("_clock_class", T_OBJECT, clock_class),
    CM("_owner", T_OBJECT_EX, owner),
    CM("_driver", T_OBJECT_EX, driver),
    {"fd_audit_interval", T_DOUBLE, offsetof(ContextObject, audit_interval), 0,
     "Seconds between two audits of watched fds for ones closed behind the context's back."},
    {NULL}
};

CORE_SPEC(ctx, ContextObject, "ContextCore",
    "The hot part of a GMainContext, as C fields (base of aioqloop.MainContext).",
    ctx_new)
