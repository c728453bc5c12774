"""The wire codec: values, classes and the wire's limits."""

import datetime
import subprocess
import sys
import uuid
from pathlib import PurePosixPath

import msgpack
import pytest

from encore.events.api import BaseEvent, EventManager, ProgressEvent
from encore_client import RemoteEvent, RemoteObject, RemoteSource
from encore_client._codec import (
    ClassRegistry,
    DecodeError,
    check_header,
    decode_attributes,
    decode_source,
    encode_attributes,
    encode_source,
    event_class_names,
    full_name,
)
from encored.testing import package_root


class FileEvent(BaseEvent):
    pass


class SaveEvent(FileEvent):
    pass


class KeyEvent(BaseEvent):
    pass


class KeyProgressEvent(ProgressEvent, KeyEvent):
    pass


class Opaque:
    def __repr__(self):
        return "<Opaque thing>"


def roundtrip(**attrs):
    return decode_attributes(encode_attributes(BaseEvent(**attrs)))


def test_values_come_back_as_themselves():
    op = uuid.uuid4()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    attrs = {
        "n": 1,
        "big": 2**63 - 1,
        "f": 1.5,
        "s": "text",
        "b": b"\x00bytes",
        "none": None,
        "flag": True,
        "items": [1, "a", None],
        "pair": (1, (2, 3)),
        "nested": {"a": {"b": [1, 2]}, 3: "int key"},
        "op": op,
        "when": when,
        "day": when.date(),
        "tags": {"x", "y"},
    }
    back = roundtrip(**attrs)
    assert back["pair"] == (1, (2, 3)) and isinstance(back["pair"], tuple)
    assert back["tags"] == frozenset({"x", "y"})
    for key in attrs:
        if key != "tags":
            assert back[key] == attrs[key], key


def test_unencodable_values_become_remote_objects_without_failing():
    back = roundtrip(thing=Opaque(), huge=2**80, path=PurePosixPath("/a/b"))
    assert back["thing"] == RemoteObject(f"{__name__}.Opaque", "<Opaque thing>")
    assert back["huge"].type_name == "builtins.int"
    assert back["path"] == "/a/b"


def test_private_attributes_and_source_do_not_travel():
    event = SaveEvent(source=Opaque(), directory="d")
    event._secret = 1
    assert decode_attributes(encode_attributes(event)) == {"directory": "d"}


def test_wire_cannot_set_private_names_or_shadow_methods():
    data = msgpack.packb(
        {"_handled": True, "mark_as_handled": 1, "pre_emit": 2, "ok": 3, "bad key": 4}
    )
    assert decode_attributes(data, SaveEvent) == {"ok": 3}


@pytest.mark.parametrize(
    "data",
    [b"\xc1", msgpack.packb([1]), msgpack.packb({"a": msgpack.ExtType(3, b"\xff")})],
)
def test_bad_attribute_frames_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode_attributes(data)


def test_source_descriptor():
    descriptor = encode_source(Opaque())
    source = decode_source(descriptor)
    assert isinstance(source, RemoteSource)
    assert source.type_name == f"{__name__}.Opaque"
    assert source.repr == "<Opaque thing>"
    assert encode_source(source) == descriptor  # forwarded unchanged
    assert decode_source(None) is None
    assert decode_source("junk").type_name == "<malformed>"


def test_known_class_is_found_without_import():
    registry = ClassRegistry()
    name, bases = registry.wire_names(SaveEvent)
    assert name == full_name(SaveEvent)
    assert bases == [full_name(FileEvent), full_name(BaseEvent)]
    assert registry.resolve(name, bases) is SaveEvent


def test_unknown_class_derives_from_its_nearest_known_bases():
    registry = ClassRegistry()
    cls = registry.resolve(
        "elsewhere.AutoSaveEvent",
        [
            "elsewhere.Mixin",
            full_name(SaveEvent),
            full_name(FileEvent),
            full_name(BaseEvent),
        ],
    )
    assert issubclass(cls, RemoteEvent) and issubclass(cls, SaveEvent)
    assert cls.__name__ == "AutoSaveEvent"
    assert cls.remote_class_name == "elsewhere.AutoSaveEvent"
    assert event_class_names(cls)[:2] == ("elsewhere.AutoSaveEvent", "elsewhere.Mixin")
    # Sending it on keeps the original names.
    assert registry.wire_names(cls)[0] == "elsewhere.AutoSaveEvent"
    assert registry.resolve("elsewhere.AutoSaveEvent", cls.remote_bases) is cls


def test_unknown_class_with_multiple_inheritance_matches_both_branches():
    registry = ClassRegistry()
    cls = registry.resolve(
        "x.StoreLikeProgressEvent",
        [full_name(ProgressEvent), full_name(KeyEvent), full_name(BaseEvent)],
    )
    assert issubclass(cls, ProgressEvent) and issubclass(cls, KeyEvent)
    manager = EventManager()
    calls = []
    manager.connect(KeyEvent, lambda e: calls.append("key"))
    manager.connect(
        ProgressEvent, lambda e: calls.append("progress"), filter={"step": 2}
    )
    event = cls.__new__(cls)
    BaseEvent.__init__(event, step=2)
    manager.emit(event)
    assert sorted(calls) == ["key", "progress"]


def test_nothing_known_gives_a_plain_remote_event():
    cls = ClassRegistry().resolve("nowhere.Thing", ["nowhere.Base"])
    assert cls.__mro__[1] is RemoteEvent


def test_class_defined_after_first_sight_is_picked_up(monkeypatch):
    registry = ClassRegistry()
    monkeypatch.setattr(ClassRegistry, "RECHECK_INTERVAL", 0.0)
    name = f"{__name__}.LateEvent"
    first = registry.resolve(name, [full_name(BaseEvent)])
    assert issubclass(first, RemoteEvent)

    class LateEvent(BaseEvent):
        pass

    LateEvent.__qualname__ = "LateEvent"
    assert registry.resolve(name, [full_name(BaseEvent)]) is LateEvent


def test_registered_classes_are_known():
    manager = EventManager()
    registry = ClassRegistry(manager)
    manager.register(KeyEvent)
    assert registry.resolve(full_name(KeyEvent), []) is KeyEvent


def test_resolving_never_imports_the_named_module():
    code = (
        "import sys\n"
        "from encore_client._codec import ClassRegistry\n"
        "cls = ClassRegistry().resolve('json.tool.Evil', ['json.tool.Base'])\n"
        "assert 'json.tool' not in sys.modules, 'imported!'\n"
        "print(cls.__mro__[1].__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(package_root())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "RemoteEvent"


@pytest.mark.parametrize(
    "header",
    [
        [],
        {"class": "a.B"},
        {"class": "a b", "bases": []},
        {"class": "__import__('os')", "bases": []},
        {"class": "a.B", "bases": ["ok", 5]},
        {"class": "a.B", "bases": ["x"] * 100},
        {"class": "a." + "B" * 1000, "bases": []},
        {"class": "a.B", "bases": [], "time": "noon"},
    ],
)
def test_bad_headers_are_rejected(header):
    with pytest.raises(DecodeError):
        check_header(header)


def test_local_class_names_are_accepted():
    check_header({"class": "mod.func.<locals>.Ev", "bases": ["mod.Base"]})
