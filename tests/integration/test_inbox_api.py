"""The inbox REST API on SQLite and on a real PostgreSQL server: list, paging, filters, one item,
counts, marks, mark-all, preferences, erase; and every refusal with its precise code.

NATS is down throughout (no server at the configured address): the API answers regardless.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.inbox_api import ORIGIN, Seeder, bearer, inbox_api
from tidings.subjects import Audience, AudienceKind

ALICE = bearer()
BOB = bearer(user="bob")
ADMIN = bearer(user="root", roles=["admin"])
GLOBEX = bearer(tenant="globex")
ITEM_KEYS = {
    "seq", "id", "event", "room", "time", "title", "message", "severity", "data",
    "read", "seen", "archived",
}  # fmt: skip


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Seeder]]:
    async with inbox_api(database_url) as (client, process):
        yield client, Seeder(process.store)


def code_of(answer: httpx.Response) -> tuple[int, str, str | None]:
    error = answer.json()["error"]
    return answer.status_code, error["code"], error.get("field")


async def ids_listed(client: httpx.AsyncClient, headers: dict[str, str], **query: Any) -> list[str]:
    answer = await client.get("/v1/inbox/notifications", params=query, headers=headers)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


async def counts(client: httpx.AsyncClient, headers: dict[str, str] = ALICE) -> dict[str, Any]:
    answer = await client.get("/v1/inbox/counts", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_list_is_newest_first_and_pages_with_cursors_to_the_end(api: Any) -> None:
    client, seed = api
    stored = await seed.many(7)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        answer = await client.get("/v1/inbox/notifications", params=params, headers=ALICE)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == stored[::-1]
    assert pages == 3
    first = (await client.get("/v1/inbox/notifications", headers=ALICE)).json()["items"][0]
    assert set(first) == ITEM_KEYS
    assert first["room"] == "tenant"
    assert first["time"].endswith("Z")
    assert (first["read"], first["seen"], first["archived"]) == (False, False, False)
    assert first["data"] == {}


async def test_each_caller_lists_exactly_what_the_gateway_would_deliver(api: Any) -> None:
    client, seed = api
    tenant_wide = await seed.add()
    for_alice = await seed.add(audience=Audience(AudienceKind.USER, "alice"))
    for_bob = await seed.add(audience=Audience(AudienceKind.USER, "bob"))
    for_admins = await seed.add(audience=Audience(AudienceKind.ROLE, "admin"))
    berlin = await seed.add(audience=Audience(AudienceKind.ROOM, "site-berlin"))
    other_tenant = await seed.add(tenant="globex")
    broadcast = await seed.add(tenant=None, audience=Audience(AudienceKind.BROADCAST))
    assert await ids_listed(client, ALICE) == [broadcast, for_alice, tenant_wide]
    assert await ids_listed(client, BOB) == [broadcast, for_bob, tenant_wide]
    admin_berlin = bearer(roles=["admin"], rooms=["site-*"])
    assert await ids_listed(client, admin_berlin) == [
        broadcast, berlin, for_admins, for_alice, tenant_wide,
    ]  # fmt: skip
    assert await ids_listed(client, GLOBEX) == [broadcast, other_tenant]
    # Overlapping room patterns list a room's notification once.
    overlapping = bearer(rooms=["site-*", "site-berlin", "*"])
    assert await ids_listed(client, overlapping) == [broadcast, berlin, for_alice, tenant_wide]
    rooms = await client.get("/v1/inbox/notifications", headers=admin_berlin)
    assert [i["room"] for i in rooms.json()["items"]] == [
        "broadcast", "room:site-berlin", "role:admin", "user:alice", "tenant",
    ]  # fmt: skip


async def test_filters_select_by_domain_event_severity_room_time_and_literal_text(
    api: Any,
) -> None:
    client, seed = api
    old = datetime.now(UTC) - timedelta(days=2)
    a = await seed.add(event="incident.created", severity="warning", title="Pump 50% down")
    b = await seed.add(event="incident.resolved", severity="info", title="Pump_1 ok")
    c = await seed.add(event="billing.invoice", severity="error", message="it's overdue", time=old)
    d = await seed.add(
        audience=Audience(AudienceKind.USER, "alice"), event="note.added", title="x' OR '1'='1"
    )
    assert await ids_listed(client, ALICE, domain="incident") == [b, a]
    assert await ids_listed(client, ALICE, domain=["incident", "billing"]) == [c, b, a]
    assert await ids_listed(client, ALICE, event="incident.resolved") == [b]
    assert await ids_listed(client, ALICE, severity=["error", "warning"]) == [c, a]
    assert await ids_listed(client, ALICE, room="user:alice") == [d]
    assert await ids_listed(client, ALICE, room="tenant") == [c, b, a]
    assert await ids_listed(client, ALICE, until=(old + timedelta(hours=1)).isoformat()) == [c]
    since = (old + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert await ids_listed(client, ALICE, since=since) == [d, b, a]
    # Text is literal: % and _ are characters, quotes are characters, case does not matter.
    assert await ids_listed(client, ALICE, q="50%") == [a]
    assert await ids_listed(client, ALICE, q="%") == [a]
    assert await ids_listed(client, ALICE, q="_") == [b]
    assert await ids_listed(client, ALICE, q="pump") == [b, a]
    assert await ids_listed(client, ALICE, q="it's") == [c]
    assert await ids_listed(client, ALICE, q="' OR '1'='1") == [d]
    assert await ids_listed(client, ALICE, q="'; DROP TABLE notifications; --") == []
    assert len(await ids_listed(client, ALICE)) == 4  # the table is still there


async def test_one_item_and_no_existence_oracle(api: Any) -> None:
    client, seed = api
    mine = await seed.add(audience=Audience(AudienceKind.USER, "alice"))
    bobs = await seed.add(audience=Audience(AudienceKind.USER, "bob"))
    theirs = await seed.add(tenant="globex")
    answer = await client.get(f"/v1/inbox/notifications/{mine}", headers=ALICE)
    assert answer.status_code == 200
    assert answer.json()["id"] == mine and answer.json()["room"] == "user:alice"
    refusals = [
        await client.get(f"/v1/inbox/notifications/{ident}", headers=ALICE)
        for ident in (bobs, theirs, "01NOTSTOREDATALL", "x' OR 1=1 --")
    ]
    assert [code_of(r) for r in refusals] == [(404, "not_found", "id")] * 4
    assert len({r.text for r in refusals}) == 1  # the same body: nothing tells them apart


async def test_marks_change_state_and_counts(api: Any) -> None:
    client, seed = api
    info, warning = await seed.add(severity="info"), await seed.add(severity="warning")
    critical = await seed.add(severity="critical")
    before = await counts(client)
    assert before == {
        "total": 3,
        "unread": 3,
        "unseen": 3,
        "unread_by_severity": {"info": 1, "success": 0, "warning": 1, "error": 0, "critical": 1},
        "seq": 3,
    }
    answer = await client.post(
        "/v1/inbox/state", json={"ids": [warning, critical], "read": True}, headers=ALICE
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["changed"] == [warning, critical]
    assert body["counts"]["unread"] == 1 and body["counts"]["unseen"] == 3
    assert body["counts"] == await counts(client)
    again = await client.post(
        "/v1/inbox/state", json={"ids": [warning], "read": True}, headers=ALICE
    )
    assert again.json()["changed"] == []
    unread = await client.post(
        "/v1/inbox/state", json={"ids": [warning], "read": False, "seen": True}, headers=ALICE
    )
    assert unread.json()["changed"] == [warning]
    assert await ids_listed(client, ALICE, status="unread") == [warning, info]
    assert await ids_listed(client, ALICE, status="read") == [critical]
    assert await ids_listed(client, ALICE, status="seen") == [warning]
    assert await ids_listed(client, ALICE, status="unseen") == [critical, info]
    archived = await client.post(
        "/v1/inbox/state", json={"ids": [info], "archived": True}, headers=ALICE
    )
    assert archived.json()["counts"]["total"] == 2
    assert await ids_listed(client, ALICE) == [critical, warning]
    assert await ids_listed(client, ALICE, status="archived") == [info]
    # Bob's bell is his own.
    assert (await counts(client, BOB))["unread"] == 3


async def test_counts_say_up_to_which_stream_sequence_they_include(api: Any) -> None:
    """A client adds to the counts what it received live above their ``seq`` (the writer may
    not have stored it yet): ``seq`` is the highest stored in the stream's newest epoch, over
    every tenant, so nothing is counted twice and nothing stored is left out."""
    client, seed = api
    assert (await counts(client))["seq"] == 0  # nothing stored yet
    await seed.add()
    await seed.add(tenant="globex")  # another tenant's row moves the mark too: seq 2
    after = await counts(client)
    assert (after["unread"], after["seq"]) == (1, 2)
    seed.epoch, seed.seq = "recreated", 0  # the stream was recreated: sequences restart
    await seed.add()
    again = await counts(client)
    assert (again["unread"], again["seq"]) == (2, 1)
    marked = await client.post("/v1/inbox/mark-all", json={"read": True}, headers=ALICE)
    assert marked.json()["counts"]["seq"] == 1  # every answer that carries counts says it


async def test_a_mark_naming_an_invisible_id_changes_nothing(api: Any) -> None:
    client, seed = api
    mine = await seed.add()
    theirs = await seed.add(tenant="globex")
    bobs = await seed.add(audience=Audience(AudienceKind.USER, "bob"))
    for other in (theirs, bobs):
        answer = await client.post(
            "/v1/inbox/state", json={"ids": [mine, other], "read": True}, headers=ALICE
        )
        assert code_of(answer) == (404, "not_found", "ids[1]")
    assert (await counts(client))["unread"] == 1  # mine was not marked either
    assert (await counts(client, GLOBEX))["unread"] == 1


async def test_mark_all_moves_the_mark_and_filters_select(api: Any) -> None:
    client, seed = api
    first = await seed.add(event="billing.invoice")
    second = await seed.add()
    await client.post("/v1/inbox/state", json={"ids": [first], "read": False}, headers=ALICE)
    answer = await client.post("/v1/inbox/mark-all", json={"read": True}, headers=ALICE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"]["unread"] == 0
    assert answer.json()["counts"]["unseen"] == 2
    newer = await seed.add()
    assert await ids_listed(client, ALICE, status="unread") == [newer]
    # By filter: only the billing one is archived; seen by filter too.
    by_filter = await client.post(
        "/v1/inbox/mark-all",
        json={"archived": True, "seen": True, "filter": {"domain": ["billing"]}},
        headers=ALICE,
    )
    assert by_filter.status_code == 200, by_filter.text
    assert await ids_listed(client, ALICE) == [newer, second]
    assert await ids_listed(client, ALICE, status="archived") == [first]
    assert by_filter.json()["counts"] == {
        "total": 2,
        "unread": 1,
        "unseen": 2,
        "unread_by_severity": {"info": 1, "success": 0, "warning": 0, "error": 0, "critical": 0},
        "seq": 3,
    }
    assert (await counts(client, BOB))["unread"] == 3  # bob's marks did not move


async def test_muted_domains_leave_the_list_and_counts_except_critical(api: Any) -> None:
    client, seed = api
    await seed.add(event="billing.invoice")
    critical = await seed.add(event="billing.failed", severity="critical")
    incident = await seed.add()
    answer = await client.put(
        "/v1/inbox/preferences", json={"domains": {"billing": {"in_app": False}}}, headers=ALICE
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["effective"]["billing"]["in_app"] is False
    assert await ids_listed(client, ALICE) == [incident, critical]
    assert (await counts(client))["total"] == 2
    assert (await counts(client, BOB))["total"] == 3
    got = await client.get("/v1/inbox/preferences", headers=ALICE)
    assert got.json()["overrides"] == {"billing": {"in_app": False}}
    assert got.json()["channels"] == ["in_app", "email", "webhook", "push"]


async def test_tenant_defaults_and_erase_need_the_admin_role(api: Any) -> None:
    client, seed = api
    ident = await seed.add()
    body = {"domains": {"incident": {"in_app": False}}}
    refused = await client.put("/v1/inbox/preferences/defaults", json=body, headers=ALICE)
    assert code_of(refused) == (403, "forbidden", "roles")
    erase = await client.delete("/v1/inbox/users/bob", headers=ALICE)
    assert code_of(erase) == (403, "forbidden", "roles")
    assert (await client.put("/v1/inbox/preferences/defaults", json=body, headers=ADMIN)).is_success
    defaults = await client.get("/v1/inbox/preferences/defaults", headers=ALICE)
    assert defaults.json()["defaults"] == {"incident": {"in_app": False}}
    assert (await counts(client, BOB))["total"] == 0  # muted by the tenant's default
    # Erase bob in acme: his state and overrides go; globex's bob is untouched.
    globex_bob = bearer(tenant="globex", user="bob")
    other = await seed.add(tenant="globex")
    for headers, ids in ((BOB, [ident]), (globex_bob, [other])):
        marked = await client.post(
            "/v1/inbox/state", json={"ids": ids, "read": True}, headers=headers
        )
        assert marked.status_code == 200
    await client.put(
        "/v1/inbox/preferences", json={"domains": {"incident": {"in_app": True}}}, headers=BOB
    )
    assert (await counts(client, BOB))["unread"] == 0
    erased = await client.delete("/v1/inbox/users/bob", headers=ADMIN)
    assert erased.status_code == 204
    assert (await client.get("/v1/inbox/preferences", headers=BOB)).json()["overrides"] == {}
    await client.put(
        "/v1/inbox/preferences/defaults",
        json={"domains": {"incident": {"in_app": None}}},
        headers=ADMIN,
    )
    assert (await counts(client, BOB))["unread"] == 1  # his read mark went with the erase
    assert (await counts(client, globex_bob))["unread"] == 0
    bad_user = await client.delete("/v1/inbox/users/bob%20smith", headers=ADMIN)
    assert code_of(bad_user) == (400, "invalid_field", "user")


async def test_hostile_requests_are_refused_precisely(api: Any) -> None:
    client, seed = api
    ident = await seed.add()
    post = client.post

    async def state(body: Any, **kw: Any) -> httpx.Response:
        return await post("/v1/inbox/state", json=body, headers=ALICE, **kw)

    ten_thousand = [f"id-{i:05d}-{'x' * 20}" for i in range(10_000)]
    assert code_of(await state({"ids": ten_thousand, "read": True})) == (413, "too_large", "body")
    short = [f"{i}" for i in range(1001)]
    assert code_of(await state({"ids": short, "read": True})) == (413, "too_large", "ids")
    assert code_of(await state({"ids": [ident], "read": True, "raed": True})) == (
        400, "invalid_field", "raed",
    )  # fmt: skip
    assert code_of(await state({"ids": [ident]})) == (400, "missing_field", "read")
    assert code_of(await state({"ids": [ident], "read": "yes"})) == (400, "invalid_field", "read")
    assert code_of(await state({"ids": [], "read": True})) == (400, "invalid_field", "ids")
    assert code_of(await state({"ids": ["a b"], "read": True})) == (400, "invalid_field", "ids[0]")
    assert code_of(await state([ident])) == (400, "malformed", "body")
    not_json = await post(
        "/v1/inbox/state", content=b"{", headers={**ALICE, "Content-Type": "application/json"}
    )
    assert code_of(not_json) == (400, "malformed", "body")
    form = await post("/v1/inbox/state", data={"ids": ident}, headers=ALICE)
    assert code_of(form) == (415, "unsupported_media_type", "Content-Type")
    mark_all = await post("/v1/inbox/mark-all", json={"read": False}, headers=ALICE)
    assert code_of(mark_all) == (400, "invalid_field", "read")
    paged = await post(
        "/v1/inbox/mark-all", json={"read": True, "filter": {"cursor": "x"}}, headers=ALICE
    )
    assert code_of(paged) == (400, "invalid_field", "filter.cursor")
    wide = await post(
        "/v1/inbox/mark-all",
        json={"read": True, "filter": {"domain": [f"d{i}" for i in range(21)]}},
        headers=ALICE,
    )
    assert code_of(wide) == (413, "too_large", "filter.domain")
    prefs = await client.put(
        "/v1/inbox/preferences", json={"domains": {}, "mute": ["x"]}, headers=ALICE
    )
    assert code_of(prefs) == (400, "invalid_field", "mute")

    async def listing(**params: Any) -> httpx.Response:
        return await client.get("/v1/inbox/notifications", params=params, headers=ALICE)

    assert code_of(await listing(domain=[f"d{i}" for i in range(21)])) == (
        413, "too_large", "domain",
    )  # fmt: skip
    assert code_of(await listing(q="x" * 201)) == (413, "too_large", "q")
    assert code_of(await listing(domain="billing' OR 1=1")) == (400, "invalid_field", "domain")
    assert code_of(await listing(room="room:a;DROP")) == (400, "invalid_field", "room")
    assert code_of(await listing(severity="fatal")) == (400, "invalid_field", "severity")
    assert code_of(await listing(status="deleted")) == (400, "invalid_field", "status")
    assert code_of(await listing(since="yesterday")) == (400, "invalid_field", "since")
    assert code_of(await listing(since="2026-01-01T00:00:00")) == (400, "invalid_field", "since")
    assert code_of(await listing(limit=101)) == (400, "invalid_field", "limit")
    assert code_of(await listing(limit=0)) == (400, "invalid_field", "limit")
    assert code_of(await listing(sort="id")) == (400, "invalid_field", "sort")
    assert code_of(await listing(status=["read", "unread"])) == (400, "invalid_field", "status")


async def test_forged_and_reused_cursors_are_refused(api: Any) -> None:
    client, seed = api
    await seed.many(3)
    page = await client.get("/v1/inbox/notifications", params={"limit": 1}, headers=ALICE)
    cursor = page.json()["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    version, pk, check = raw.split(".")
    moved = base64.urlsafe_b64encode(f"{version}.{int(pk) + 1000}.{check}".encode()).decode()
    for forged in ("garbage!!", "AAAA", moved, cursor[:-2], "x" * 500):
        answer = await client.get(
            "/v1/inbox/notifications", params={"limit": 1, "cursor": forged}, headers=ALICE
        )
        assert code_of(answer) == (400, "invalid_field", "cursor"), forged
    other_filter = await client.get(
        "/v1/inbox/notifications", params={"cursor": cursor, "status": "unread"}, headers=ALICE
    )
    assert code_of(other_filter) == (400, "invalid_field", "cursor")
    other_user = await client.get("/v1/inbox/notifications", params={"cursor": cursor}, headers=BOB)
    assert code_of(other_user) == (400, "invalid_field", "cursor")
    ok = await client.get(
        "/v1/inbox/notifications", params={"limit": 1, "cursor": cursor}, headers=ALICE
    )
    assert ok.status_code == 200 and len(ok.json()["items"]) == 1


async def test_tokens_are_required_in_the_header_only(api: Any) -> None:
    client, _ = api
    missing = await client.get("/v1/inbox/counts")
    assert code_of(missing) == (401, "token_missing", "Authorization")
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    token = ALICE["Authorization"].split()[1]
    in_url = await client.get("/v1/inbox/counts", params={"access_token": token}, headers=ALICE)
    assert code_of(in_url) == (400, "token_in_url", "query")
    forged = await client.get("/v1/inbox/counts", headers={"Authorization": f"Bearer {token}x"})
    assert code_of(forged)[:2] == (401, "token_invalid_signature")
    assert missing.headers["Cache-Control"] == "no-store"


async def test_unknown_routes_methods_and_cors(api: Any) -> None:
    client, _ = api
    assert code_of(await client.get("/v1/inbox/nope", headers=ALICE))[:2] == (404, "not_found")
    assert code_of(await client.delete("/v1/inbox/counts", headers=ALICE))[:2] == (
        405, "method_not_allowed",
    )  # fmt: skip
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    allowed = await client.options("/v1/inbox/state", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = await client.options(
        "/v1/inbox/state", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in refused.headers
    simple = await client.get("/v1/inbox/counts", headers={**ALICE, "Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_probes_and_metrics_answer_while_nats_is_down(database_url: str) -> None:
    async with inbox_api(database_url) as (client, process):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "database": True, "nats": "connecting"}
        ident = await Seeder(process.store).add()
        marked = await client.post(
            "/v1/inbox/state", json={"ids": [ident], "read": True}, headers=ALICE
        )
        assert marked.status_code == 200
        metrics = (await client.get("/metrics")).text
        assert "tidings_inbox_api_changed_dropped_total 1.0" in metrics
        assert 'tidings_inbox_api_requests_total{outcome="ok",route="state"} 1.0' in metrics
