"""Inbox writer throughput and lag (issue 11, Performance: >= 5,000 notifications/s into
PostgreSQL, lag <= 1 s at that rate).

A fresh nats-server with the stream, a throw-away database (PostgreSQL from Debian's package as
the tests start it, or a SQLite file) and the real writer process (``tidings inbox writer``,
default settings: batches of 500, ``--batch-size`` to change) are started; this process
publishes and watches the writer's ``/metrics``. Two phases:

1. **catch-up**: ``--backlog`` notifications are stored in the stream while the writer is not
   running; it then starts and drains them: the writer's top rate (``tidings_inbox_stored_total``
   over the time from its first stored row to its last).
2. **sustained**: ``--rate`` notifications/s for ``--seconds``, paced every 10 ms. Every 100 ms
   the consumer's ack floor is read (every notification up to it is stored: the writers ack
   after committing); the lag at that moment is the age of the oldest notification published
   above it (publishes are core NATS on one connection, so the stream's sequence is the
   publish order; the run checks the stream holds exactly what was published).

``--writers N`` starts N writer processes on the same consumer. After each run every published
id must be stored exactly once (printed). The CPU time of the writers and of the PostgreSQL
server (all its processes, from /proc) is printed per notification: what a notification costs
whatever else runs on the machine.

Batch sizes come from the writer's ``tidings_inbox_batch_messages`` histogram.

    python -m benchmarks.inbox_writer --database postgresql --writers 2
    python -m benchmarks.inbox_writer --database sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.support.postgres import PostgresServer
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification, Severity, new_id
from tidings.inbox import migrate
from tidings.inbox.schema import notifications
from tidings.inbox.store import Store
from tidings.nats import ensure_stream
from tidings.ports import free_port
from tidings.settings import InboxSettings, StreamSettings
from tidings.subjects import TENANT_AUDIENCE, Audience, AudienceKind, Route

TICK = 0.01  # pacing of the publisher
SAMPLE = 0.1  # how often the writer's metrics are read


def payloads(count: int, tenants: int = 100) -> list[tuple[str, bytes]]:
    """(subject, envelope) pairs: half tenant-wide, half to one user, over ``tenants``."""
    out = []
    for i in range(count):
        tenant = f"t{i % tenants}"
        audience = TENANT_AUDIENCE if i % 2 else Audience(AudienceKind.USER, f"u{i % 97}")
        route = Route(tenant, audience, "incident.created")
        n = Notification(
            id=new_id(),
            tenant=tenant,
            event="incident.created",
            audience=audience,
            time=datetime.now(UTC),
            title=f"Notification {i}",
            message="Something happened that a user should know about.",
            severity=Severity.INFO,
        )
        out.append((route.subject, n.to_bytes()))
    return out


@dataclass
class Metrics:
    stored: float = 0.0
    last_sequence: int = 0
    pending: float = 0.0
    batches: float = 0.0
    batch_sum: float = 0.0
    commit_seconds: float = 0.0  # tidings_inbox_batch_seconds: the database's part
    batch_buckets: dict[str, float] = field(default_factory=dict)


async def scrape(client: httpx.AsyncClient) -> Metrics:
    text = (await client.get("/metrics")).text
    m = Metrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tidings_inbox_stored_total":
                m.stored = sample.value
            elif sample.name == "tidings_inbox_last_stored_sequence":
                m.last_sequence = int(sample.value)
            elif sample.name == "tidings_inbox_consumer_pending":
                m.pending = sample.value
            elif sample.name == "tidings_inbox_batch_messages_count":
                m.batches = sample.value
            elif sample.name == "tidings_inbox_batch_messages_sum":
                m.batch_sum = sample.value
            elif sample.name == "tidings_inbox_batch_seconds_sum":
                m.commit_seconds = sample.value
            elif sample.name == "tidings_inbox_batch_messages_bucket":
                m.batch_buckets[sample.labels["le"]] = sample.value
    return m


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if values else 0.0


class Writer:
    """``python -m tidings inbox writer`` on the database, stopped by its PID."""

    def __init__(
        self, nats_url: str, database_url: str, root: Path, batch_size: int, name: str
    ) -> None:
        self.port = free_port()
        self.log = root / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.env = {
            **base,
            "TIDINGS_NATS_URLS": nats_url,
            "TIDINGS_INBOX_DATABASE_URL": database_url,
            "TIDINGS_INBOX_MIGRATE": "true",
            "TIDINGS_INBOX_PORT": str(self.port),
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_INBOX_BATCH_SIZE": str(batch_size),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, client: httpx.AsyncClient) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (a benchmark: starting it is not timed)
                [sys.executable, "-m", "tidings", "inbox", "writer"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the writer did not get ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def scrape_all(clients: list[httpx.AsyncClient]) -> Metrics:
    """The writers' metrics summed (``last_sequence``: the highest of them)."""
    total = Metrics()
    for m in await asyncio.gather(*(scrape(c) for c in clients)):
        total.stored += m.stored
        total.last_sequence = max(total.last_sequence, m.last_sequence)
        total.pending = max(total.pending, m.pending)
        total.batches += m.batches
        total.batch_sum += m.batch_sum
        total.commit_seconds += m.commit_seconds
        for le, value in m.batch_buckets.items():
            total.batch_buckets[le] = total.batch_buckets.get(le, 0.0) + value
    return total


