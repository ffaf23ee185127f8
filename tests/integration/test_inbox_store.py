"""The inbox store on SQLite and on a real PostgreSQL server: migrations, idempotent writes,
and visibility that agrees with the gateway's rule (``Claims.allows``) row for row."""

from __future__ import annotations

import re
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, or_, select

from tests.support.inbox import row, sync_store
from tests.support.visibility_cases import CASES
from tidings.auth.claims import Claims
from tidings.errors import ConfigError
from tidings.inbox import migrate
from tidings.inbox.schema import metadata, notifications
from tidings.inbox.store import Store
from tidings.inbox.store import database_url as async_url
from tidings.inbox.visibility import allows, visible_branches
from tidings.subjects import BROADCAST_AUDIENCE, TENANT_AUDIENCE, Audience, AudienceKind


async def test_a_new_database_is_refused_until_migrated(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        with pytest.raises(ConfigError, match=r"has no inbox schema.*tidings inbox migrate"):
            await migrate.check_current(store.engine)
        assert await migrate.upgrade(store.engine) == (None, migrate.head())
        assert await migrate.upgrade(store.engine) == (migrate.head(), migrate.head())
        await migrate.check_current(store.engine)
    finally:
        await store.close()


async def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)

        def differences(conn: Any) -> list[Any]:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

        async with store.engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await store.close()


async def test_writes_are_idempotent_on_id_and_sequence(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)
        first = [row(seq, "acme", TENANT_AUDIENCE) for seq in (1, 2, 3)]
        assert (await store.write(first)).stored == 3
        again = await store.write(first)  # a redelivered batch
        assert (again.stored, again.duplicates) == (0, 3)
        republished = row(4, "acme", TENANT_AUDIENCE, ident=first[0]["id"])  # same id, new seq
        same_seq = row(2, "acme", TENANT_AUDIENCE)  # another id at a stored position
        fresh = row(5, "acme", TENANT_AUDIENCE)
        result = await store.write([republished, same_seq, fresh])
        assert (result.stored, result.duplicates) == (1, 2)
        assert await store.count() == 4
    finally:
        await store.close()


def test_urls_get_the_async_drivers_and_bad_ones_are_refused() -> None:
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    for bad, reason in (
        ("mysql://u@h/db", "not supported"),
        ("postgresql+psycopg2://u@h/db", "use the driver postgresql+asyncpg"),
        ("sqlite://", "in-memory"),
        ("::", "not a database URL"),
    ):
        with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
            async_url(bad)
        assert caught.value.field == "TIDINGS_INBOX_DATABASE_URL"


# --- visibility: the query and Claims.allows agree -----------------------------------------

TENANTS = st.sampled_from(["t1", "t2"])
USERS = st.sampled_from(["u1", "u2"])
ROLES = st.frozensets(st.sampled_from(["r1", "r2", "R1"]), max_size=3)
# Few characters, so names and patterns collide often; `_` and case catch LIKE's traps.
NAMES = st.text(alphabet="aAb_-", min_size=1, max_size=4)
PATTERNS = st.lists(st.text(alphabet="aAb_-*", min_size=1, max_size=4), max_size=3)
CLAIMS = st.builds(Claims, tenant=TENANTS, user=USERS, roles=ROLES, room_patterns=PATTERNS)
AUDIENCES = st.one_of(
    st.just(TENANT_AUDIENCE),
    st.just(BROADCAST_AUDIENCE),
    st.builds(Audience, st.just(AudienceKind.USER), USERS),
    st.builds(Audience, st.just(AudienceKind.ROLE), st.sampled_from(["r1", "r2", "R1"])),
    st.builds(Audience, st.just(AudienceKind.ROOM), NAMES),
)
STORED = st.lists(st.tuples(TENANTS, AUDIENCES), max_size=30)


@pytest.fixture
def visibility_store(database_url: str) -> Any:
    with sync_store(database_url) as handle:
        yield handle


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(claims=CLAIMS, stored=STORED)
@example(
    claims=Claims("t1", "u1", room_patterns=("site-*",)),
    stored=[
        ("t1", Audience(AudienceKind.ROOM, n)) for n in ("site-1", "site_1", "Site-1", "site-")
    ],
)
@example(
    claims=Claims("t1", "u1", room_patterns=("a_*",)),
    stored=[("t1", Audience(AudienceKind.ROOM, n)) for n in ("a_b", "abb", "A_b", "a_")],
)
@example(
    claims=Claims("t1", "u1", room_patterns=("a_b",)),
    stored=[("t1", Audience(AudienceKind.ROOM, n)) for n in ("a_b", "aXb", "a-b", "A_b")],
)
def test_the_query_returns_exactly_what_claims_allow(
    visibility_store: Any, claims: Claims, stored: list[tuple[str, Audience]]
) -> None:
    runner, store = visibility_store
    rows = [
        row(seq, None if a.kind is AudienceKind.BROADCAST else tenant, a)
        for seq, (tenant, a) in enumerate(stored, 1)
    ]

    async def visible() -> tuple[set[str], set[str]]:
        async with store.engine.begin() as conn:
            await conn.execute(delete(notifications))
        await store.write(rows)
        # The list's page reads the same rule in parts (one per audience): their OR too.
        parts = or_(*visible_branches(claims, store.dialect))
        async with store.engine.connect() as conn:
            by_parts = set((await conn.scalars(select(notifications.c.id).where(parts))).all())
        return set(await store.visible_ids(claims)), by_parts

    expected = {
        r["id"]
        for r, (tenant, a) in zip(rows, stored, strict=True)
        if allows(claims, "" if a.kind is AudienceKind.BROADCAST else tenant, a)
    }
    assert runner.run(visible()) == (expected, expected)


async def test_the_shared_table_of_who_receives_what(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)
        rows = [row(seq, case.tenant or None, case.audience) for seq, case in enumerate(CASES, 1)]
        await store.write(rows)
        wrong = []
        for case, stored in zip(CASES, rows, strict=True):
            seen = stored["id"] in await store.visible_ids(case.claims)
            if seen != case.delivered or allows(case.claims, case.tenant, case.audience) != seen:
                wrong.append(case.name)
        assert wrong == []
    finally:
        await store.close()
