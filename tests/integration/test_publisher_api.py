"""The sidecar's HTTP API against a real nats-server: what is stored, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from tests.support.publisher_process import (
    Chunked,
    make_settings,
    metric,
    provision,
    sidecar,
    stored_messages,
    stream_count,
)
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification, Severity
from tidings.settings import NatsSettings
from tidings.subjects import AudienceKind

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def note(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": "acme",
        "event": "incident.created",
        "title": "Fire alarm",
        "message": "Evacuate building B",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
async def client(
    js: JetStreamContext, nats_settings: NatsSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A sidecar with default settings (no token) on a provisioned stream."""
    async with sidecar(make_settings(nats_settings, tmp_path / "outbox")) as (_, http):
        yield http


@pytest.fixture(scope="module")
def shared_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One nats-server for the many refusal cases; each checks the stream did not grow."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def guarded(shared_nats: EmbeddedNats, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A sidecar that requires a bearer token, with small limits to test them cheaply."""
    await provision(shared_nats.url)
    settings = make_settings(
        NatsSettings(urls=[shared_nats.url], reconnect_wait=0.2, request_timeout=2.0),
        tmp_path / "outbox",
        token=TOKEN,
        max_body_bytes=2048,
        batch_max_bytes=8192,
        batch_max_items=5,
    )
    async with sidecar(settings) as (_, http):
        yield http


# -- what is stored ---------------------------------------------------------------------------


