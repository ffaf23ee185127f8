"""The publish SDK stores notifications exactly as the sidecar does."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from tidings.client import Publisher, events
from tidings.envelope import Notification
from tidings.errors import InvalidField, UnknownEvent
from tidings.settings import NatsSettings
from tidings.subjects import AudienceKind


async def stored(js: JetStreamContext, seq: int) -> tuple[str, Notification, dict[str, str]]:
    msg = await js.get_msg("TIDINGS", seq)
    return msg.subject, Notification.from_bytes(msg.data or b""), dict(msg.headers or {})


async def test_every_audience_lands_on_its_subject(
    js: JetStreamContext, nats_settings: NatsSettings
) -> None:
    async with await Publisher.connect(nats_settings, source="sdk-test", allow_broadcast=True) as p:
        t = await p.to_tenant("acme", "incident.created", title="T", message="m")
        u = await p.to_user("acme", "alice", "audit.assigned", title="U", message="m")
        r = await p.to_role("acme", "admin", "quota.warning", title="R", message="m")
        o = await p.to_room("acme", "site-1", "work_permit.created", title="O", message="m")
        b = await p.broadcast("system.notification", title="B", message="m", severity="critical")
    expected = [
        (t, "tenant.acme.incident.created"),
        (u, "tenant.acme.user.alice.audit.assigned"),
        (r, "tenant.acme.role.admin.quota.warning"),
        (o, "tenant.acme.room.site-1.work_permit.created"),
        (b, "broadcast.system.notification"),
    ]
    for result, subject in expected:
        assert result.seq is not None
        got_subject, n, headers = await stored(js, result.seq)
        assert got_subject == subject
        assert n.id == result.id
        assert headers["Nats-Msg-Id"] == f"{n.tenant or ''}:{result.id}"  # the id in its tenant
        assert n.source == "sdk-test"
    _, bn, _ = await stored(js, b.seq or 0)
    assert bn.tenant is None
    assert bn.severity.value == "critical"


async def test_same_id_twice_is_stored_once(
    js: JetStreamContext, nats_settings: NatsSettings
) -> None:
    async with await Publisher.connect(nats_settings) as p:
        body = events.incident_created("acme", incident_id="INC-1", title="Spill", id="inc-1")
        first = await p.publish(body)
        again = await p.publish(body)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.seq == again.seq
    info = await js.stream_info("TIDINGS")
    assert info.state.messages == 1


async def test_typed_helpers_fill_data(js: JetStreamContext, nats_settings: NatsSettings) -> None:
    async with await Publisher.connect(nats_settings) as p:
        res = await p.publish(events.audit_assigned("acme", audit_id="A-9", assignee="bob"))
        q = await p.publish(events.quota_exceeded("acme", quota="storage", used=11, limit=10))
    subject, n, _ = await stored(js, res.seq or 0)
    assert subject == "tenant.acme.user.bob.audit.assigned"
    assert n.data_object == {"audit_id": "A-9", "assignee": "bob"}
    subject, n, _ = await stored(js, q.seq or 0)
    assert subject == "tenant.acme.role.admin.quota.exceeded"
    assert n.audience.kind is AudienceKind.ROLE
    assert n.data_object == {"quota": "storage", "used": 11, "limit": 10}


async def test_batch_is_stored_in_order(js: JetStreamContext, nats_settings: NatsSettings) -> None:
    bodies = [
        {"tenant": "acme", "event": "audit_log.created", "title": f"#{i}", "message": "m"}
        for i in range(50)
    ]
    async with await Publisher.connect(nats_settings) as p:
        results = await p.publish_batch(bodies)
    seqs = [r.seq for r in results]
    assert seqs == list(range(1, 51))
    for i in (0, 25, 49):
        _, n, _ = await stored(js, i + 1)
        assert n.title == f"#{i}"


async def test_invalid_requests_never_reach_the_stream(
    js: JetStreamContext, nats_settings: NatsSettings
) -> None:
    async with await Publisher.connect(nats_settings) as p:
        with pytest.raises(InvalidField):
            await p.to_user("acme", "al.ice", "incident.created", title="x", message="m")
        with pytest.raises(UnknownEvent):
            await p.to_tenant("acme", "rocket.launched", title="x", message="m")
        with pytest.raises(InvalidField):
            await p.publish_batch(
                [
                    {"tenant": "acme", "event": "incident.created", "title": "ok", "message": "m"},
                    {"tenant": "ac me", "event": "incident.created", "title": "x", "message": "m"},
                ]
            )
    info = await js.stream_info("TIDINGS")
    assert info.state.messages == 0


async def test_a_refused_pipeline_reports_once_and_leaves_no_unread_failure(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Every message of a pipeline may fail at once (no stream answers during an election):
    the first failure is raised, and the others are read, not logged by asyncio as 'never
    retrieved' (thousands of lines per election on a sidecar)."""
    import gc

    from nats.js.errors import NoStreamResponseError

    from tidings.publishing import OutgoingMessage, publish_many

    msgs = [OutgoingMessage(f"m{i}", f"nowhere.{i}", b"x", {}) for i in range(20)]
    with pytest.raises(NoStreamResponseError):  # the NATS error, as it is
        await publish_many(js, msgs, stream="TIDINGS", timeout=2.0)
    gc.collect()
    assert "never retrieved" not in caplog.text
