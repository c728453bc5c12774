import sys
import threading

import pytest

from encore.concurrent.threadtools import synchronized

DEADLINE = 10.0


def test_keeps_name_and_doc():
    @synchronized
    def frobnicate(x):
        """Frobnicate x."""
        return x * 2

    assert frobnicate.__name__ == "frobnicate"
    assert frobnicate.__doc__ == "Frobnicate x."
    assert frobnicate(21) == 42


def test_second_thread_waits_until_first_leaves():
    inside = threading.Event()
    release = threading.Event()
    order = []

    @synchronized
    def work(tag):
        order.append(("enter", tag))
        if tag == "a":
            inside.set()
            assert release.wait(DEADLINE)
        order.append(("leave", tag))

    a = threading.Thread(target=work, args=("a",))
    a.start()
    assert inside.wait(DEADLINE)
    # While "a" is inside, the lock is held: nobody else can take it.
    assert not work.lock.acquire(blocking=False)
    b = threading.Thread(target=work, args=("b",))
    b.start()
    b.join(0.2)
    assert b.is_alive(), "b finished while a was still inside"
    release.set()
    a.join(DEADLINE)
    b.join(DEADLINE)
    assert order == [("enter", "a"), ("leave", "a"), ("enter", "b"), ("leave", "b")]


@pytest.mark.parametrize("decorate", [True, False])
def test_never_two_threads_inside(decorate):
    # Switch threads as often as possible so that an unsynchronized
    # function is certain to be entered twice (the control case).
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        state = {"inside": 0, "most": 0}
        start = threading.Barrier(4)

        def body():
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])
            for _ in range(200):
                pass
            state["inside"] -= 1

        func = synchronized(body) if decorate else body

        def hammer():
            start.wait(DEADLINE)
            for _ in range(2000):
                func()

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
    finally:
        sys.setswitchinterval(old)
    if decorate:
        assert state["most"] == 1
    else:
        assert state["most"] > 1


def test_recursion_on_same_thread_does_not_deadlock():
    @synchronized
    def countdown(n):
        return 0 if n == 0 else 1 + countdown(n - 1)

    assert countdown(10) == 10


def test_exception_releases_lock():
    @synchronized
    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        boom()
    assert boom.lock.acquire(blocking=False)
    boom.lock.release()