async def test_a_notification_is_stored_with_subject_header_and_envelope(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    r = await client.post(
        "/v1/notifications",
        json=note(
            audience={"user": "alice"},
            severity="warning",
            data={"incident": 17, "site": "berlin"},
            source="ehs-api",
        ),
    )

    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["seq"] == 1
    assert answer["duplicate"] is False
    assert "queued" not in answer
    [stored] = await stored_messages(nats_server.url)
    assert stored.seq == 1
    assert stored.subject == "tenant.acme.user.alice.incident.created"
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == f"acme:{answer['id']}"  # the id within its tenant
    n = Notification.from_bytes(stored.data or b"")
    assert n.id == answer["id"]
    assert n.tenant == "acme"
    assert n.event == "incident.created"
    assert (n.audience.kind, n.audience.name) == (AudienceKind.USER, "alice")
    assert (n.title, n.message) == ("Fire alarm", "Evacuate building B")
    assert n.severity is Severity.WARNING
    assert n.source == "ehs-api"
    assert n.data_object == {"incident": 17, "site": "berlin"}


async def test_the_same_id_twice_is_stored_once(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    first = await client.post("/v1/notifications", json=note(id="incident-17-created"))
    second = await client.post("/v1/notifications", json=note(id="incident-17-created"))

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == {"id": "incident-17-created", "seq": 1, "duplicate": False}
    assert second.json() == {"id": "incident-17-created", "seq": 1, "duplicate": True}
    assert await stream_count(nats_server.url) == 1


async def test_an_id_is_a_key_within_its_tenant_only(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    """Tenant B's natural key must not be swallowed as a duplicate of tenant A's (issue 14)."""
    a = await client.post("/v1/notifications", json=note(id="inc-7-created"))
    b = await client.post("/v1/notifications", json=note(tenant="globex", id="inc-7-created"))
    assert a.json() == {"id": "inc-7-created", "seq": 1, "duplicate": False}
    assert b.json() == {"id": "inc-7-created", "seq": 2, "duplicate": False}
    stored = await stored_messages(nats_server.url)
    assert [Notification.from_bytes(m.data or b"").tenant for m in stored] == ["acme", "globex"]


async def test_a_reused_id_with_another_notification_is_a_conflict(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    first = await client.post("/v1/notifications", json=note(id="inc-8", title="Fire alarm"))
    other = await client.post("/v1/notifications", json=note(id="inc-8", title="All clear"))
    again = await client.post("/v1/notifications", json=note(id="inc-8", title="Fire alarm"))
    assert first.status_code == 202
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"
    assert other.json()["error"]["field"] == "id"
    assert "seq 1" in other.json()["error"]["reason"]
    assert again.json() == {"id": "inc-8", "seq": 1, "duplicate": True}  # a retry is no conflict
    assert await stream_count(nats_server.url) == 1


async def test_a_batch_of_100_is_stored_in_order(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    batch = [note(audience={"room": f"site-{i % 3}"}, data={"n": i}) for i in range(100)]

    r = await client.post("/v1/notifications/batch", json={"notifications": batch})

    assert r.status_code == 202, r.text
    results = r.json()["results"]
    assert len(results) == 100
    seqs = [res["seq"] for res in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 100
    stored = await stored_messages(nats_server.url)
    assert [Notification.from_bytes(m.data or b"").data_object["n"] for m in stored] == list(
        range(100)
    )
    keys = [m.headers["Nats-Msg-Id"] for m in stored if m.headers]
    assert keys == [f"acme:{r['id']}" for r in results]
    assert [m.seq for m in stored] == seqs
    assert stored[4].subject == "tenant.acme.room.site-1.incident.created"


async def test_the_right_token_is_accepted(
    guarded: httpx.AsyncClient, shared_nats: EmbeddedNats
) -> None:
    before = await stream_count(shared_nats.url)

    r = await guarded.post("/v1/notifications", json=note(), headers=AUTH)

    assert r.status_code == 202, r.text
    assert await stream_count(shared_nats.url) == before + 1


async def test_broadcast_with_the_right_is_stored(
    js: JetStreamContext, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    settings = make_settings(nats_settings, tmp_path / "outbox", allow_broadcast=True)
    async with sidecar(settings) as (_, http):
        r = await http.post(
            "/v1/notifications",
            json=note(tenant=..., event="system.notification", audience={"broadcast": True}),
        )

    assert r.status_code == 202, r.text
    [stored] = await stored_messages(nats_server.url)
    assert stored.subject == "broadcast.system.notification"


async def test_the_callers_trace_context_travels_with_the_notification(
    client: httpx.AsyncClient, nats_server: EmbeddedNats
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = await client.post(
        "/v1/notifications",
        json=note(),
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    )

    assert r.status_code == 202, r.text
    [stored] = await stored_messages(nats_server.url)
    assert stored.headers is not None
    assert stored.headers["traceparent"].split("-")[1] == trace_id
    assert Notification.from_bytes(stored.data or b"").traceparent.split("-")[1] == trace_id


async def test_unknown_routes_and_methods_answer_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.post("/v1/notification", json=note())
    wrong_method = await client.get("/v1/notifications")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["Allow"] == "POST"


# -- what is refused --------------------------------------------------------------------------

ROUTE = "/v1/notifications"
BATCH = "/v1/notifications/batch"


def raw(content: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": content, "headers": {**AUTH, "Content-Type": content_type}}


def body(value: Any) -> dict[str, Any]:
    return {"json": value, "headers": AUTH}


def chunked(size: int) -> dict[str, Any]:
    return {"content": Chunked(size), "headers": {**AUTH, "Content-Type": "application/json"}}


BAD = [
    # (case id, route, request kwargs, status, code, field)
    ("malformed-json", ROUTE, raw(b'{"tenant": "acme",'), 400, "malformed", "body"),
    ("empty-body", ROUTE, raw(b""), 400, "malformed", "body"),
    ("body-not-an-object", ROUTE, body([note()]), 400, "malformed", "body"),
    ("title-is-a-number", ROUTE, body(note(title=42)), 400, "invalid_field", "title"),
    ("data-is-a-list", ROUTE, body(note(data=[1, 2])), 400, "invalid_field", "data"),
    ("event-unknown", ROUTE, body(note(event="incident.exploded")), 400, "unknown_event", "event"),
    ("event-malformed", ROUTE, body(note(event="Incident")), 400, "invalid_field", "event"),
    ("event-colon", ROUTE, body(note(event="incident:created")), 400, "invalid_field", "event"),
    ("tenant-with-dot", ROUTE, body(note(tenant="acme.evil")), 400, "invalid_field", "tenant"),
    ("tenant-with-star", ROUTE, body(note(tenant="*")), 400, "invalid_field", "tenant"),
    ("tenant-with-gt", ROUTE, body(note(tenant=">")), 400, "invalid_field", "tenant"),
    ("tenant-with-space", ROUTE, body(note(tenant="acme corp")), 400, "invalid_field", "tenant"),
    ("tenant-empty", ROUTE, body(note(tenant="")), 400, "invalid_field", "tenant"),
    ("tenant-65-chars", ROUTE, body(note(tenant="t" * 65)), 400, "invalid_field", "tenant"),
    ("tenant-missing", ROUTE, body(note(tenant=...)), 400, "invalid_field", "tenant"),
    ("tenant-a-number", ROUTE, body(note(tenant=7)), 400, "invalid_field", "tenant"),
    ("user-with-dot", ROUTE, body(note(audience={"user": "al.ice"})), 400, "invalid_field",
     "audience.user"),
    ("user-with-star", ROUTE, body(note(audience={"user": "*"})), 400, "invalid_field",
     "audience.user"),
    ("user-empty", ROUTE, body(note(audience={"user": ""})), 400, "invalid_field", "audience.user"),
    ("role-with-gt", ROUTE, body(note(audience={"role": "admin.>"})), 400, "invalid_field",
     "audience.role"),
    ("room-with-space", ROUTE, body(note(audience={"room": "site berlin"})), 400, "invalid_field",
     "audience.room"),
    ("room-65-chars", ROUTE, body(note(audience={"room": "r" * 65})), 400, "invalid_field",
     "audience.room"),
    ("audience-two-keys", ROUTE, body(note(audience={"user": "a", "role": "b"})), 400,
     "invalid_field", "audience"),
    ("audience-unknown-kind", ROUTE, body(note(audience={"team": "a"})), 400, "invalid_field",
     "audience"),
    ("title-missing", ROUTE, body(note(title=...)), 400, "invalid_field", "title"),
    ("title-blank", ROUTE, body(note(title="   ")), 400, "invalid_field", "title"),
    ("title-too-long", ROUTE, body(note(title="x" * 201)), 400, "invalid_field", "title"),
    ("message-missing", ROUTE, body(note(message=...)), 400, "invalid_field", "message"),
    ("unknown-field", ROUTE, body(note(colour="red")), 400, "invalid_field", "colour"),
    ("severity-not-allowed", ROUTE, body(note(severity="panic")), 400, "invalid_field", "severity"),
    ("id-with-dot", ROUTE, body(note(id="a.b")), 400, "invalid_field", "id"),
    ("broadcast-without-right", ROUTE,
     body(note(tenant=..., event="system.notification", audience={"broadcast": True})),
     403, "forbidden", "audience.broadcast"),
    ("payload-over-limit", ROUTE, body(note(data={"blob": "x" * 3000})), 413, "too_large", "body"),
    ("payload-over-limit-chunked", ROUTE, chunked(3000), 413, "too_large", "body"),
    ("wrong-content-type", ROUTE, raw(b'{"tenant": "acme"}', "text/plain"), 415,
     "unsupported_media_type", "Content-Type"),
    ("no-content-type", ROUTE, {"content": b"{}", "headers": AUTH}, 415,
     "unsupported_media_type", "Content-Type"),
    ("no-token", ROUTE, {"json": note()}, 401, "unauthorized", "Authorization"),
    ("wrong-token", ROUTE, {"json": note(), "headers": {"Authorization": "Bearer nope"}}, 401,
     "unauthorized", "Authorization"),
    ("basic-auth-instead", ROUTE, {"json": note(), "headers": {"Authorization": f"Basic {TOKEN}"}},
     401, "unauthorized", "Authorization"),
    ("batch-over-item-limit", BATCH, body({"notifications": [note()] * 6}), 400, "invalid_field",
     "notifications"),
    ("batch-one-bad-item", BATCH,
     body({"notifications": [note(), note(), note(), note(tenant="a*b")]}), 400, "invalid_field",
     "notifications[3].tenant"),
    ("batch-item-not-an-object", BATCH, body({"notifications": [note(), "hello"]}), 400,
     "malformed", "notifications[1]"),
    ("batch-not-a-list", BATCH, body({"notifications": note()}), 400, "invalid_field",
     "notifications"),
    ("batch-empty", BATCH, body({"notifications": []}), 400, "invalid_field", "notifications"),
    ("batch-unknown-field", BATCH, body({"notifications": [note()], "x": 1}), 400,
     "invalid_field", "x"),
    ("batch-not-an-object", BATCH, body([note()]), 400, "malformed", "body"),
    ("batch-over-byte-limit", BATCH,
     body({"notifications": [note(data={"blob": "x" * 1900})] * 5}), 413, "too_large", "body"),
    ("batch-no-token", BATCH, {"json": {"notifications": [note()]}}, 401, "unauthorized",
     "Authorization"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("route", "request_kwargs", "status", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    guarded: httpx.AsyncClient,
    shared_nats: EmbeddedNats,
    route: str,
    request_kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    before = await stream_count(shared_nats.url)

    r = await guarded.post(route, **request_kwargs)

    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert isinstance(error["reason"], str) and len(error["reason"]) > 3
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await stream_count(shared_nats.url) == before


async def test_a_body_without_content_length_is_cut_off_at_the_limit(
    guarded: httpx.AsyncClient,
) -> None:
    request = guarded.build_request("POST", ROUTE, **chunked(3000))
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    r = await guarded.send(request)

    assert r.status_code == 413
    assert r.json()["error"]["reason"] == "the body exceeds 2048 bytes"


# -- health, readiness, metrics ---------------------------------------------------------------


async def test_health_and_metrics_need_no_token(guarded: httpx.AsyncClient) -> None:
    assert (await guarded.get("/healthz")).json() == {"status": "ok"}
    ready = await guarded.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["nats"] == "connected"
    assert (await guarded.get("/metrics")).status_code == 200


async def test_metrics_count_requests_outcomes_and_latency(client: httpx.AsyncClient) -> None:
    await client.post("/v1/notifications", json=note())
    await client.post("/v1/notifications", json=note(tenant="a.b"))
    await client.post("/v1/notifications/batch", json={"notifications": [note(), note()]})

    r = await client.get("/metrics")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    requests = "tidings_publisher_requests_total"
    assert metric(text, requests, route="/v1/notifications", outcome="published") == 1
    assert metric(text, requests, route="/v1/notifications", outcome="invalid_field") == 1
    assert metric(text, requests, route="/v1/notifications/batch", outcome="published") == 1
    assert metric(text, "tidings_publisher_notifications_total", outcome="published") == 3
    assert metric(text, "tidings_publisher_publish_seconds_count", mode="single") == 1
    assert metric(text, "tidings_publisher_publish_seconds_count", mode="batch") == 1
    assert metric(text, "tidings_publisher_nats_connected") == 1
    for name in (
        "tidings_publisher_outbox_messages",
        "tidings_publisher_outbox_bytes",
        "tidings_publisher_outbox_full_rejections_total",
        "tidings_publisher_outbox_drained_total",
    ):
        assert f"\n{name} 0.0\n" in text  # exported, and zero
