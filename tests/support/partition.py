"""A network lab for partition tests (``tidings.dev.netns``), checked clean afterwards.

The lab needs root and iproute2 (scripts/test installs it; CI runs as root). Without them a test
is skipped with the reason on a developer's machine and fails under CI (``CI`` set), as
``tests/support/shared.py`` does for its files: CI never skips it silently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import readiness
from tests.support.cluster_stack import alive
from tests.support.fault_load import (
    RECOVERY,
    loaded_stack,
    new_leader,
    replicas_current,
    spread,
)
from tests.support.waiting import until
from tidings.dev.netns import NetLab, lab_cluster, namespaces, unavailable_reason


def require_namespaces() -> None:
    """Skip (developer machine) or fail (CI) when network namespaces cannot be made here."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the partition tests: {reason}")
        pytest.skip(f"partition tests: {reason}")


@contextmanager
def network_lab(nodes: int = 3) -> Iterator[NetLab]:
    """A started :class:`NetLab`; on exit it is closed, and the test fails if one of its
    namespaces or one process that ran in them is left."""
    require_namespaces()
    lab = NetLab(nodes)
    ran: list[int] = []
    try:
        lab.start()
        yield lab
    finally:
        ran = lab.pids()
        lab.close()
    left = [n for n in namespaces(lab.prefix) if n.startswith(lab.run)]
    assert left == [], f"namespaces left behind: {left}"
    assert [p for p in ran if alive(p)] == [], "processes left in the lab's namespaces"


async def run_partition(
    directory: Path, lab: NetLab, *, clients: int, tenants: tuple[str, ...], rate: float
) -> tuple[dict[str, Any], list[str]]:
    """The stream leader's node cut off under load, then restored: (report row, problems).

    The nodes run in ``lab``'s namespaces; gateway i is pinned to node i, so the gateway on the
    cut node must notice (pings), move to another node and heal. The cut is held until the
    majority elected a new leader, stored for a while, and that gateway is ready again.
    """
    cluster = lab_cluster(lab, directory / "nats")
    problems: list[str] = []
    row: dict[str, Any] = {"scenario": "partition", "clients": clients, "rate": rate}
    async with loaded_stack(
        directory,
        scenario="partition",
        clients=clients,
        tenants=tenants,
        rate=rate,
        cluster=cluster,
        pinned=True,
    ) as load:
        leader = await cluster.stream_leader("TIDINGS")
        victim, victim_node = load.stack.gateways[leader], cluster.nodes[leader].name
        load.fault_begins()
        cut_at = time.time()
        lab.cut(leader)
        elected = await new_leader(load.js(1), other_than=victim_node) - cut_at
        await load.publish_more(2)

        async def victim_ready() -> bool:
            return (await readiness(victim))[0] == 200

        await until(victim_ready, timeout=60, what=f"{victim.name} healed on another node")
        held = time.time() - cut_at
        restored_at = time.time()
        lab.restore(leader)
        rejoin = await replicas_current(load.js(1)) - restored_at
        await load.publish_more(2)
        problems += await load.finish(row, since=cut_at)
        row.update(
            spread(load.store_waits),
            recovery_is=RECOVERY,
            cut=f"{victim_node} (stream leader; {victim.name} pinned to it)",
            new_leader_s=round(elected, 1),
            held_s=round(held, 1),
            rejoin_s=round(rejoin, 1),
        )
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    row["lost_or_duplicated"] = len(problems)
    return row, problems
