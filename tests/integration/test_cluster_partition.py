"""A real network partition of one NATS node, under load, through nginx
(tests/support/partition.py).

The three nodes run in network namespaces this test creates, joined by a bridge
(``tidings.dev.netns.NetLab``); the gateways (gateway i pinned to node i), the sidecar, nginx
and the clients reach them from the root namespace over one veth. The stream leader's link is
cut (its packets vanish: no reset, no error), held until the majority elected a new leader and
went on storing and the gateway on the cut node healed elsewhere, then restored. Every client
must end with exactly what the stream holds for it, every acknowledged publish stored once, and
no namespace or process may be left (checked by the ``netlab`` fixture). The figures are printed
(``-s``); the full run is benchmarks/faults (scenario ``partition``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.partition import network_lab, run_partition
from tidings.dev.netns import NetLab

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.usefixtures("collect_leftovers"),
    pytest.mark.slow,
]

TENANTS = tuple(f"t{i}" for i in range(6))


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    with network_lab(3) as lab:
        yield lab


async def test_a_partitioned_leader_node_loses_nothing_for_any_client(
    tmp_path: Path, netlab: NetLab
) -> None:
    row, problems = await run_partition(tmp_path, netlab, clients=90, tenants=TENANTS, rate=30.0)
    assert problems == [], "\n".join(problems)
    print(f"\npartition: {row}")
    # Bounded reads: at most a backfill per tenant per gateway and a second wave.
    assert row["most_backfills_per_gateway_tenant"] <= 2
