"""The ingest check (gateway/ingest.py): what a subject routes to must be what its envelope
says, ``data`` must be a JSON object, and drops are counted always but logged at most once per
interval per reason."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from tidings.envelope import Notification, Rejected
from tidings.gateway.ingest import Drops, wire_line
from tidings.subjects import BROADCAST_AUDIENCE, Audience, AudienceKind


def env(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "id": "n1",
        "tenant": "acme",
        "event": "incident.created",
        "audience": Audience(),
        "time": datetime.now(UTC),
        "title": "t",
        "message": "m",
    }
    fields.update(changes)
    return Notification(**fields).to_bytes()  # type: ignore[arg-type]


ALICE = Audience(AudienceKind.USER, "alice")


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("live.tenant.acme.incident.created", env()),
        ("live.tenant.acme.user.alice.incident.created", env(audience=ALICE)),
        (
            "live.tenant.acme.room.r-1.incident.created",
            env(audience=Audience(AudienceKind.ROOM, "r-1")),
        ),
        ("live.broadcast.system.notice", env(tenant=None, audience=BROADCAST_AUDIENCE)),
        ("live.tenant.acme.incident.created", env(data=b'{"big": 123456789012345678901234567890}')),
        ("live.tenant.acme.incident.created", env(data=b"")),  # absent: {}
    ],
)
def test_a_consistent_message_passes(subject: str, payload: bytes) -> None:
    wire_line(subject, payload, 5)


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("live.tenant.acme.nonsense", env(), "subject"),
        ("live.tenant.acme.incident.created", env(tenant="globex"), "mismatch"),
        ("live.tenant.acme.incident.created", env(audience=ALICE), "mismatch"),
        ("live.tenant.acme.user.bob.incident.created", env(audience=ALICE), "mismatch"),
        ("live.tenant.acme.role.alice.incident.created", env(audience=ALICE), "mismatch"),
        ("live.broadcast.system.notice", env(), "mismatch"),  # a tenant's envelope as broadcast
        (
            "live.tenant.acme.incident.created",
            env(tenant=None, audience=BROADCAST_AUDIENCE),
            "mismatch",
        ),
        ("live.tenant.acme.incident.created", env(data=b'{"a":'), "data"),
        ("live.tenant.acme.incident.created", env(data=b"[1]"), "data"),
        ("live.tenant.acme.incident.created", env(data=b'"text"'), "data"),
        ("live.tenant.acme.incident.created", env(data=b"\xff"), "data"),
        ("live.tenant.acme.incident.created", env(data=b'{"a": NaN}'), "data"),
        ("live.tenant.acme.incident.created", b"\xff\xff", "envelope"),
    ],
)
def test_an_inconsistent_message_is_rejected_with_its_reason(
    subject: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        wire_line(subject, payload, 5)
    assert caught.value.reason == reason


def test_drops_are_all_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    drops = Drops(log_every=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="tidings.gateway.ingest")
    for _ in range(50):
        drops.drop("data", subject="tenant.a.x.y", seq=1, why="data is not valid JSON", path="live")
    drops.drop("mismatch", subject="tenant.a.x.y", seq=2, why="w", path="live")
    assert drops.counts["data"] == 50 and drops.counts["mismatch"] == 1
    assert drops.total == 51
    assert [r.reason for r in caplog.records] == ["data", "mismatch"]  # type: ignore[attr-defined]
    now[0] += 10.0
    drops.drop("data", subject="tenant.a.x.y", seq=3, why="w", path="replay")
    last = caplog.records[-1]
    assert (last.reason, last.not_logged_since, last.seq) == ("data", 49, 3)  # type: ignore[attr-defined]
    drops.drop("surprise", subject="s", seq=None, why="w", path="live")
    assert drops.counts["other"] == 1