async def ack_floor(js: JetStreamContext) -> int:
    """Every notification up to this sequence is stored (the writers ack after committing)."""
    info = await js.consumer_info(StreamSettings().name, InboxSettings().durable)
    return int(info.ack_floor.stream_seq) if info.ack_floor else 0


async def exactly_once(database_url: str, ids: list[str]) -> str:
    """Each published id stored exactly once (and nothing else stored)."""
    store = Store.open(database_url)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.scalars(select(notifications.c.id))).all()
    finally:
        await store.close()
    counted = Counter(rows)
    doubled = sum(1 for n in counted.values() if n > 1)
    missing = len(set(ids) - set(counted))
    extra = len(set(counted) - set(ids))
    verdict = "exactly once" if not (doubled or missing or extra) else "NOT exactly once"
    return (
        f"{verdict}: {len(rows):,} rows for {len(ids):,} ids"
        f" ({doubled} doubled, {missing} missing, {extra} unknown)"
    )


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (0 for a process that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (PostgreSQL's backends of its postmaster)."""
    found = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Cpu:
    """CPU time of the writers and of the database server, at one moment."""

    writers: float
    database: float

    @classmethod
    def now(cls, writers: list[Writer], postmaster: int | None) -> Cpu:
        pids = [w.proc.pid for w in writers if w.proc is not None]
        database = cpu_seconds(children(postmaster)) if postmaster else 0.0
        return cls(cpu_seconds(pids), database)


async def run(
    database_url: str, root: Path, args: argparse.Namespace, postmaster: int | None = None
) -> None:
    total = args.backlog + int(args.rate * args.seconds)
    print(f"building {total:,} notifications ...", flush=True)
    messages = payloads(total)
    ids = [Notification.from_bytes(body).id for _, body in messages]
    server = EmbeddedNats(root / "nats").start()
    writers = [
        Writer(server.url, database_url, root, args.batch_size, name=f"writer{i}")
        for i in range(args.writers)
    ]
    nc = None
    load_before = os.getloadavg()
    store = Store.open(database_url)  # migrated once here, not by writers racing at start
    try:
        await migrate.upgrade(store.engine)
    finally:
        await store.close()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_stream(js, StreamSettings(max_bytes=4 * 1024**3))
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{w.port}") for w in writers]
        try:
            # 1. catch-up
            for subject, body in messages[: args.backlog]:
                await nc.publish(subject, body)
            await nc.flush()
            await asyncio.gather(*(w.start(c) for w, c in zip(writers, clients, strict=True)))
            first = last = None
            stored = 0.0
            while stored < args.backlog:
                m = await scrape_all(clients)
                now = time.perf_counter()
                if m.stored and first is None:
                    first = (now, m.stored)
                    cpu_first = Cpu.now(writers, postmaster)
                stored = m.stored
                last = now
                await asyncio.sleep(SAMPLE / 2)
            assert first is not None
            assert last is not None
            catchup = (stored - first[1]) / max(last - first[0], 1e-9)
            cpu_caught = Cpu.now(writers, postmaster)
            caught = stored - first[1]
            before = await scrape_all(clients)
            catchup_commit = before.commit_seconds / max(before.batches, 1)
            catchup_batch = before.batch_sum / max(before.batches, 1)

            # 2. sustained
            sent_at: list[float] = []
            lags: list[float] = []
            pendings: list[float] = []
            done = asyncio.Event()

            async def watch() -> None:
                while not done.is_set():
                    floor = await ack_floor(js)
                    now = time.perf_counter()
                    index = floor - args.backlog  # the next one maybe not stored, 0-based
                    lags.append(now - sent_at[index] if 0 <= index < len(sent_at) else 0.0)
                    pendings.append((await scrape_all(clients)).pending)
                    await asyncio.sleep(SAMPLE)

            rest = messages[args.backlog :]
            began = time.perf_counter()
            watcher: asyncio.Future[None] | None = None  # from the first publish on
            while len(sent_at) < len(rest):
                due = min(len(rest), int((time.perf_counter() - began) * args.rate) + 1)
                now = time.perf_counter()
                for subject, body in rest[len(sent_at) : due]:
                    await nc.publish(subject, body)
                    sent_at.append(now)
                await nc.flush()
                if watcher is None:
                    watcher = asyncio.ensure_future(watch())
                await asyncio.sleep(TICK)
            published_for = time.perf_counter() - began
            cpu_published = Cpu.now(writers, postmaster)
            while await ack_floor(js) < total:  # noqa: ASYNC110 (polls the server)
                await asyncio.sleep(SAMPLE / 2)
            drained = time.perf_counter() - began
            done.set()
            if watcher is not None:
                await watcher
            after = await scrape_all(clients)
            info = await js.stream_info(StreamSettings().name)
            assert info.state.messages == total, (info.state.messages, total)
        finally:
            for client in clients:
                await client.aclose()
    finally:
        for writer in writers:
            writer.stop()
        if nc is not None:
            await nc.close()
        server.stop()

    batches = after.batches - before.batches
    print(
        f"\n{args.database}: {args.writers} writer(s), batch {args.batch_size},"
        f" machine load {load_before} at the start, {os.getloadavg()} at the end"
    )
    print(
        f"catch-up: {args.backlog:,} waiting in the stream, stored at {catchup:,.0f}/s"
        f" (batches of {catchup_batch:.0f} on average, {catchup_commit * 1000:.0f} ms each"
        " in the database)"
    )
    print(
        f"sustained: {len(rest):,} published at {len(rest) / published_for:,.0f}/s over"
        f" {published_for:.1f}s; all stored {drained - published_for:.2f}s after the last"
        f" publish ({len(rest) / drained:,.0f}/s overall)"
    )
    print(
        f"lag (age of the oldest notification past the consumer's ack floor, every"
        f" {SAMPLE * 1000:.0f} ms, {len(lags)} samples): p50 {percentile(lags, 50) * 1000:.0f} ms,"
        f" p99 {percentile(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms;"
        f" consumer pending p50 {percentile(pendings, 50):.0f}, p99 {percentile(pendings, 99):.0f}"
    )
    mean = (after.batch_sum - before.batch_sum) / batches if batches else 0.0
    commit = (after.commit_seconds - before.commit_seconds) / batches if batches else 0.0
    print(
        f"batches while sustained: {batches:.0f}, mean {mean:.0f} messages,"
        f" {commit * 1000:.1f} ms each in the database"
    )
    print(
        "CPU per notification while catching up: writers"
        f" {per(cpu_caught.writers - cpu_first.writers, caught)},"
        f" database {per(cpu_caught.database - cpu_first.database, caught)};"
        f" while sustained (publishing): writers"
        f" {(cpu_published.writers - cpu_caught.writers) / published_for:.2f} cores,"
        f" database {(cpu_published.database - cpu_caught.database) / published_for:.2f} cores"
    )
    print(await exactly_once(database_url, ids))


def per(seconds: float, count: float) -> str:
    return f"{seconds / count * 1e6:.0f} µs" if count else "-"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inbox_writer")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--rate", type=float, default=5000.0, help="notifications/s sustained")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backlog", type=int, default=50_000, help="waiting before the start")
    parser.add_argument("--batch-size", type=int, default=500, help="TIDINGS_INBOX_BATCH_SIZE")
    parser.add_argument("--writers", type=int, default=1, help="writer processes sharing the work")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidings-writer-bench-") as tmp:
        root = Path(tmp)
        if args.database == "sqlite":
            asyncio.run(run(f"sqlite:///{root / 'inbox.db'}", root, args))
            return
        pg = PostgresServer().start()
        try:
            pg.create_database("bench")
            postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
            asyncio.run(run(pg.url("bench"), root, args, postmaster))
        finally:
            pg.remove()


if __name__ == "__main__":
    main()
