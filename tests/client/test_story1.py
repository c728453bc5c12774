"""User story 1: a SaveEvent in process A reaches a filtered FileEvent
listener in process B, with its class, attributes and hierarchy."""

import json
import textwrap

import pytest

EVENTS_MODULE = """
from encore.events.api import BaseEvent

class FileEvent(BaseEvent):
    '''Something happened to a file.'''

class DoneEvent(BaseEvent):
    pass
"""

SAVE_MODULE = """
from story_events import FileEvent

class SaveEvent(FileEvent):
    pass
"""

LISTENER = """
import json, threading
from encore.events.api import BaseEvent, EventManager
from encore_client import BusBridge, RemoteEvent, bus_info
from story_events import FileEvent, DoneEvent
{extra_import}

manager = EventManager()
done = threading.Event()

def on_file(event):
    info = bus_info(event)
    print(json.dumps({{
        "class": type(event).__module__ + "." + type(event).__qualname__,
        "mro": [c.__name__ for c in type(event).__mro__],
        "remote": isinstance(event, RemoteEvent),
        "attrs": {{k: v for k, v in vars(event).items()
                  if not k.startswith("_") and k != "source"}},
        "source": str(event.source),
        "origin": info.origin,
        "thread": threading.current_thread().name,
    }}), flush=True)

manager.connect(FileEvent, on_file, filter={{"directory": "d"}})
manager.connect(DoneEvent, lambda e: done.set())
with BusBridge(manager):
    print("READY", flush=True)
    assert done.wait(20), "no DoneEvent"
print("EXIT", flush=True)
"""

EMITTER = """
from encore.events.api import EventManager
from encore_client import BusBridge
from story_events import FileEvent, DoneEvent
from story_save import SaveEvent

class Document:
    def __repr__(self):
        return "<Document report.txt>"

manager = EventManager()
seen = []
manager.connect(FileEvent, seen.append)
with BusBridge(manager):
    manager.emit(SaveEvent(source=Document(), directory="elsewhere", filename="x"))
    manager.emit(SaveEvent(source=Document(), directory="d", filename="f", size=3))
    manager.emit(DoneEvent())
print("LOCAL", len(seen), flush=True)
"""


@pytest.mark.parametrize("b_knows_save_event", [True, False], ids=["known", "unknown"])
def test_save_event_reaches_filtered_file_listener(daemon, clients, b_knows_save_event):
    (clients.dir / "story_events.py").write_text(EVENTS_MODULE)
    (clients.dir / "story_save.py").write_text(SAVE_MODULE)
    extra = "import story_save" if b_knows_save_event else ""
    listener = clients(textwrap.dedent(LISTENER.format(extra_import=extra)))
    listener.wait_for("READY")
    emitter = clients(EMITTER)
    # The emitter's own listener saw each of its two file events once:
    # nothing came back to it from the bus.
    assert emitter.finish() == ["LOCAL 2"]
    lines = listener.finish()
    assert lines[0] == "READY" and lines[-1] == "EXIT"
    received = [json.loads(line) for line in lines[1:-1]]
    assert len(received) == 1, received  # the filter let only directory 'd' pass
    event = received[0]
    assert event["class"] == "story_save.SaveEvent"
    assert event["attrs"] == {"directory": "d", "filename": "f", "size": 3}
    assert event["mro"][-3:] == ["FileEvent", "BaseEvent", "object"]
    assert event["remote"] is (not b_knows_save_event)
    assert "<Document report.txt>" in event["source"]
    assert event["origin"]
    assert event["thread"] == "encore-bus-dispatch"
