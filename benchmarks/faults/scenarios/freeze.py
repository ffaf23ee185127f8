"""A node frozen (SIGSTOP) for longer than the election timeout, under load, then thawed.

The frozen node is the stream's leader: its sockets stay open, so only pings tell the gateway
pinned to it (and the sidecar, and the SDK publisher) to move; the two others wait out their
election timeout and elect a new leader. The freeze lasts ``hold`` seconds (at least until the
new leader stored and the gateway on the frozen node is ready elsewhere), then the node is
thawed and the run goes on until it is current. ``python -m benchmarks.faults --scenarios
freeze``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.cluster import wait_readiness
from tests.support.fault_load import (
    RECOVERY,
    loaded_stack,
    new_leader,
    replicas_current,
    spread,
)
from tests.support.waiting import until

NAME = "freeze"
FAULT = "SIGSTOP of the stream leader's node for 10 s (> election timeout), then SIGCONT"


async def run(
    directory: Path,
    *,
    clients: int = 1000,
    tenants: int = 20,
    rate: float = 30.0,
    hold: float = 10.0,
) -> tuple[dict[str, Any], list[str]]:
    row: dict[str, Any] = {}
    async with loaded_stack(
        directory,
        scenario=NAME,
        clients=clients,
        tenants=[f"t{i}" for i in range(tenants)],
        rate=rate,
        pinned=True,
    ) as load:
        cluster = load.stack.cluster
        leader = await cluster.stream_leader("TIDINGS")
        victim, node = load.stack.gateways[leader], cluster.nodes[leader].name
        load.fault_begins()
        frozen_at = time.time()
        cluster.freeze(leader)
        try:
            elected = await new_leader(load.js(1), other_than=node) - frozen_at
            await wait_readiness(victim, ready=True, timeout=60)
            healed = time.time() - frozen_at
            await load.publish_more(1)

            def held() -> bool:  # the freeze is the experiment's length, not a wait for an event
                return time.time() - frozen_at >= hold

            await until(held, timeout=hold + 60, what="the freeze period")
        finally:
            cluster.thaw(leader)
        thawed_at = time.time()
        rejoin = await replicas_current(load.js(1)) - thawed_at
        await load.publish_more(2)
        problems = await load.finish(row, since=frozen_at)
        row.update(
            spread(load.store_waits),
            recovery_is=RECOVERY,
            fault_detail=f"{node} frozen {thawed_at - frozen_at:.1f} s ({victim.name} on it)",
            new_leader_s=round(elected, 1),
            gateway_healed_s=round(healed, 1),
            rejoin_s=round(rejoin, 1),
        )
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    return row, problems
