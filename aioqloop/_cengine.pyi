# Types of the compiled core (aioqloop/_cengine.c); the pure-Python twins are the reference.
# Checked against the built module by mypy's stubtest (tests/test_engine.py; what it
# cannot be told is in tests/stubtest_allowlist.txt).
from collections.abc import Callable
from typing import Any, final

SOURCE_HASH: str
INPLACE: int

def configure(**refs: Any) -> None: ...
# attach, waker, bottom halves, timers
CLASS_IDLE: int
CLASS_SURVIVES: int
CLASS_HOOKS: int
def configure_timers(**refs: Any) -> None: ...
def timeout_init(src: SourceCore, interval: float, priority: int, name: str | None, /) -> bool: ...
def timeout_add(interval: float, callback: Callable[..., Any], args: tuple[Any, ...],
                priority: int, context: Any, /) -> int: ...

@final
class SourceStatistics:
    dispatches: int
    waited: int
    dispatch_time: float
    max_dispatch_time: float

class SourceCore:
    _context: Any
    _callback: Callable[..., Any] | None
    _args: tuple[Any, ...]
    _parent: Any
    _order: tuple[int, ...]
    _stats: SourceStatistics | None
    _priority: int
    _fds: list[Any] | tuple[()]
    _children: list[Any] | tuple[()]
    _name: str | None
    _fd: int
    _fileobj: Any
    _tag: Any
    _interval: float
    _id: int
    _heap_seq: int
    _dispatching: int
    _ready_time: float
    _can_recurse: bool
    _destroyed: bool
    _finalized: bool
    _ready: bool
    _ready_by_time: bool
    _ready_by_child: bool
    _blocked: bool
    _ready_while_blocked: bool
    _in_heap: bool
    _latched: bool

class ContextCore:
    _blocked: list[Any]
    _blocked_due: list[Any]
    _gate: Any
    _port: Any
    _fds: Any
    _source_ready: Callable[[int], object] | None
    _waker: Any
    _bh: Any
    _prepare_hooks: Any
    _check_hooks: Any
    _clock: Callable[[], float]
    _tap: Any
    _now: float
    _dispatch_time: float
    _in_iteration: int
    _serial: int
    _iterations: int
    _in_hook: bool
    _sources: dict[int, Any]
    _next_id: int
    _seq: int
    _closed: bool
    _closing: bool
    _owned_by_loop: bool
    # iteration and dispatch
    _prepare_prios: list[int] | None
    _check_prios: list[int] | None
    _clock_loop: Any
    _clock_class: Any
    _owner: int | None
    fd_audit_interval: float
    def _dispatch_postponed(self, /) -> None: ...
    def _dispatch(self, priority: float, /) -> None: ...
    def _iterate(self, driver: Any, /, *, block: bool, dispatch: bool) -> bool: ...
    def _mark_ready(self, src: Any, /) -> None: ...
    def _unmark_ready(self, src: Any, /) -> None: ...
    def _ready_sources(self, priority: float, /) -> list[Any]: ...
    def _ready_priorities(self, /) -> list[int]: ...
    def _best_ready(self, /) -> float: ...
    def _check(self, /) -> float: ...
    def _prepare(self, /) -> float | None: ...
    def _apply_polled(self, events: list[tuple[int, int]], /) -> None: ...
    def _poll_ready(self, /) -> None: ...
    def _has_work(self, /) -> bool: ...
    def _collect(self, /) -> float: ...
    def _schedule_ready_time(self, src: Any, /) -> None: ...
    def _insert(self, src: Any, /) -> None: ...
    def _attach(self, src: Any, /) -> int: ...
    def _remove_source(self, src: Any, /) -> None: ...
    def _next_deadline(self, /) -> float: ...
    def _drop_ready_time(self, src: Any, /) -> None: ...
    def _shift_deadlines(self, offset: float, /) -> None: ...
    def _deadline_count(self, /) -> int: ...
    def _time(self, /) -> float: ...

class HookCore:
    _loop: Any
    _ctx: Any
    _clock: Any
    _select: Callable[..., Any]
    _timeout: float | None
    _events: Any
    _dispatch_handle: Any
    _preset: Any
    direct: Any
    _polls: Any
    _queued: bool
    def select(self, /, timeout: float | None = None) -> Any: ...
    def poll(self, wait: float | None, /) -> None: ...
    def place(self, priority: float, /) -> None: ...
    def source_ready(self, priority: int, /) -> None: ...

class PlainCore:
    _ctx: Any
    _loop: Any
    _handle: Any
    _timer: Any
    _timeout: float | None
    _run_cb: Any
    _prepare_prios: Any
    _timer_when: float
    _slack: float
    _closed: bool
    _owned: bool
    _batch: int
    _iterations_run: int
    _empty_iterations: int
    def _kick(self, _priority: int = 0, /) -> None: ...
    def _rearm(self, timeout: float | None, /) -> None: ...
    def _run(self, /) -> None: ...
    def _on_readable(self, /) -> None: ...
    def poll(self, timeout: float | None, /) -> None: ...
    def place(self, priority: float, /) -> None: ...

class BHCore:
    _callback: Callable[..., Any]
    _args: tuple[Any, ...]
    _ctx: Any
    _name: str
    _scheduled: bool
    _deleted: bool
    _oneshot: bool
    def schedule(self, /) -> None: ...

class FdTagCore:
    source: Any
    fd: int
    events: int
    ident: tuple[int, int] | None
    revents: int

class FdPollerCore:
    epoll: Any
    records: dict[int, list[Any]]
    masks: dict[int, int]
    always: set[int]
    unpolled: set[int]
    _wake_fd: int
    last_audit: float

class SharedFdsCore:
    _ep: Any
    _fd_to_key: Any
    _ctx_mask: dict[int, int]
    raw: list[tuple[int, int]]
    stale: bool
    closed: bool

# iteration and dispatch
class GateCore:
    deferred: bool
    handed: bool

class WakerCore:
    ops: Any
    poll_waiting: bool
    notified: bool
    # attach, waker, bottom halves, timers
    @property
    def lock(self) -> WakerLock: ...
    _closed: bool

# attach, waker, bottom halves, timers
@final
class WakerLock:
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self, /) -> None: ...
    def locked(self, /) -> bool: ...
    def __enter__(self, /) -> bool: ...
    def __exit__(self, /, *exc_info: object) -> None: ...

# attach, waker, bottom halves, timers
class BHCarrierCore:
    source: Any
    queue: Any
    pending: int
    def _run_one(self, ctx: Any, src: Any, bh: Any, /) -> None: ...
