"""In-process event dispatch: µs per emit for encore, blinker, psygnal and a
plain Python loop calling the same functions (the floor), with encore 0.8.0
as an anchor in the same run.

Run:  python bench/bench_events.py [--repeat 7] [--number 20000]
          [--anchor-python .venv08/bin/python]

The 0.8 anchor runs in its own process (``bench/_bench_events_08.py``)
with the Python of a separate virtual environment holding encore 0.8.0
from PyPI, made once with ``python3 -m venv .venv08 &&
.venv08/bin/pip install encore==0.8.0``; the two packages never share a
process. It is measured between the repeats of the others, so that load
from elsewhere hits it alike. Without that environment the column is
left out.

Shapes
------
- ``N listeners``: N listeners on the emitted class.
- ``100 unrelated``: one listener on the emitted class, 100 on other classes.
- ``100 filtered, 1 match``: 100 listeners each filtering on a different
  ``operation_id``; the event matches one of them.
- ``100 + 1 filtered``: 100 plain listeners and one filtered listener that
  does not match (a filter must not slow the others).
- ``5 levels``: one listener on each of 5 classes of a hierarchy; the event
  is of the deepest class.

blinker and psygnal have no class hierarchy or attribute filters, so their
version of a shape does the equivalent work their own way: one signal per
class (an emit of the deepest class sends on 5 signals), blinker's
sender-based filtering, and for psygnal the attribute test inside each
callback. The plain loop is what a hand-written dispatcher does: call each
function, testing the attribute first where the shape filters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encore.events.api import BaseEvent, EventManager  # noqa: E402


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
    # Distinct function objects, as distinct listeners would be.
    return [(lambda e: None) for _ in range(n)]


# ---------------------------------------------------------------- encore


def encore_case(shape):
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
    return lambda: em.emit(event)


# ---------------------------------------------------------------- blinker


def blinker_case(shape):
    import blinker

    event = L4(operation_id=7)
    sig = blinker.Signal()
    if shape.startswith("listeners:"):
        for f in make_sinks(int(shape.split(":")[1])):
            sig.connect(f, weak=False)
        return lambda: sig.send(event)
    if shape == "unrelated":
        sig.connect(sink, weak=False)
        others = [blinker.Signal() for _ in UNRELATED]
        for other in others:
            other.connect(lambda e: None, weak=False)
        return lambda: sig.send(event)
    if shape == "filtered":
        senders = [object() for _ in range(100)]
        for sender, f in zip(senders, make_sinks(100)):
            sig.connect(f, sender=sender, weak=False)
        hit = senders[7]
        return lambda: sig.send(hit)
    if shape == "plus-filtered":
        for f in make_sinks(100):
            sig.connect(f, weak=False)
        sig.connect(sink, sender=object(), weak=False)
        return lambda: sig.send(event)
    if shape == "levels":
        sigs = [blinker.Signal() for _ in range(5)]
        for s, f in zip(sigs, make_sinks(5)):
            s.connect(f, weak=False)

        def send():
            for s in sigs:
                s.send(event)

        return send
    raise ValueError(shape)


# ---------------------------------------------------------------- psygnal


def psygnal_case(shape):
    from psygnal import SignalInstance

    event = L4(operation_id=7)
    sig = SignalInstance((object,))
    if shape.startswith("listeners:"):
        for f in make_sinks(int(shape.split(":")[1])):
            sig.connect(f)
        return lambda: sig.emit(event)
    if shape == "unrelated":
        sig.connect(sink)
        others = [SignalInstance((object,)) for _ in UNRELATED]
        for other in others:
            other.connect(lambda e: None)
        return lambda: sig.emit(event)
    if shape == "filtered":
        for i in range(100):
            sig.connect(filtered_callback(i))
        return lambda: sig.emit(event)
    if shape == "plus-filtered":
        for f in make_sinks(100):
            sig.connect(f)
        sig.connect(filtered_callback(-1))
        return lambda: sig.emit(event)
    if shape == "levels":
        sigs = [SignalInstance((object,)) for _ in range(5)]
        for s, f in zip(sigs, make_sinks(5)):
            s.connect(f)

        def emit():
            for s in sigs:
                s.emit(event)

        return emit
    raise ValueError(shape)


def filtered_callback(wanted):
    def callback(event):
        if event.operation_id == wanted:
            sink(event)

    return callback


# ---------------------------------------------------------------- floor


def plain_case(shape):
    event = L4(operation_id=7)
    if shape.startswith("listeners:"):
        funcs = make_sinks(int(shape.split(":")[1]))
    elif shape == "unrelated":
        funcs = [sink]
    elif shape == "levels":
        funcs = make_sinks(5)
    elif shape in ("filtered", "plus-filtered"):
        plain = make_sinks(0 if shape == "filtered" else 100)
        wanted = (
            list(enumerate(make_sinks(100))) if shape == "filtered" else [(-1, sink)]
        )

        def loop():
            for f in plain:
                f(event)
            for value, f in wanted:
                if event.operation_id == value:
                    f(event)

        return loop
    else:
        raise ValueError(shape)

    def loop():
        for f in funcs:
            f(event)

    return loop


SHAPES = [
    ("0 listeners", "listeners:0"),
    ("1 listener", "listeners:1"),
    ("10 listeners", "listeners:10"),
    ("100 listeners", "listeners:100"),
    ("100 unrelated", "unrelated"),
    ("100 filtered, 1 match", "filtered"),
    ("100 + 1 filtered", "plus-filtered"),
    ("5 levels", "levels"),
]
LIBS = [
    ("encore", encore_case),
    ("blinker", blinker_case),
    ("psygnal", psygnal_case),
    ("plain loop", plain_case),
]


class Anchor08:
    """encore 0.8.0 measuring in a child process (see the module docstring)."""

    def __init__(self, python: str) -> None:
        script = Path(__file__).resolve().with_name("_bench_events_08.py")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        # -I and a neutral working directory: this repository's encore must
        # not be importable in the child.
        self.proc = subprocess.Popen(
            [python, "-I", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tempfile.gettempdir(),
            env=env,
        )
        hello = json.loads(self.proc.stdout.readline())
        ours = Path(__file__).resolve().parents[1] / "encore"
        if hello["version"] != "0.8.0" or Path(hello["file"]).is_relative_to(ours):
            self.close()
            raise SystemExit(f"the anchor is not encore 0.8.0 from PyPI: {hello}")
        self.version = hello["version"]

    def time(self, shape: str, number: int) -> float:
        """Seconds for ``number`` emits of ``shape`` in the child."""
        self.proc.stdin.write(json.dumps({"shape": shape, "number": number}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self) -> None:
        """End the child (it exits at the end of its input)."""
        self.proc.stdin.close()
        self.proc.wait(30)


def measure_row(funcs, number, repeat, anchor=None, shape=None):
    """Best-of-``repeat`` µs per call for each function (and the anchor).

    The repeats are interleaved across the functions so that a burst of
    load from elsewhere on the machine hits all of them alike.
    """
    best = dict.fromkeys(funcs, float("inf"))
    if anchor is not None:
        best["encore 0.8"] = float("inf")
    for _ in range(repeat):
        for name, func in funcs.items():
            best[name] = min(best[name], timeit.timeit(func, number=number))
        if anchor is not None:
            best["encore 0.8"] = min(best["encore 0.8"], anchor.time(shape, number))
    return {name: t / number * 1e6 for name, t in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    default_anchor = Path(__file__).resolve().parents[1] / ".venv08" / "bin" / "python"
    parser.add_argument(
        "--anchor-python",
        default=str(default_anchor),
        help="Python of a venv with encore 0.8.0 (default: .venv08/bin/python)",
    )
    args = parser.parse_args(argv)
    from importlib.metadata import version

    import psygnal

    anchor = Anchor08(args.anchor_python) if Path(args.anchor_python).exists() else None
    print(
        f"python {sys.version.split()[0]}, blinker {version('blinker')}, "
        f"psygnal {version('psygnal')} (compiled: {psygnal._compiled}), "
        + (f"encore {anchor.version} (anchor)" if anchor else "no encore 0.8 anchor")
    )
    names = [name for name, _ in LIBS] + (["encore 0.8"] if anchor else [])
    header = f"{'shape':24}" + "".join(f"{name:>12}" for name in names)
    print(
        header
        + f"{'vs floor':>10}{'vs psygnal':>12}"
        + (f"{'0.8/ours':>10}" if anchor else "")
    )
    try:
        for label, shape in SHAPES:
            row = measure_row(
                {name: make(shape) for name, make in LIBS},
                args.number,
                args.repeat,
                anchor,
                shape,
            )
            cells = "".join(f"{row[name]:12.3f}" for name in names)
            speedup = f"{row['encore 0.8'] / row['encore']:9.2f}x" if anchor else ""
            print(
                f"{label:24}{cells}{row['encore'] / row['plain loop']:9.2f}x"
                f"{row['encore'] / row['psygnal']:11.2f}x{speedup}"
            )
    finally:
        if anchor is not None:
            anchor.close()
    print(
        "(µs per emit, best of repeats; vs floor and vs psygnal are encore's time "
        "over the other's, 0.8/ours is encore 0.8's time over ours)"
    )


if __name__ == "__main__":
    main()
