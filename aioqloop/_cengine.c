/* aioqloop._cengine: the compiled core of the engine.
 *
 * Hand-written C, chosen by measurement over a compiler pass: mypyc and Cython on the
 * interpreted-style modules gained 1.04-2.7x and changed behaviour (weak references,
 * class-level flags, instance patching), while the cost that matters is the interpreter
 * frames and attribute dictionaries of GLib's per-dispatch bookkeeping.  Here that
 * bookkeeping is plain C fields read directly:
 *
 *   SourceCore        the per-source state of GSource (flags, ready time, priority,
 *                     callback, a timeout's interval, an fd watch): base of Source;
 *   SourceStatistics  per-source counters, updated without allocating;
 *   ContextCore       the hot part of GMainContext: the ready sets, g_main_dispatch
 *                     with blocking, depth and statistics, check and the fast part of
 *                     prepare, g_main_context_iterate itself, due ready times, attach,
 *                     insert, remove and destroy of plain sources, fd results: base of
 *                     MainContext;
 *   HookCore          the stock base's selector hook (select -> iterate -> place, and
 *                     the select of the epoll set shared with asyncio);
 *   PlainCore         the plain driver's iteration (the uvloop base, any asyncio loop);
 *   BHCore            a bottom half's state and qemu_bh_schedule;
 *   FdTagCore, FdPollerCore  the fd records (GPollRec) and the hot state of the
 *                     context's epoll set, polled and applied in C;
 *   WakerCore         the Waker's notify flags and posted-operation queue.
 *
 * The pure-Python engine (aioqloop/_dispatch.py, aioqloop/context.py, aioqloop/source.py)
 * is the reference: every method here has a Python twin with the same name and the same
 * rules, and the slow, rare paths (blocking a source tree, re-arming ready times,
 * reporting exceptions, prepare hooks) stay in Python and are called from here.  Both
 * engines run the same test suite.  Field names are those of the Python engine, exposed
 * as member descriptors, so the rest of the package reads `src._ready` either way.
 *
 * The source is split by concern into parts under aioqloop/_csrc/, each naming the GLib or
 * QEMU concept it mirrors, and included here into this one compilation unit (as uvloop's
 * loop.pyx includes its parts): every function stays static, so the compiler sees the
 * whole core at once and inlines across parts (the hot paths of dispatch, iterate and
 * the drivers call each other), and the build compiles one file with no link step.
 * The parts are included in dependency order; common.h declares what is used before
 * it is defined.
 *
 * State: multi-phase initialisation (PEP 489) and heap types made per module; the
 * interned names, what configure() sets and the types live in the module state
 * (common.h), which every core object points to from its construction on.
 *
 * Threads: the fields belong to the thread that runs the context, like the Python
 * attributes they replace (other threads post through the context's Waker).  The module
 * is not declared free-threading safe; aioqloop picks the pure engine on such builds.
 */

#include "_csrc/common.h"
#include "_csrc/stats.h"
#include "_csrc/source.h"
#include "_csrc/context.h"
#include "_csrc/deadlines.h"
#include "_csrc/dispatch.h"
#include "_csrc/waker.h"
#include "_csrc/fdpoll.h"
#include "_csrc/fdresults.h"
#include "_csrc/iterate.h"
#include "_csrc/attach.h"
#include "_csrc/context_type.h"
#include "_csrc/hook.h"
#include "_csrc/plain.h"
#include "_csrc/bh.h"
#include "_csrc/timers.h"
#include "_csrc/module.h"
