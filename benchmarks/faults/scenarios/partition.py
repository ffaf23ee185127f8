"""Network partition: the stream leader's node cut off (its bridge port down in a network
namespace this run creates), under load, then restored. Needs root and iproute2.

The test suite runs the same code reduced (tests/integration/test_cluster_partition.py). The
lab's namespaces are removed at the end, whatever happens (and a later run sweeps those of a run
that was killed). ``python -m benchmarks.faults --scenarios partition``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.cluster_stack import alive
from tests.support.fault_load import tenant_names
from tests.support.partition import run_partition
from tidings.dev.netns import NetLab, namespaces

NAME = "partition"
FAULT = "the stream leader's node cut off (netns link down) until the majority stored, restored"


async def run(
    directory: Path, *, clients: int = 1000, tenants: int = 20, rate: float = 30.0
) -> tuple[dict[str, Any], list[str]]:
    names = tenant_names(tenants)
    with NetLab(3) as lab:
        row, problems = await run_partition(
            directory, lab, clients=clients, tenants=names, rate=rate
        )
        ran = lab.pids()
    left = [n for n in namespaces(lab.prefix) if n.startswith(lab.run)]
    if left:
        problems.append(f"namespaces left behind: {left}")
    if any(alive(pid) for pid in ran):
        problems.append("processes left in the lab's namespaces")
    return row, problems
