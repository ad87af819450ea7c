# Types of the compiled core (aioqloop/_cengine.c); the pure-Python twins are the reference.
from collections.abc import Callable
from typing import Any

SOURCE_HASH: str

def configure(**refs: Any) -> None: ...

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
    _fds: list[Any]
    _children: list[Any]
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

class ContextCore:
    _now: float
    _dispatch_time: float
    _in_iteration: int
    _serial: int
    _iterations: int
    _in_hook: bool
    def dispatch(self, priority: float) -> None: ...
    def iterate(self, driver: Any, *, block: bool, dispatch: bool) -> bool: ...
    def _mark_ready(self, src: Any) -> None: ...
    def _unmark_ready(self, src: Any) -> None: ...
    def _check(self) -> float: ...
    def _prepare(self) -> float | None: ...
    def apply_polled(self, events: list[tuple[int, int]]) -> None: ...
    def poll_ready(self) -> None: ...
    def has_work(self) -> bool: ...
    def next_deadline(self) -> float: ...
    def time(self) -> float: ...

class HookCore:
    def select(self, timeout: float | None = None) -> Any: ...
    def poll(self, wait: float | None) -> None: ...
    def place(self, priority: float) -> None: ...
    def source_ready(self, priority: int) -> None: ...

class PlainCore:
    def _kick(self, _priority: int = 0) -> None: ...
    def _rearm(self, timeout: float | None) -> None: ...
    def _run(self) -> None: ...
    def _on_readable(self) -> None: ...
    def poll(self, timeout: float | None) -> None: ...
    def place(self, priority: float) -> None: ...
