"""The inbox API's pool without a pre-ping (issue 11, counts p99): a pooled connection that
died (the server restarted, a proxy closed it) costs one retry, not an error; a database that
stays away is still ``unavailable``. Real PostgreSQL: SQLite has no connections to lose."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.inbox_api import Seeder, bearer, inbox_api
from tests.support.postgres import PostgresServer
from tidings.auth.claims import Claims

ALICE = bearer()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


def kill_connections(server: PostgresServer, url: str) -> None:
    database = url.rsplit("/", 1)[1]  # the fixture's t_<hex>
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
    server.psql(query % database + " AND pid <> pg_backend_pid()")


async def test_a_dead_pooled_connection_is_retried_once(
    postgres_server: PostgresServer, pg_url: str
) -> None:
    async with inbox_api(pg_url) as (client, process):
        assert process.store.engine.pool._pre_ping is False  # type: ignore[attr-defined]
        seed = Seeder(process.store)
        ident = await seed.add()
        first = await client.get("/v1/inbox/counts", headers=ALICE)
        assert first.json()["unread"] == 1
        for request in (
            lambda: client.get("/v1/inbox/counts", headers=ALICE),
            lambda: client.post("/v1/inbox/state", json={"ids": [ident], "read": True},
                                headers=ALICE),
            lambda: client.get("/v1/inbox/notifications", headers=ALICE),
        ):  # fmt: skip
            kill_connections(postgres_server, pg_url)  # every pooled connection is dead now
            answer = await request()
            assert answer.status_code == 200, answer.text
        assert (await client.get("/v1/inbox/counts", headers=ALICE)).json()["unread"] == 0
        kill_connections(postgres_server, pg_url)
        bell = await process.responder.bell(Claims("acme", "alice"))  # a gateway's hello
        assert bell["counts"]["total"] == 1
