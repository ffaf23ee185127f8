"""kill -9 of one gateway behind nginx, under load, then its restart.

Its clients lose their socket without a close frame, reconnect through nginx (no sticky
sessions) to the two others and resume from their last ``seq``: the others read the gap from
memory or JetStream. The killed gateway is started again on its port once every client is
counted by the others. ``python -m benchmarks.faults --scenarios gateway_kill``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.cluster_stack import connections
from tests.support.fault_load import loaded_stack, spread, tenant_names

NAME = "gateway_kill"
FAULT = "kill -9 of the gateway holding the most clients, restarted once all were back"


async def run(
    directory: Path, *, clients: int = 1000, tenants: int = 20, rate: float = 30.0
) -> tuple[dict[str, Any], list[str]]:
    row: dict[str, Any] = {}
    names = tenant_names(tenants)
    async with loaded_stack(
        directory, scenario=NAME, clients=clients, tenants=names, rate=rate
    ) as load:
        counts = await connections(load.stack)
        held = int(max(counts))
        victim = load.stack.gateways[counts.index(max(counts))]
        load.track()
        load.fault_begins()
        killed_at = time.time()
        await victim.kill()
        await load.everyone_connected(timeout=120)
        back = time.time() - killed_at
        await load.publish_more(1)
        await victim.started(timeout=30)
        load.track()
        await load.publish_more(2)
        problems = await load.finish(row, since=killed_at)
        moved = [f for f in load.fleet.followers if f.outages()]
        if len(moved) < held:
            problems.append(f"{len(moved)} clients reconnected, {victim.name} held {held}")
        row.update(
            spread([max(f.outages()) for f in moved]),
            recovery_is="disconnected→live",
            fault_detail=f"{victim.name} killed with {held} clients",
            all_back_s=round(back, 1),
        )
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    return row, problems
