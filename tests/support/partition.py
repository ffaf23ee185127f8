"""A network lab for partition tests (``tidings.dev.netns``), checked clean afterwards.

The lab needs root and iproute2 (scripts/test installs it; CI runs as root). Without them a test
is skipped with the reason on a developer's machine and fails under CI (``CI`` set), as
``tests/support/shared.py`` does for its files: CI never skips it silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster_stack import alive
from tests.support.fault_load import loaded_stack, node_fault
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
    majority elected a new leader, that gateway is ready again, and the majority stored for a
    while (:func:`tests.support.fault_load.node_fault`).
    """
    cluster = lab_cluster(lab, directory / "nats")
    async with loaded_stack(
        directory,
        scenario="partition",
        clients=clients,
        tenants=tenants,
        rate=rate,
        cluster=cluster,
        pinned=True,
    ) as load:
        row, problems = await node_fault(load, hit=lab.cut, undo=lab.restore)
    if load.left:
        problems.append(f"still running after the stack stopped: {load.left}")
    row["lost_or_duplicated"] = len(problems)
    return row, problems
