"""The protocol documents name what the code does.

A client author writes from ``docs/protocol.md`` and ``docs/store_calls.md``
alone, so every operation, error code and error name the daemon has must
be in them, and nothing they list may be missing from the code.
"""

import re

from encore_client.wire.errors import ErrorCode
from encore_client.wire.operations import STORE_OPS
from encore_client.wire.version import PROTOCOL_VERSION
from encored._handlers import BUS_OPERATIONS
from encored.testing import package_root

DOCS = package_root() / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
STORE_CALLS = (DOCS / "store_calls.md").read_text(encoding="utf-8")


def _first_cells(text: str) -> set[str]:
    """The `op` names in the first column of a document's tables."""
    names = set()
    for line in text.splitlines():
        match = re.match(r"\| ?(`[\w.]+`(?:, `[\w.]+`)*) ?\|", line)
        if match:
            names.update(re.findall(r"`([\w.]+)`", match.group(1)))
    return names


def _code_rows(text: str) -> dict[int, str]:
    """``{code: NAME}`` from the error tables (``| 404 | NAME | ...``)."""
    return {
        int(code): name
        for code, name in re.findall(r"^\| (\d{3}) \| ([A-Z_]+) \|", text, re.M)
    }


def test_every_bus_operation_is_documented_and_no_other():
    documented = {n for n in _first_cells(PROTOCOL) if "." not in n}
    assert documented == set(BUS_OPERATIONS)


def test_every_store_operation_is_documented_and_no_other():
    documented = {n for n in _first_cells(STORE_CALLS) if n.startswith("store.")}
    assert documented == set(STORE_OPS)


def test_every_error_code_is_in_the_protocol_table_under_its_name():
    codes = {c.value: c.name for c in ErrorCode}
    assert _code_rows(PROTOCOL) == codes


def test_store_error_table_names_match_the_codes():
    codes = {c.value: c.name for c in ErrorCode}
    rows = _code_rows(STORE_CALLS)
    store_codes = {c for c in ErrorCode if c in (401, 403) or 460 <= c < 500}
    assert store_codes <= set(rows)
    assert all(codes[code] == name for code, name in rows.items())


def test_the_documented_version_is_the_one_spoken():
    assert f"(version {PROTOCOL_VERSION})" in PROTOCOL.splitlines()[0]
    assert f'{{"v": {PROTOCOL_VERSION}, "id"' in PROTOCOL
    assert f"`v` is not {PROTOCOL_VERSION}" in PROTOCOL


def test_a_reply_in_another_version_is_refused_by_the_client():
    import msgpack
    import pytest

    from encore_client.wire.envelope import parse_reply
    from encore_client.wire.errors import ProtocolError

    for version in (2, PROTOCOL_VERSION + 1, None):
        reply = {"v": version, "id": 5, "ok": True, "result": {"x": 1}}
        rid, outcome = parse_reply([msgpack.packb(reply)])
        assert rid == 5
        assert isinstance(outcome, ProtocolError)
        with pytest.raises(ProtocolError, match=f"speaks {PROTOCOL_VERSION}"):
            raise outcome
    good = {"v": PROTOCOL_VERSION, "id": 5, "ok": True, "result": {"x": 1}}
    assert parse_reply([msgpack.packb(good)])[1].result == {"x": 1}
