"""A node frozen (SIGSTOP) for longer than the election timeout, under load, then thawed.

The frozen node is the stream's leader: its sockets stay open, so only pings tell the gateway
pinned to it (and the sidecar, and the SDK publisher) to move; the two others wait out their
election timeout and elect a new leader. The freeze lasts ``hold`` seconds (at least until the
new leader stored and the gateway on the frozen node is ready elsewhere), then the node is
thawed and the run goes on until it is current (:func:`tests.support.fault_load.node_fault`).
``python -m benchmarks.faults --scenarios freeze``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.fault_load import loaded_stack, node_fault, tenant_names

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
    names = tenant_names(tenants)
    async with loaded_stack(
        directory, scenario=NAME, clients=clients, tenants=names, rate=rate, pinned=True
    ) as load:
        cluster = load.stack.cluster
        row, problems = await node_fault(load, hit=cluster.freeze, undo=cluster.thaw, hold=hold)
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    return row, problems
