"""kill -9 of the node leading the stream, under load, then its restart.

Gateway i is pinned to node i, so the gateway on the killed node must move to another node and
heal while the other two elect a new leader (nothing can be stored meanwhile: the sidecar queues
and retries from its outbox, the SDK publisher retries with the same ``Nats-Msg-Id``). The node
is restarted once a new leader stored and that gateway is ready again, and the run goes on until
the restarted node is current. ``python -m benchmarks.faults --scenarios leader_kill``.
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

NAME = "leader_kill"
FAULT = "kill -9 of the stream leader's node, restarted after the new leader stored"


async def run(
    directory: Path, *, clients: int = 1000, tenants: int = 20, rate: float = 30.0
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
        killed_at = time.time()
        cluster.kill(leader)
        elected = await new_leader(load.js(1), other_than=node) - killed_at
        await wait_readiness(victim, ready=True, timeout=60)
        healed = time.time() - killed_at
        await load.publish_more(2)
        cluster.restart(leader)
        restarted_at = time.time()
        rejoin = await replicas_current(load.js(1)) - restarted_at
        await load.publish_more(2)
        problems = await load.finish(row, since=killed_at)
        row.update(
            spread(load.store_waits),
            recovery_is=RECOVERY,
            fault_detail=f"{node} killed ({victim.name} pinned to it)",
            new_leader_s=round(elected, 1),
            gateway_healed_s=round(healed, 1),
            rejoin_s=round(rejoin, 1),
        )
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    return row, problems
