"""The rolling upgrade, as one function the test suite (reduced) and benchmarks/faults both run.

Every gateway in turn is drained (SIGTERM) and started again on its port while nginx keeps
routing and the load keeps publishing (:mod:`tests.support.fault_load`); a drained gateway's
clients get ``reconnect`` and land, through nginx, on the others (a draining gateway answers the
upgrade 503, nginx passes it on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.fault_load import BACKOFF, loaded_stack, mint, spread
from tests.support.publisher_process import metric
from tidings.client.subscriber_events import Recovered

__all__ = ["BACKOFF", "mint", "run_rolling"]


async def run_rolling(
    directory: Path, *, clients: int, tenants: tuple[str, ...], rate: float, drain: float
) -> tuple[dict[str, Any], list[str]]:
    """(the report row, what went wrong: empty when every client's view is exact)."""
    env = {"TIDINGS_GATEWAY_DRAIN_SECONDS": str(drain)}
    problems: list[str] = []
    row: dict[str, Any] = {"scenario": "rolling", "clients": clients, "rate": rate}
    async with loaded_stack(
        directory, scenario="rolling", clients=clients, tenants=tenants, rate=rate, env=env
    ) as load:
        rolled_at = time.time()
        rolls = []
        for gw in load.stack.gateways:
            began = time.monotonic()
            load.track()
            code = await gw.stop(timeout=drain + 15)
            if code != 0:
                problems.append(f"{gw.name} exited with {code} after its drain")
            await gw.started(timeout=30)
            rolls.append(round(time.monotonic() - began, 1))
            await load.publish_more(1)
        problems += await load.finish(row, since=rolled_at)
        followers = load.fleet.followers
        problems += [f"{f.name} never moved" for f in followers if not f.moved_on_request()]
        not_recovered = 0.0
        for gw in load.stack.gateways:
            async with gw.http(metrics=True) as http:
                text = (await http.get("/metrics")).text
            not_recovered += metric(text, "tidings_gateway_resumes_total", outcome="not_recovered")
        if not_recovered:
            problems.append(f"{not_recovered:.0f} resumes not recovered")
        row.update(
            spread([max(f.outages(), default=0.0) for f in followers]),
            recovery_is="disconnected→live",
            drain_s=drain,
            resumes=sum(isinstance(e, Recovered) for f in followers for e in f.events),
            roll_s=rolls,
        )
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    row["lost_or_duplicated"] = len(problems)
    return row, problems
