"""Heartbeat: beats with increasing frames, pause/resume/stop states."""

import threading

from encore.events.api import EventManager, Heartbeat, HeartbeatEvent


def test_serve_beats_until_stopped():
    em = EventManager()
    beats = []
    five = threading.Event()

    def on_beat(event):
        beats.append(event)
        if len(beats) >= 5:
            five.set()

    em.connect(HeartbeatEvent, on_beat)
    heart = Heartbeat(interval=0.005, event_manager=em)
    assert heart.state == "waiting"
    heart.serve()
    assert five.wait(10)
    heart.stop()
    assert heart.state == "stopped"
    assert [b.frame for b in beats] == list(range(len(beats)))
    assert all(b.interval == 0.005 and b.source is heart for b in beats)
    assert all(a.time <= b.time for a, b in zip(beats, beats[1:]))
    count = len(beats)
    heart.run()  # a stopped heart does not beat again
    assert len(beats) == count


def test_pause_and_resume():
    em = EventManager()
    heart = Heartbeat(interval=0.001, event_manager=em)
    got = threading.Event()
    em.connect(HeartbeatEvent, lambda e: got.set())
    heart.serve()
    assert got.wait(10)
    heart.pause()
    assert heart.state == "paused"
    got.clear()
    heart.resume()
    assert heart.state == "running"
    assert got.wait(10)
    heart.stop()


def test_listener_can_stop_heart_running_on_calling_thread():
    em = EventManager()
    heart = Heartbeat(interval=0.001, event_manager=em)
    frames = []

    def on_beat(event):
        frames.append(event.frame)
        if event.frame == 3:
            heart.stop()

    em.connect(HeartbeatEvent, on_beat)
    heart.run()
    assert frames == [0, 1, 2, 3]
