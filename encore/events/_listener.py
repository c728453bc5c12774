"""One connected listener, and its filter compiled to a fast check.

Private to :mod:`encore.events.event_manager`.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

Check = Callable[[Any], bool]


def compile_filter(filter: Mapping[str, Any], skip: str | None = None) -> Check | None:
    """Return a predicate testing an event against ``filter``, or ``None``.

    Keys are attribute names or dotted paths. A missing attribute, or an
    attribute whose comparison raises, fails the filter: a filter never
    makes ``emit`` raise. ``skip`` leaves one key out (the dispatcher has
    already matched it through an index).
    """
    items = tuple((attrgetter(k), v) for k, v in filter.items() if k != skip)
    if not items:
        return None
    if len(items) == 1:
        ((get, want),) = items

        def check_one(event: Any) -> bool:
            try:
                return bool(get(event) == want)
            except Exception:
                return False

        return check_one

    def check_all(event: Any) -> bool:
        try:
            for get, want in items:
                if not get(event) == want:
                    return False
        except Exception:
            return False
        return True

    return check_all


def identity(func: Callable[..., Any]) -> Any:
    """A hashable key under which ``func`` counts as "the same listener".

    Two bound methods of one object and one function are the same listener
    even though each attribute access creates a new method object.
    """
    if isinstance(func, types.MethodType):
        return ("method", id(func.__self__), func.__func__)
    try:
        hash(func)
    except TypeError:
        return ("id", id(func))
    return func


class Listener:
    """A listener connected to one event class.

    Bound methods are held through a :class:`weakref.WeakMethod` so that
    connecting a method does not keep its object alive; other callables are
    held strongly. ``on_death`` is called once if the object goes away.
    """

    __slots__ = (
        "cls",
        "key",
        "target",
        "weak",
        "priority",
        "order",
        "filter",
        "check",
        "__weakref__",
    )

    def __init__(
        self,
        cls: type,
        func: Callable[..., Any],
        filter: Mapping[str, Any] | None,
        priority: int,
        order: int,
        on_death: Callable[[Listener], None],
    ) -> None:
        self.cls = cls
        self.key = identity(func)
        self.priority = priority
        self.order = order
        self.filter = dict(filter) if filter else None
        self.check = compile_filter(self.filter) if self.filter else None
        self.weak = isinstance(func, types.MethodType)
        if self.weak:
            me = weakref.ref(self)

            def died(_ref: Any) -> None:
                listener = me()
                if listener is not None:
                    on_death(listener)

            self.target: Any = weakref.WeakMethod(func, died)  # type: ignore[arg-type]
        else:
            self.target = func

    def callable(self) -> Callable[..., Any] | None:
        """The listener's callable, or ``None`` if its object has died."""
        return self.target() if self.weak else self.target

    def sort_key(self) -> tuple[int, int]:
        """Call order: higher priority first, then connection order."""
        return (-self.priority, self.order)
