"""What one inbox retention pass costs: fill an EMPTY database, then time four passes.

    python -m benchmarks.inbox_retention --url sqlite:///tmp/retention.db --rows 100000
    python -m benchmarks.inbox_retention --url postgresql://user@127.0.0.1:5432/bench --rows 1000000

The rows go to 1,000 tenants x 11 audiences (the tenant and ten users), stored over the last
100 days, evenly. The passes, in order: max age 365 days (nothing due), max items 1,000
(nothing over: the ranked scan alone), max age 90 days (10 % due), max items 5 (most rows
over). Default batch size and pause (``TIDINGS_INBOX_RETENTION_*``). The database is migrated
and filled; use a throw-away one.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tidings.envelope import Notification, new_id
from tidings.inbox import migrate
from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.retention import RetentionJob
from tidings.inbox.rows import StreamMessage, notification_row
from tidings.inbox.store import Store
from tidings.settings import InboxSettings
from tidings.subjects import TENANT_AUDIENCE, Route

TENANTS = 1000
AUDIENCES = 11  # the tenant and ten users
PASSES: list[tuple[str, dict[str, int]]] = [
    ("max age 365 days, nothing due", {"retention_max_age_days": 365}),
    ("max items 1000, nothing over", {"retention_max_age_days": 0, "retention_max_items": 1000}),
    ("max age 90 days, 10 % due", {"retention_max_age_days": 90}),
    ("max items 5, most rows over", {"retention_max_age_days": 0, "retention_max_items": 5}),
]


def _template() -> dict[str, Any]:
    route = Route("t0", TENANT_AUDIENCE, "incident.created")
    n = Notification(
        id=new_id(),
        tenant="t0",
        event=route.event,
        audience=TENANT_AUDIENCE,
        time=datetime.now(UTC),
        title="a pump failed",
        message="pump 3 of site Berlin reports a pressure drop",
    )
    return notification_row(StreamMessage("bench", 0, route.subject, n.to_bytes()))


def _rows(template: dict[str, Any], start: int, count: int, total: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for i in range(start, start + count):
        k = (i // TENANTS) % AUDIENCES
        row = dict(template)
        row.update(
            seq=i + 1,
            id=f"bench-{i}",
            tenant=f"t{i % TENANTS}",
            audience_kind="tenant" if k == 0 else "user",
            audience_name="" if k == 0 else f"u{k}",
            stored_at=now - timedelta(days=100 * (total - i) / total),
        )
        rows.append(row)
    return rows


async def run(url: str, total: int) -> None:
    store = Store.open(url)
    try:
        await migrate.upgrade(store.engine)
        if await store.count():
            raise SystemExit("the database holds notifications already: give an empty one")
        template = _template()
        started = time.perf_counter()
        for start in range(0, total, 5000):
            await store.write(_rows(template, start, min(5000, total - start), total))
        print(f"{store.dialect}: stored {total:,} in {time.perf_counter() - started:.1f} s")
        for label, limits in PASSES:
            settings = InboxSettings(**limits)  # type: ignore[arg-type]
            job = RetentionJob(store, InboxMetrics(), settings)
            started = time.perf_counter()
            result = await job.run_once()
            took = time.perf_counter() - started
            assert result is not None
            print(
                f"  {label}: {took:.2f} s ({result.paused:.1f} s of it pauses), deleted"
                f" {result.age + result.items:,} in {result.statements} statements"
            )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="an empty database (it is filled)")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.rows))


if __name__ == "__main__":
    main()
