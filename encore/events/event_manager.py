"""The event manager: connects listeners to event classes and dispatches.

How dispatch stays cheap
------------------------
For each event class that is emitted the manager builds, once, the ordered
list of listeners that can apply to it (its own and its bases'), and caches
it until a listener is connected or disconnected, a class is enabled or
disabled, or the object of a weakly held listener dies. ``emit`` then walks
only that list, so listeners of unrelated classes cost nothing.

When several listeners of one class filter on the same attribute (for
example ``operation_id``), the cached entry also indexes them by the value
they want: ``emit`` reads the attribute once and walks only the listeners
that can match, so a hundred filtered listeners cost about what one does.
Listeners without a filter are stored as bare callables and called with no
per-listener checks.

A run of at least ``_RUN_MIN`` such callables is called by a bare ``for``
loop, as a hand-written dispatcher would: no test of ``_handled`` between
calls, and the ``try`` around the whole loop (a failing listener is logged
and the loop resumes with the next one from the same iterator). To still
stop at ``mark_as_handled``, the run's iterator is left on the event while
it runs (``_dispatch_run``), and `BaseEvent.mark_as_handled` moves it past
its end. This keeps a hundred listeners within a few percent of a plain
loop calling the same functions (bench/bench_events.py).
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from ._listener import Check, Listener, compile_filter, identity
from .abstract_event_manager import BaseEvent, BaseEventManager

__all__ = ["EventManager"]

logger = logging.getLogger(__name__)

TraceFunc = Callable[[str, Any, tuple], Any]

#: Index a filter key once this many listeners of one class filter on it.
_INDEX_MIN_LISTENERS = 4
#: Most distinct filter values whose listener lists an index keeps.
_INDEX_MAX_VALUES = 1024
#: Runs of at least this many bare callables go through `_call_run`; for
#: shorter ones its fixed cost outweighs the per-listener check it saves.
_RUN_MIN = 8

_Row = tuple[Any, bool, "Check | None"]
_Plan = tuple[tuple[Any, Any, bool, "Check | None"], ...]


class _Dispatch:
    """The listeners that apply to one event class, ready to call.

    Immutable once built, except for the per-value index cache, whose
    entries are derived data that any thread may add.
    """

    __slots__ = (
        "listeners",
        "rows",
        "plan",
        "simple",
        "index_get",
        "index_key",
        "indexed",
        "by_value",
        "unmatched",
    )

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = tuple(listeners)
        self.rows: tuple[_Row, ...] = tuple(
            (lst.target, lst.weak, lst.check) for lst in self.listeners
        )
        self.plan = _plan(self.rows)
        # The common case: strong, unfiltered listeners, called as they are.
        self.simple: tuple[Callable[..., Any], ...] | None = None
        if not self.rows:
            self.simple = ()
        elif len(self.plan) == 1 and self.plan[0][0] is not None:
            self.simple = self.plan[0][0]
        self.index_key = self._choose_index_key()
        self.index_get: Callable[[Any], Any] | None = None
        self.indexed: dict[Listener, Check | None] = {}
        self.by_value: dict[Hashable, tuple[_Row, ...]] = {}
        if self.index_key is not None:
            key = self.index_key
            self.index_get = attrgetter(key)
            for lst in self.listeners:
                if lst.filter and key in lst.filter and _hashable(lst.filter[key]):
                    self.indexed[lst] = compile_filter(lst.filter, skip=key)
            # Events without the attribute reach only the other listeners.
            self.unmatched = _plan(
                [
                    row
                    for lst, row in zip(self.listeners, self.rows)
                    if lst not in self.indexed
                ]
            )

    def _choose_index_key(self) -> str | None:
        counts: dict[str, int] = {}
        for lst in self.listeners:
            for key, value in (lst.filter or {}).items():
                if _hashable(value):
                    counts[key] = counts.get(key, 0) + 1
        if not counts:
            return None
        key, count = max(counts.items(), key=lambda item: item[1])
        return key if count >= _INDEX_MIN_LISTENERS else None

    def plan_for(self, event: BaseEvent) -> _Plan:
        """The plan to run for this event instance, using the index."""
        try:
            value = self.index_get(event)  # type: ignore[misc]
        except Exception:
            return self.unmatched
        try:
            plan = self.by_value.get(value)
        except TypeError:  # an unhashable attribute value: check every filter
            return self.plan
        if plan is None:
            plan = self._plan_for_value(value)
            if len(self.by_value) < _INDEX_MAX_VALUES:
                self.by_value[value] = plan
        return plan

    def _plan_for_value(self, value: Hashable) -> _Plan:
        key = self.index_key
        rows = []
        for lst, row in zip(self.listeners, self.rows):
            if lst not in self.indexed:
                rows.append(row)
            elif _equal(lst.filter[key], value):  # type: ignore[index]
                rows.append((lst.target, lst.weak, self.indexed[lst]))
        return _plan(rows)


def _plan(rows: Sequence[_Row]) -> _Plan:
    """Group rows into steps: runs of bare callables, and single rows.

    A step is ``(funcs, target, weak, check)``: ``funcs`` is a tuple of
    strong unfiltered callables called back to back, or ``None`` for one
    listener that needs dereferencing or a filter check. Grouping keeps one
    filtered or weakly held listener from slowing all the others.
    """
    steps: list[tuple] = []
    run: list[Callable[..., Any]] = []
    for target, weak, check in rows:
        if not weak and check is None:
            run.append(target)
            continue
        if run:
            steps.append((tuple(run), None, False, None))
            run = []
        steps.append((None, target, weak, check))
    if run:
        steps.append((tuple(run), None, False, None))
    return tuple(steps)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


_DISABLED = object()


class EventManager(BaseEventManager):
    """A registry of listeners and the dispatcher of events to them.

    Listeners of a class are called for events of that class and of its
    subclasses, higher ``priority`` first and, at equal priority, in the
    order they were connected. A listener that calls
    ``event.mark_as_handled()`` stops the event: no listener after it is
    called.

    Bound methods are held weakly: when the object is garbage-collected its
    listener disappears. Plain functions, lambdas and other callables are
    held strongly, so a lambda connected inside a function stays connected
    until it is disconnected.

    A listener that raises is logged (with its traceback) on the
    ``encore.events.event_manager`` logger and the remaining listeners still
    run; ``emit`` never raises because of a listener. Listeners may emit
    (handled depth-first, synchronously), connect and disconnect; changes
    take effect from the next ``emit``.

    All methods are thread-safe.
    """

    def __init__(self) -> None:
        # RLock: a weakly held listener can die (and be removed) during a
        # garbage collection triggered while this thread holds the lock.
        self._lock = threading.RLock()
        self._by_class: dict[type, list[Listener]] = {}
        self._cache: dict[type, Any] = {}
        self._disabled: set[type] = set()
        self._known: set[type] = set()
        self._order = itertools.count()
        self._trace: TraceFunc | None = None

    # ----------------------------------------------------------- listeners

    def connect(
        self,
        cls: type[BaseEvent],
        func: Callable[[Any], Any],
        filter: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> None:
        """Call ``func(event)`` for every event of ``cls`` or a subclass.

        Parameters
        ----------
        cls : class
            The event class to listen for.
        func : callable
            The listener. A bound method is held weakly; anything else
            strongly.
        filter : dict, optional
            Attribute names or dotted paths (``'prop.real'``) mapped to the
            values they must equal (``==``). If an attribute on the path is
            missing the filter fails and ``func`` is not called.
        priority : int
            Higher priorities are called first.

        Connecting a listener that is already connected to ``cls`` replaces
        it: the new filter and priority apply, and it moves to the end of
        its priority.
        """
        if self._vetoed("connect", func, (cls, filter, priority)):
            return
        with self._lock:
            listener = Listener(
                cls, func, filter, priority, next(self._order), self._forget
            )
            current = self._by_class.get(cls, [])
            # Copy on write: a dispatch running on another thread keeps the
            # list it started with.
            self._by_class[cls] = [
                lst for lst in current if lst.key != listener.key
            ] + [listener]
            self._known.add(cls)
            self._cache.clear()

    def disconnect(self, cls: type[BaseEvent], func: Callable[[Any], Any]) -> None:
        """Stop calling ``func`` for ``cls``.

        Raises
        ------
        KeyError
            If ``func`` is not connected to ``cls`` (connections to a base
            or subclass do not count).
        """
        if self._vetoed("disconnect", func, (cls,)):
            return
        key = identity(func)
        with self._lock:
            current = self._by_class.get(cls, [])
            remaining = [lst for lst in current if lst.key != key]
            if len(remaining) == len(current):
                raise KeyError(f"{func!r} is not connected to {cls.__name__}")
            self._set_listeners(cls, remaining)

    def _forget(self, listener: Listener) -> None:
        """Remove a listener whose bound method's object has died."""
        with self._lock:
            current = self._by_class.get(listener.cls, [])
            if listener in current:
                self._set_listeners(
                    listener.cls, [lst for lst in current if lst is not listener]
                )

    def _set_listeners(self, cls: type, listeners: list[Listener]) -> None:
        if listeners:
            self._by_class[cls] = listeners
        else:
            self._by_class.pop(cls, None)
        self._cache.clear()

    # ------------------------------------------------------------ dispatch

    def emit(self, event: BaseEvent, block: bool = True) -> threading.Thread | None:
        """Call every listener that applies to ``event``.

        Parameters
        ----------
        event : BaseEvent
            The event to dispatch. ``pre_emit()`` is called before the first
            listener and ``post_emit()`` after the last one; neither is
            called for a disabled class.
        block : bool
            If False, dispatch on a new thread and return it, started.

        Returns
        -------
        thread : threading.Thread or None
            The dispatching thread when ``block`` is False.
        """
        if not block:
            thread = threading.Thread(
                target=self._dispatch, args=(event,), name="encore-emit"
            )
            thread.start()
            return thread
        self._dispatch(event)
        return None

    def _dispatch(self, event: BaseEvent) -> None:
        # The call-log-check sequence is written out in each loop rather than
        # shared through a helper: a function call per listener would cost
        # more than the rest of the dispatch (see bench/bench_events.py).
        entry = self._cache.get(event.__class__)
        if entry is None:
            entry = self._build(event.__class__)
        if entry is _DISABLED:
            return
        if self._trace is not None:
            self._dispatch_traced(entry, event)
            return
        event.pre_emit()
        simple = entry.simple
        if simple is not None:
            if len(simple) >= _RUN_MIN and not event._handled:
                _call_run(simple, event)
            else:
                for func in simple:
                    try:
                        func(event)
                    except Exception:
                        _log_failure(func, event)
                    if event._handled:
                        break
        else:
            plan = entry.plan if entry.index_get is None else entry.plan_for(event)
            for funcs, target, weak, check in plan:
                if funcs is not None:
                    if len(funcs) >= _RUN_MIN and not event._handled:
                        _call_run(funcs, event)
                    else:
                        for func in funcs:
                            try:
                                func(event)
                            except Exception:
                                _log_failure(func, event)
                            if event._handled:
                                break
                else:
                    func = target() if weak else target
                    if func is None or (check is not None and not check(event)):
                        continue
                    try:
                        func(event)
                    except Exception:
                        _log_failure(func, event)
                if event._handled:
                    break
        event.post_emit()

    def _dispatch_traced(self, entry: _Dispatch, event: BaseEvent) -> None:
        if self._vetoed("emit", None, (event,)):
            return
        event.pre_emit()
        for func in self._matching(entry, event):
            if self._vetoed("listen", func, (event,)):
                continue
            try:
                func(event)
            except Exception:
                _log_failure(func, event)
            if event._handled:
                break
        event.post_emit()

    def _build(self, cls: type) -> Any:
        with self._lock:
            entry = self._cache.get(cls)
            if entry is None:
                self._known.add(cls)
                if not self.is_enabled(cls):
                    entry = _DISABLED
                else:
                    listeners = [
                        lst
                        for base in cls.__mro__
                        for lst in self._by_class.get(base, ())
                    ]
                    listeners.sort(key=Listener.sort_key)
                    entry = _Dispatch(listeners)
                self._cache[cls] = entry
            return entry

    @staticmethod
    def _matching(entry: _Dispatch, event: BaseEvent) -> list[Callable[..., Any]]:
        found = []
        for target, weak, check in entry.rows:
            func = target() if weak else target
            if func is not None and (check is None or check(event)):
                found.append(func)
        return found

    # -------------------------------------------------- enable and disable

    def disable(self, cls: type[BaseEvent]) -> None:
        """Silence events of ``cls`` and of all its subclasses."""
        with self._lock:
            self._disabled.add(cls)
            self._cache.clear()

    def enable(self, cls: type[BaseEvent]) -> None:
        """Undo :meth:`disable` for ``cls``.

        State is kept per class: a subclass disabled on its own, or a
        disabled base class, still silences the events it covers.
        """
        with self._lock:
            self._disabled.discard(cls)
            self._cache.clear()

    def is_enabled(self, cls: type[BaseEvent]) -> bool:
        """Whether events of ``cls`` are dispatched (no class in its MRO is
        disabled)."""
        disabled = self._disabled
        return not any(base in disabled for base in cls.__mro__)

    # ------------------------------------------------------- introspection

    def register(self, cls: type[BaseEvent]) -> None:
        """Make ``cls`` known to :meth:`get_event` (and to tools using it,
        such as the bus client rebuilding events received from elsewhere)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseEvent)):
            raise TypeError(f"{cls!r} is not a BaseEvent subclass")
        with self._lock:
            self._known.add(cls)

    def get_event(self) -> tuple[type[BaseEvent], ...]:
        """The event classes registered, connected to or emitted so far."""
        with self._lock:
            return tuple(
                sorted(self._known, key=lambda c: (c.__module__, c.__qualname__))
            )

    def get_listeners(
        self, cls_or_event: type[BaseEvent] | BaseEvent
    ) -> list[Callable[..., Any]]:
        """The listeners that an emit would call, in call order.

        For a class: every live listener of the class and its bases. For an
        event instance: only those whose filters match it. Disabled classes
        and ``mark_as_handled`` are not taken into account.
        """
        if isinstance(cls_or_event, type):
            with self._lock:
                listeners = [
                    lst
                    for base in cls_or_event.__mro__
                    for lst in self._by_class.get(base, ())
                ]
            listeners.sort(key=Listener.sort_key)
            found = (lst.callable() for lst in listeners)
            return [func for func in found if func is not None]
        cls = cls_or_event.__class__
        with self._lock:
            listeners = [
                lst for base in cls.__mro__ for lst in self._by_class.get(base, ())
            ]
        listeners.sort(key=Listener.sort_key)
        return self._matching(_Dispatch(listeners), cls_or_event)

    @staticmethod
    def get_event_hierarchy(cls: type[BaseEvent]) -> tuple[type[BaseEvent], ...]:
        """The event classes from ``cls`` up to :class:`BaseEvent`, in method
        resolution order."""
        return tuple(c for c in cls.__mro__ if issubclass(c, BaseEvent))

    def set_trace(self, func: TraceFunc | None) -> None:
        """Install (or with ``None`` remove) a hook that watches the manager.

        ``func(name, method, args)`` is called before each action: ``name``
        is ``'connect'``, ``'disconnect'``, ``'emit'`` or ``'listen'`` (one
        listener about to be called); ``method`` is the listener concerned
        (``None`` for ``'emit'``); ``args`` holds the rest: ``(cls, filter,
        priority)`` for connect, ``(cls,)`` for disconnect, ``(event,)`` for
        emit and listen. If it returns ``True`` the action is vetoed: not
        done, silently. Tracing moves dispatch off its fast path.
        """
        self._trace = func

    def _vetoed(self, name: str, method: Any, args: tuple) -> bool:
        trace = self._trace
        return trace is not None and trace(name, method, args) is True


def _call_run(funcs: tuple[Callable[..., Any], ...], event: BaseEvent) -> None:
    """Call each of ``funcs`` with ``event`` until one marks it handled.

    See the module docstring: a bare loop, resumed after a failing listener,
    ended early by `BaseEvent.mark_as_handled` through ``_dispatch_run``.
    """
    it = iter(funcs)
    state = event.__dict__
    # A listener may emit this same event again: restore the outer run after.
    outer = state.get("_dispatch_run")
    state["_dispatch_run"] = it
    try:
        while True:
            try:
                for func in it:
                    func(event)
                return
            except Exception:
                _log_failure(func, event)
    finally:
        if outer is None:
            del state["_dispatch_run"]
        else:
            state["_dispatch_run"] = outer
            if event._handled:
                # Handled inside the nested emit: the outer run stops too.
                outer.__setstate__(sys.maxsize)


def _log_failure(func: Any, event: BaseEvent) -> None:
    logger.exception("Listener %r raised while handling %s", func, type(event).__name__)
