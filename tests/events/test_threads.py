"""Thread safety: many threads connecting, disconnecting and emitting."""

import threading
import time

from encore.events.api import BaseEvent, EventManager


class Ping(BaseEvent):
    pass


class SubPing(Ping):
    pass


def test_concurrent_connect_disconnect_emit_loses_and_doubles_nothing():
    em = EventManager()
    errors = []
    stop = threading.Event()
    # A fixed population of listeners that stay connected throughout: each
    # must be called exactly once per emit, whatever else happens.
    counts = [0] * 20
    lock = threading.Lock()

    def make(i):
        def listen(event):
            with lock:
                counts[i] += 1

        return listen

    stable = [make(i) for i in range(20)]
    for i, func in enumerate(stable):
        em.connect(
            Ping if i % 2 else SubPing,
            func,
            priority=i % 3,
            filter={"tag": "t"} if i % 4 == 0 else None,
        )

    def churn():
        # Transient listeners connected and disconnected in a loop.
        funcs = [lambda e: None for _ in range(5)]
        try:
            while not stop.is_set():
                for j, f in enumerate(funcs):
                    em.connect(Ping, f, filter={"tag": j} if j % 2 else None)
                for f in funcs:
                    em.disconnect(Ping, f)
        except Exception as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    emitted = [0]

    def emitter():
        try:
            while not stop.is_set():
                em.emit(SubPing(tag="t"))
                with lock:
                    emitted[0] += 1
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(3)]
    threads += [threading.Thread(target=emitter) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not errors:
        stop.wait(0.05)
    stop.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert emitted[0] > 100
    assert counts == [emitted[0]] * 20
