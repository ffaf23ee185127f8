"""The inbox API's admin routes (issue 11): a tenant's retention read and set over REST (and
applied by the writer's retention job), and the data-subject erase, which also removes the
notifications addressed to that one user unless asked to keep them. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.support.inbox_api import Seeder, bearer, inbox_api
from tidings.inbox.api_app import InboxApiProcess
from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.retention import RetentionJob
from tidings.inbox.schema import notifications
from tidings.settings import InboxSettings
from tidings.subjects import Audience, AudienceKind

ALICE = bearer()
BOB = bearer(user="bob")
ADMIN = bearer(user="root", roles=["admin"])
GLOBEX_ADMIN = bearer(tenant="globex", user="root", roles=["admin"])
API = "/v1/inbox"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, InboxApiProcess]]:
    # The API's own view of the global limits: 90 days, no item cap (the defaults).
    async with inbox_api(database_url) as (client, process):
        yield client, process


def code_of(answer: httpx.Response) -> tuple[int, str, str | None]:
    error = answer.json()["error"]
    return answer.status_code, error["code"], error.get("field")


def user(name: str) -> Audience:
    return Audience(AudienceKind.USER, name)


async def test_retention_is_read_and_set_by_the_admin_role_only(api: Any) -> None:
    client, _ = api
    got = await client.get(f"{API}/retention", headers=ADMIN)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "max_age_days": None,
        "max_items": None,
        "effective": {"max_age_days": 90, "max_items": 0},
    }
    for method in ("GET", "PUT"):
        refused = await client.request(
            method, f"{API}/retention", json={"max_items": 5}, headers=ALICE
        )
        assert code_of(refused) == (403, "forbidden", "roles")
    put = await client.put(f"{API}/retention", json={"max_items": 500}, headers=ADMIN)
    assert put.json() == {
        "max_age_days": None,
        "max_items": 500,
        "effective": {"max_age_days": 90, "max_items": 500},
    }
    # A key left out stays; null goes back to the global value; 0 is "no limit".
    put = await client.put(f"{API}/retention", json={"max_age_days": 0}, headers=ADMIN)
    assert put.json()["effective"] == {"max_age_days": 0, "max_items": 500}
    assert (await client.get(f"{API}/retention", headers=ADMIN)).json() == put.json()
    other = await client.get(f"{API}/retention", headers=GLOBEX_ADMIN)  # another tenant's own
    assert other.json()["max_items"] is None
    put = await client.put(
        f"{API}/retention", json={"max_age_days": None, "max_items": None}, headers=ADMIN
    )
    assert put.json() == {
        "max_age_days": None,
        "max_items": None,
        "effective": {"max_age_days": 90, "max_items": 0},
    }


BAD_RETENTION: list[tuple[Any, tuple[int, str, str | None]]] = [
    ({}, (400, "missing_field", "max_age_days")),
    ({"max_age_days": -1}, (400, "invalid_field", "max_age_days")),
    ({"max_age_days": 36_501}, (400, "invalid_field", "max_age_days")),
    ({"max_items": 1_000_001}, (400, "invalid_field", "max_items")),
    ({"max_items": "10"}, (400, "invalid_field", "max_items")),
    ({"max_items": 1.5}, (400, "invalid_field", "max_items")),
    ({"max_items": True}, (400, "invalid_field", "max_items")),
    ({"max_items": 10, "max_age": 3}, (400, "invalid_field", "max_age")),
    ([1], (400, "malformed", "body")),
]


async def test_bad_retention_is_refused_naming_the_field(api: Any) -> None:
    client, _ = api
    for body, expected in BAD_RETENTION:
        answer = await client.put(f"{API}/retention", json=body, headers=ADMIN)
        assert code_of(answer) == expected, body
    text = await client.put(
        f"{API}/retention", content=b"max_items=3", headers={**ADMIN, "content-type": "text/plain"}
    )
    assert code_of(text) == (415, "unsupported_media_type", "Content-Type")
    query = await client.get(f"{API}/retention", params={"tenant": "globex"}, headers=ADMIN)
    assert code_of(query) == (400, "invalid_field", "query")
    assert (await client.get(f"{API}/retention", headers=ADMIN)).json()["max_items"] is None


async def test_the_writers_retention_job_applies_what_the_admin_set(api: Any) -> None:
    client, process = api
    seed = Seeder(process.store)
    acme = [await seed.add() for _ in range(5)]
    globex = [await seed.add(tenant="globex") for _ in range(5)]
    old = await seed.add(title="old")  # stored 10 days ago
    async with process.store.engine.begin() as conn:
        await conn.execute(
            update(notifications)
            .where(notifications.c.id == old)
            .values(stored_at=datetime.now(UTC) - timedelta(days=10))
        )
    body = {"max_items": 2, "max_age_days": 7}
    assert (await client.put(f"{API}/retention", json=body, headers=ADMIN)).status_code == 200
    # The writer process's job, on the same database, with the global defaults.
    job = RetentionJob(process.store, InboxMetrics(), InboxSettings(retention_pause=0))
    result = await job.run_once()
    assert result is not None and (result.age, result.items) == (1, 3)
    async with process.store.engine.connect() as conn:
        kept = set((await conn.scalars(select(notifications.c.id))).all())
    assert kept == {*acme[-2:], *globex}  # acme's two newest; globex follows the global limits


async def test_erase_removes_the_notifications_addressed_to_the_user_unless_kept(
    api: Any,
) -> None:
    client, process = api
    seed = Seeder(process.store)
    shared = await seed.add()  # tenant-wide: stays
    bobs = [await seed.add(audience=user("bob")) for _ in range(2)]
    alices = await seed.add(audience=user("alice"))
    globex_bob = await seed.add(tenant="globex", audience=user("bob"))
    marked = await client.post(f"{API}/state", json={"ids": bobs, "read": True}, headers=BOB)
    assert marked.status_code == 200
    assert (await client.get(f"{API}/counts", headers=BOB)).json()["total"] == 3
    bad = await client.delete(f"{API}/users/bob", params={"notifications": "no"}, headers=ADMIN)
    assert code_of(bad) == (400, "invalid_field", "notifications")
    bad = await client.delete(f"{API}/users/bob", params={"all": "1"}, headers=ADMIN)
    assert code_of(bad) == (400, "invalid_field", "all")
    erased = await client.delete(f"{API}/users/bob", headers=ADMIN)
    assert erased.status_code == 204
    async with process.store.engine.connect() as conn:
        left = set((await conn.scalars(select(notifications.c.id))).all())
    assert left == {shared, alices, globex_bob}  # bob's own, in acme only
    listed = await client.get(f"{API}/notifications", headers=BOB)
    assert [i["id"] for i in listed.json()["items"]] == [shared]
    # Kept on request: the state goes, the notifications stay.
    kept = await seed.add(audience=user("bob"))
    erased = await client.delete(
        f"{API}/users/bob", params={"notifications": "keep"}, headers=ADMIN
    )
    assert erased.status_code == 204
    listed = await client.get(f"{API}/notifications", headers=BOB)
    assert [i["id"] for i in listed.json()["items"]] == [kept, shared]
