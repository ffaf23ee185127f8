"""Inbox API latency over a large store: first page, counts, mark-all (issue 11, Performance).

Bulk-loads notifications straight through the store (:meth:`Store.write`, the writer's insert)
spread over ``--tenants`` tenants of ``--users`` users each (half tenant-wide, 40% addressed to
one user, 10% to a role every user holds), then times the API's requests for random users: the
first page of ``GET /v1/inbox/notifications``, ``GET /v1/inbox/counts`` and
``POST /v1/inbox/mark-all`` (read). Requests go through the real app (JWT check, queries, JSON)
in this process over ASGI, so the figures are the API's own time without a network hop.

    python -m benchmarks.inbox_api --database postgresql --notifications 1000000
    python -m benchmarks.inbox_api --database sqlite --notifications 100000

``--database postgresql`` starts a throw-away PostgreSQL server (Debian's package, as the tests
do); ``--database-url`` uses an existing database instead (it must be empty).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks.inbox_writer import children, cpu_seconds
from tests.support.inbox_api import api_settings, bearer
from tests.support.postgres import PostgresServer
from tidings.auth.claims import Claims
from tidings.inbox import queries
from tidings.inbox.api_app import create_app
from tidings.inbox.store import Store

DOMAINS = ("incident", "billing", "deploy", "chat", "security")
SEVERITIES = ("info", "info", "info", "success", "warning", "error", "critical")
BATCH = 5000


def rows_for(count: int, tenants: int, users: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=30)
    rows = []
    for i in range(count):
        tenant = f"t{i % tenants}"
        pick = rnd.random()
        if pick < 0.5:
            kind, name = "tenant", ""
        elif pick < 0.9:
            kind, name = "user", f"u{rnd.randrange(users)}"
        else:
            kind, name = "role", "member"
        domain = rnd.choice(DOMAINS)
        rows.append(
            {
                "epoch": "bench",
                "seq": i + 1,
                "id": f"n{i:09d}",
                "tenant": tenant,
                "audience_kind": kind,
                "audience_name": name,
                "event": f"{domain}.created",
                "domain": domain,
                "time": start + timedelta(seconds=i * 2),
                "source": "bench",
                "title": f"Notification {i}",
                "message": "Something happened that a user should know about.",
                "severity": rnd.choice(SEVERITIES),
                "data": f'{{"i": {i}}}',
                "stored_at": start + timedelta(seconds=i * 2),
            }
        )
    return rows


async def load(store: Store, count: int, tenants: int, users: int) -> float:
    began = time.perf_counter()
    for first in range(0, count, BATCH):
        chunk = rows_for(min(BATCH, count - first), tenants, users, seed=first)
        for offset, row in enumerate(chunk):  # ids and positions unique across chunks
            row["seq"] = first + offset + 1
            row["id"] = f"n{first + offset:09d}"
            row["tenant"] = f"t{(first + offset) % tenants}"
        await store.write(chunk)
    return time.perf_counter() - began


async def database_parts(url: str, pairs: list[tuple[str, str]]) -> dict[str, list[float]]:
    """The database part of the counts (``queries.counts``: one statement) and of the session
    answer a gateway asks at ``hello`` (``queries.bell``: counts and muted domains, one
    statement), sample by sample, alternating which goes first, on a pool without pre-ping
    (the API's)."""
    store = Store.open(url, pre_ping=False)
    users = [Claims(tenant, user, frozenset({"member"})) for tenant, user in pairs]

    async def counts(claims: Claims) -> object:
        async with store.engine.connect() as conn:
            return await queries.counts(conn, claims, None)

    async def session(claims: Claims) -> object:
        async with store.engine.connect() as conn:
            return await queries.bell(conn, claims)

    took: dict[str, list[float]] = {"counts": [], "session": []}
    try:
        for claims in users[:20]:  # warm the pool
            await counts(claims)
            await session(claims)
        for i, claims in enumerate(users):
            calls = [("counts", counts), ("session", session)]
            for name, call in calls[i % 2 :] + calls[: i % 2]:
                began = time.perf_counter()
                await call(claims)
                took[name].append((time.perf_counter() - began) * 1000)
    finally:
        await store.close()
    return took


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def timed(samples: int, call: Callable[[int], Awaitable[httpx.Response]]) -> list[float]:
    took = []
    for i in range(samples):
        began = time.perf_counter()
        answer = await call(i)
        took.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text
    return took


class CpuMeter:
    """CPU time per request of this process (the API in process, and its HTTP client) and of
    the PostgreSQL server (all its processes): what a request costs whatever the load."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster
        self.per_request: dict[str, tuple[float, float]] = {}

    def _now(self) -> tuple[float, float]:
        database = cpu_seconds(children(self.postmaster)) if self.postmaster else 0.0
        return time.process_time(), database

    async def timed(
        self, name: str, samples: int, call: Callable[[int], Awaitable[httpx.Response]]
    ) -> list[float]:
        api, database = self._now()
        took = await timed(samples, call)
        api_after, database_after = self._now()
        self.per_request[name] = (
            (api_after - api) / samples * 1000,
            (database_after - database) / samples * 1000,
        )
        return took


async def run(url: str, args: argparse.Namespace, postmaster: int | None = None) -> None:
    load_at_start = os.getloadavg()
    meter = CpuMeter(postmaster)
    app = create_app(api_settings(url))
    process = app.state.process
    await process.start()
    try:
        loaded = await load(process.store, args.notifications, args.tenants, args.users)
        if process.store.dialect == "postgresql":  # what autovacuum does after a bulk load
            async with process.store.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                # VACUUM sets the visibility map (index-only scans; autovacuum does it for an
                # insert-only table too, since PostgreSQL 13), ANALYZE the statistics.
                await conn.execute(text("VACUUM ANALYZE" if args.vacuum else "ANALYZE"))
        stored = await process.store.count()
        print(f"loaded {stored:,} notifications in {loaded:.1f}s ({stored / loaded:,.0f}/s)")
        rnd = random.Random(11)
        pairs = [
            (f"t{rnd.randrange(args.tenants)}", f"u{rnd.randrange(args.users)}")
            for _ in range(args.samples)
        ]
        callers = [bearer(tenant, user, roles=["member"]) for tenant, user in pairs]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
            for headers in callers[:20]:  # warm the pool and the caches
                await client.get("/v1/inbox/counts", headers=headers)
            results = {
                "first page (20)": await meter.timed(
                    "first page (20)",
                    args.samples,
                    lambda i: client.get("/v1/inbox/notifications", headers=callers[i]),
                ),
                "counts": await meter.timed(
                    "counts",
                    args.samples,
                    lambda i: client.get("/v1/inbox/counts", headers=callers[i]),
                ),
                "mark-all read": await meter.timed(
                    "mark-all read",
                    args.samples,
                    lambda i: client.post(
                        "/v1/inbox/mark-all", json={"read": True}, headers=callers[i]
                    ),
                ),
                "first page after mark-all": await meter.timed(
                    "first page after mark-all",
                    args.samples,
                    lambda i: client.get("/v1/inbox/notifications", headers=callers[i]),
                ),
            }
        parts = await database_parts(url, pairs)
        results["database part only (interleaved):"] = []
        results["  counts (one statement)"] = parts["counts"]
        results["  session answer: counts + muted domains (one statement)"] = parts["session"]
    finally:
        await process.stop()
    print(f"{args.database}: {stored:,} notifications, {args.tenants} tenants x {args.users} users")
    print(
        f"machine load (1, 5, 15 min): {load_at_start} at the start, {os.getloadavg()} at the end"
    )
    print("| request | p50 ms | p99 ms | max ms | mean ms | CPU ms: API / database |")
    print("|---|---:|---:|---:|---:|---|")
    for name, took in results.items():
        if not took:
            print(f"| {name} | | | | | |")
            continue
        api, database = meter.per_request.get(name, (0.0, 0.0))
        cpu = f"{api:.2f} / {database:.2f}" if meter.postmaster else f"{api:.2f} (SQLite inside)"
        cpu = cpu if name in meter.per_request else ""
        print(
            f"| {name} | {percentile(took, 50):.2f} | {percentile(took, 99):.2f} |"
            f" {max(took):.2f} | {statistics.mean(took):.2f} | {cpu} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inbox_api")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", default=None, help="an existing, empty database")
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--no-vacuum",
        dest="vacuum",
        action="store_false",
        help="ANALYZE only after the load (index-only scans then visit the heap)",
    )
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args))
        return
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(f"sqlite:///{Path(tmp) / 'inbox.db'}", args))
        return
    server = PostgresServer().start()
    try:
        server.create_database("bench")
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        asyncio.run(run(server.url("bench"), args, postmaster))
    finally:
        server.remove()


if __name__ == "__main__":
    main()
