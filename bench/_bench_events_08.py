"""Anchor child of ``bench/bench_events.py``: encore 0.8.0 in its own process.

Run by ``bench_events.py`` with the Python of a separate virtual
environment where encore 0.8.0 is installed from PyPI (``-I``, from a
neutral directory, so that this repository's ``encore`` is never
importable here and the two packages never share a process). Uses only
the documented API that 0.8 shares with us: ``EventManager``,
``BaseEvent``, ``connect(cls, func, filter=...)`` and ``emit``.

Protocol, one JSON object a line: it first prints ``{"version": ...,
"file": ...}``; then for each request ``{"shape": SHAPE, "number": N}`` on
stdin it times N emits of that shape and prints ``{"seconds": T}``.
"""

from __future__ import annotations

import json
import sys
import timeit
from importlib.metadata import version

from encore.events.api import BaseEvent, EventManager


class L0(BaseEvent):
    pass


class L1(L0):
    pass


class L2(L1):
    pass


class L3(L2):
    pass


class L4(L3):
    pass


UNRELATED = [type(f"Unrelated{i}", (BaseEvent,), {}) for i in range(100)]


def sink(event):
    pass


def make_sinks(n):
    return [(lambda e: None) for _ in range(n)]


def case(shape):
    """The same layouts as ``encore_case`` in bench_events.py."""
    em = EventManager()
    event = L4(operation_id=7)
    if shape.startswith("listeners:"):
        for f in make_sinks(int(shape.split(":")[1])):
            em.connect(L4, f)
    elif shape == "unrelated":
        em.connect(L4, sink)
        for cls in UNRELATED:
            em.connect(cls, lambda e: None)
    elif shape == "filtered":
        for i, f in enumerate(make_sinks(100)):
            em.connect(L4, f, filter={"operation_id": i})
    elif shape == "plus-filtered":
        for f in make_sinks(100):
            em.connect(L4, f)
        em.connect(L4, sink, filter={"operation_id": -1})
    elif shape == "levels":
        for cls, f in zip((L0, L1, L2, L3, L4), make_sinks(5)):
            em.connect(cls, f)
    else:
        raise ValueError(shape)
    return lambda: em.emit(event)


def main():
    import encore

    print(json.dumps({"version": version("encore"), "file": encore.__file__}))
    sys.stdout.flush()
    cases = {}
    for line in sys.stdin:
        request = json.loads(line)
        shape = request["shape"]
        if shape not in cases:
            cases[shape] = case(shape)
        seconds = timeit.timeit(cases[shape], number=request["number"])
        print(json.dumps({"seconds": seconds}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
