"""The inbox writer against a real nats-server, on SQLite and a real PostgreSQL: every
notification stored exactly once through catch-up, kills, outages and two writers at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import select, text

from tests.support.inbox import (
    POLICY,
    count,
    inbox_settings,
    publish_requests,
    request,
    running,
    stored_ids,
)
from tests.support.postgres import PostgresServer
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification
from tidings.inbox import migrate
from tidings.inbox.schema import dead_letters
from tidings.inbox.store import Store
from tidings.ports import free_port
from tidings.publishing import prepare
from tidings.settings import NatsSettings


async def test_each_notification_is_stored_once_with_catch_up_and_lag(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    audiences = [None, {"user": "alice"}, {"role": "ops"}, {"room": "site-1"}, {"broadcast": True}]
    before = await publish_requests(js, [request(i, audience=audiences[i % 5]) for i in range(300)])
    async with running(inbox_settings(nats_settings, database_url)) as inbox:
        after = await publish_requests(js, [request(i) for i in range(300, 500)])

        async def all_stored() -> bool:
            return await count(database_url) == 500

        await until(all_stored, timeout=30, what="500 notifications in the inbox")
        await until(lambda: inbox.metrics.last_sequence._value.get() == 500, what="last seq")
        page = inbox.metrics.render().decode()
    ids = await stored_ids(database_url)
    assert sorted(ids) == sorted(before + after)
    assert metric(page, "tidings_inbox_stored_total") == 500
    assert metric(page, "tidings_inbox_last_stored_sequence") == 500
    assert metric(page, "tidings_inbox_consumer_pending") == 0
    assert await count(database_url, dead_letters) == 0


async def test_two_writers_share_the_work_without_duplicates(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    settings = inbox_settings(nats_settings, database_url, batch_size=20)
    async with running(settings) as one, running(settings) as two:
        ids = await publish_requests(js, [request(i) for i in range(1000)])

        async def all_stored() -> bool:
            return await count(database_url) == 1000

        await until(all_stored, timeout=60, what="1000 notifications in the inbox")
        stored = [w.metrics.stored._value.get() for w in (one, two)]
    assert sorted(await stored_ids(database_url)) == sorted(ids)
    assert sum(stored) == 1000  # each row inserted by exactly one of them


async def test_a_malformed_message_is_counted_and_kept_and_the_writer_goes_on(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    async with running(inbox_settings(nats_settings, database_url)) as inbox:
        await js.publish("tenant.acme.incident.created", b"\xffnot an envelope", stream="TIDINGS")
        foreign = prepare(request(0), POLICY)  # acme's envelope under another tenant
        await js.publish("tenant.evil.incident.created", foreign.payload, stream="TIDINGS")
        ids = await publish_requests(js, [request(i) for i in range(10)])

        async def settled() -> bool:
            return await count(database_url) == 10 and await count(database_url, dead_letters) == 2

        await until(settled, timeout=20, what="10 stored and 2 dead letters")
        page = inbox.metrics.render().decode()
        assert inbox.writer.ready
    assert sorted(await stored_ids(database_url)) == sorted(ids)
    assert metric(page, "tidings_inbox_dead_total", reason="undecodable") == 1
    assert metric(page, "tidings_inbox_dead_total", reason="subject_mismatch") == 1
    assert Notification.from_bytes(foreign.payload).id not in await stored_ids(database_url)


class WriterProcess:
    """``python -m tidings inbox writer`` as a child process, configured by TIDINGS_* only."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}, **env}
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings", "inbox", "writer"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None


