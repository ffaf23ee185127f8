"""What the gateway accepts from the inbox API over NATS: exactly the agreed shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tidings.gateway import inbox_wire as wire

COUNTS = {
    "total": 4,
    "unread": 2,
    "unseen": 1,
    "unread_by_severity": {"info": 1, "success": 0, "warning": 1, "error": 0, "critical": 0},
}


def change(**changes: Any) -> bytes:
    body: dict[str, Any] = {"counts": COUNTS, "ids": ["01JZ"], "set": {"read": True}}
    body.update(changes)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_a_change_becomes_the_inbox_frame() -> None:
    got = wire.read_change(change())
    assert orjson.loads(got.line) == {
        "type": "inbox",
        "counts": COUNTS,
        "ids": ["01JZ"],
        "set": {"read": True},
    }
    assert got.muted is None
    prefs = wire.read_change(change(ids=[], set={}, muted=["quota", "audit"]))
    assert prefs.muted == frozenset({"quota", "audit"})
    assert orjson.loads(prefs.line)["muted"] == ["audit", "quota"]
    assert orjson.loads(wire.read_change(change(ids=[], all=True)).line)["all"] is True
    assert wire.read_change(change(muted=[])).muted == frozenset()  # everything unmuted


def test_only_the_agreed_fields_go_on() -> None:
    extra = {**COUNTS, "secret": 1, "unread_by_severity": {**COUNTS["unread_by_severity"], "x": 2}}
    got = orjson.loads(wire.read_change(change(counts=extra, tenant="other", note="hi")).line)
    assert got["counts"] == COUNTS
    assert set(got) == {"type", "counts", "ids", "set"}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b'"text"',
        change(counts=...),
        change(counts={**COUNTS, "total": True}),
        change(counts={**COUNTS, "unseen": 1.5}),
        change(counts={**COUNTS, "unread_by_severity": {"info": 1}}),
        change(ids="01JZ"),
        change(ids=[1]),
        change(ids=["has space"]),
        change(ids=["x" * 65]),
        change(ids=["a"] * 1001),
        change(set=...),
        change(set={"read": 1}),
        change(set={"unread": True}),
        change(all="yes"),
        change(muted="audit"),
        change(muted=["Audit"]),
        change(muted=["audit.created"]),
        change(muted=["x"] * 257),
        b'{"counts":' + b" " * (wire.MAX_BYTES) + b"}",
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every refusal is a ValueError by design
        wire.read_change(data)


def test_the_subject_names_who_it_is_for() -> None:
    assert wire.changed_target("tidings.inbox.changed.acme.alice") == ("acme", "alice")
    for bad in (
        "tidings.inbox.changed.acme",
        "tidings.inbox.changed.acme.alice.x",
        "tidings.inbox.other.acme.alice",
        "tidings.inbox.changed.acme.*",
        "tidings.inbox.changed.acme.>",
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            wire.changed_target(bad)
    assert wire.changed_filter("acme") == "tidings.inbox.changed.acme.>"


def test_the_session_answer() -> None:
    got = wire.read_session(orjson.dumps({"counts": COUNTS, "muted": ["audit"]}))
    assert got == wire.Session(COUNTS, frozenset({"audit"}))
    assert wire.read_session(orjson.dumps({"counts": COUNTS})).muted == frozenset()
    with pytest.raises(wire.Refused):
        wire.read_session(b'{"error":{"code":"internal","reason":"r"}}')
    with pytest.raises(ValueError):  # noqa: PT011
        wire.read_session(b'{"counts":{}}')
    question = orjson.loads(wire.session_request("acme", "alice", frozenset({"b", "a"}), ("s-*",)))
    assert question == {"tenant": "acme", "user": "alice", "roles": ["a", "b"], "rooms": ["s-*"]}


def test_a_tenant_wide_change_is_read_strictly() -> None:
    assert wire.tenant_subject("acme") == "tidings.inbox.changed.acme"
    assert wire.tenant_target("tidings.inbox.changed.acme") == "acme"
    for subject in (
        "tidings.inbox.changed.acme.alice",
        "tidings.inbox.changed",
        "tidings.inbox.other.acme",
        "tidings.inbox.changed.*",
        "tidings.inbox.changed.ac me",
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            wire.tenant_target(subject)
    assert wire.read_tenant_change(b'{"reason":"defaults"}') == "defaults"
    for data in (
        b'{"reason":"retention"}',
        b'{"reason":"defaults","user":"bob"}',
        b"{}",
        b"[]",
        b"defaults",
        b'{"reason":"defaults"' + b" " * wire.MAX_BYTES + b"}",
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            wire.read_tenant_change(data)
