"""kill -9 of the node leading the stream, under load, then its restart.

Gateway i is pinned to node i, so the gateway on the killed node must move to another node and
heal while the other two elect a new leader (nothing can be stored meanwhile: the sidecar queues
and retries from its outbox, the SDK publisher retries with the same ``Nats-Msg-Id``). The node
is restarted once a new leader stored and that gateway is ready again, and the run goes on until
the restarted node is current (:func:`tests.support.fault_load.node_fault`).
``python -m benchmarks.faults --scenarios leader_kill``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.fault_load import loaded_stack, node_fault, tenant_names

NAME = "leader_kill"
FAULT = "kill -9 of the stream leader's node, restarted after the new leader stored"


async def run(
    directory: Path, *, clients: int = 1000, tenants: int = 20, rate: float = 30.0
) -> tuple[dict[str, Any], list[str]]:
    names = tenant_names(tenants)
    async with loaded_stack(
        directory, scenario=NAME, clients=clients, tenants=names, rate=rate, pinned=True
    ) as load:
        cluster = load.stack.cluster
        row, problems = await node_fault(load, hit=cluster.kill, undo=cluster.restart)
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    return row, problems