@pytest.mark.slow
async def test_a_writer_killed_mid_batch_resumes_and_stores_each_once(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "TIDINGS_NATS_URLS": nats_settings.urls[0],
        "TIDINGS_INBOX_DATABASE_URL": database_url,
        "TIDINGS_INBOX_PORT": str(port),
        "TIDINGS_INBOX_BATCH_SIZE": "25",
        "TIDINGS_INBOX_ACK_WAIT": "1",
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    writer = WriterProcess(env, tmp_path / "writer.log")
    migrated = subprocess.run(
        [sys.executable, "-m", "tidings", "inbox", "migrate"],
        env=writer.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated: empty → {migrate.head()}" in migrated.stderr
    total = 5000
    seed = random.randrange(1 << 32)
    kills = sorted(random.Random(seed).sample(range(1, 3 * total // 4), 3))

    async def keep_publishing() -> list[str]:
        # 100 at a time, paced, so the kills land while notifications are still arriving.
        ids: list[str] = []
        for start in range(0, total, 100):
            ids += await publish_requests(js, [request(i) for i in range(start, start + 100)])
            await asyncio.sleep(0.05)
        return ids

    publishing = asyncio.ensure_future(keep_publishing())
    try:
        for threshold in kills:  # SIGKILL at three random points of the run
            writer.start()

            async def past(n: int = threshold) -> bool:
                return await count(database_url) >= n

            await until(past, timeout=60, what=f"{threshold} stored before a kill (seed {seed})")
            writer.kill()
        writer.start()
        ids = await publishing

        async def all_stored() -> bool:
            return await count(database_url) == total

        await until(all_stored, timeout=60, what=f"{total} stored after the restarts")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def caught_up() -> bool:
                page = (await http.get("/metrics")).text
                return metric(page, "tidings_inbox_last_stored_sequence") == total

            await until(caught_up, timeout=20, what="/metrics to show the last sequence")
            page = (await http.get("/metrics")).text
            assert metric(page, "tidings_inbox_consumer_pending") == 0
            assert (await http.get("/readyz")).json()["ready"] is True
        assert writer.stop() == 0  # SIGTERM: a clean stop
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await publishing
        writer.stop()
    stored = await stored_ids(database_url)
    assert len(stored) == len(set(stored)) == total
    assert set(stored) == set(ids)


@pytest.mark.slow
async def test_a_database_outage_loses_nothing(
    js: JetStreamContext,
    nats_settings: NatsSettings,
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """PostgreSQL stops mid-run while notifications keep coming; once it is back, each is
    stored once (the writer retried, acked nothing it had not committed)."""
    name = "outage"
    postgres_server.create_database(name)
    url = postgres_server.url(name)
    try:
        async with running(inbox_settings(nats_settings, url)) as inbox:
            first = await publish_requests(js, [request(i) for i in range(200)])

            async def first_stored() -> bool:
                return await count(url) == 200

            await until(first_stored, timeout=30, what="the first 200 stored")
            postgres_server.stop()
            during = await publish_requests(js, [request(i) for i in range(200, 700)])
            await until(  # it met the outage and retried, holding the batch unacked
                lambda: inbox.metrics.store_errors._value.get() >= 2,
                timeout=20,
                what="the writer to retry during the outage",
            )
            # The lag shows on /metrics while the database is away.
            await until(lambda: inbox.metrics.pending._value.get() > 0, what="the lag to show")
            postgres_server.start()

            async def all_stored() -> bool:
                return await count(url) == 700

            await until(all_stored, timeout=60, what="700 stored after the outage")
        stored = await stored_ids(url)
        assert len(stored) == len(set(stored)) == 700
        assert set(stored) == set(first + during)
    finally:
        if not (postgres_server.data / "postmaster.pid").exists():
            postgres_server.start()
        postgres_server.drop_database(name)


def test_the_writer_refuses_a_database_without_its_schema(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "TIDINGS_INBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
        "TIDINGS_INBOX_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "inbox", "writer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "error: TIDINGS_INBOX_DATABASE_URL: the inbox database has no inbox schema" in (
        done.stderr
    )
    assert "tidings inbox migrate" in done.stderr
    assert "Traceback" not in done.stderr


REFUSE = {  # a real refusal by the database: a trigger rejecting one title
    "sqlite": [
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON notifications"
        " WHEN NEW.title = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN"
        " IF NEW.title = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF;"
        " RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON notifications"
        " FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ],
}


async def test_a_row_the_database_refuses_becomes_a_dead_letter_and_the_rest_is_stored(
    js: JetStreamContext, nats_settings: NatsSettings, database_url: str
) -> None:
    store = Store.open(database_url)
    try:
        await migrate.upgrade(store.engine)
        async with store.engine.begin() as conn:
            for statement in REFUSE[store.dialect]:
                await conn.execute(text(statement))
    finally:
        await store.close()
    bodies = [request(i) for i in range(20)]
    bodies[7]["title"] = "poison"
    async with running(inbox_settings(nats_settings, database_url)) as inbox:
        ids = await publish_requests(js, bodies)

        async def settled() -> bool:
            return await count(database_url) == 19 and await count(database_url, dead_letters) == 1

        await until(settled, timeout=30, what="19 stored and the refused one kept aside")
        page = inbox.metrics.render().decode()
        assert inbox.writer.ready
    assert sorted(await stored_ids(database_url)) == sorted(ids[:7] + ids[8:])
    assert metric(page, "tidings_inbox_dead_total", reason="refused") == 1
    assert metric(page, "tidings_inbox_store_errors_total") >= 3  # retried before isolating
    store = Store.open(database_url)
    try:
        async with store.engine.connect() as conn:
            reason = (await conn.execute(select(dead_letters.c.reason))).scalar_one()
    finally:
        await store.close()
    assert reason.startswith("refused: ") and "poison refused" in reason


async def test_the_writer_comes_back_with_nats_and_catches_up(
    nats_server: EmbeddedNats, js: JetStreamContext, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    async with running(inbox_settings(nats_settings, url)) as inbox:
        first = await publish_requests(js, [request(i) for i in range(100)])

        async def stored(n: int) -> bool:
            return await count(url) == n

        await until(lambda: stored(100), timeout=20, what="the first 100 stored")
        nats_server.stop()
        await until(lambda: not inbox.writer.ready, what="the writer to see NATS go")
        nats_server.start()
        await until(lambda: inbox.writer.ready, timeout=20, what="the writer to bind again")
        nc = await nats.connect(nats_server.url)
        try:
            second = await publish_requests(nc.jetstream(), [request(i) for i in range(100, 300)])
        finally:
            await nc.close()
        await until(lambda: stored(300), timeout=30, what="all 300 stored after the restart")
    assert sorted(await stored_ids(url)) == sorted(first + second)


async def test_a_backlog_is_written_in_full_batches(
    js: JetStreamContext, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    await publish_requests(js, [request(i) for i in range(1000)])
    async with running(inbox_settings(nats_settings, url, batch_size=100)) as inbox:
        await until(lambda: inbox.writer.last_sequence == 1000, timeout=30, what="the backlog")
        assert inbox.writer.batches == 10  # 1000 waiting, 100 a fetch: ten full batches
    assert await count(url) == 1000
