"""Network partition: the stream leader's node cut off (its bridge port down in a network
namespace this run creates), under load, then restored. Needs root and iproute2.

``python -m benchmarks.faults.scenarios.partition --clients 1000 --tenants 20`` prints the row
as JSON (and the problems found, if any). The test suite runs the same code reduced
(tests/integration/test_cluster_partition.py, 90 clients). The lab's namespaces are removed at
the end, whatever happens (and a later run sweeps those of a run that was killed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.support.partition import run_partition
from tidings.dev.netns import NetLab

NAME = "partition"


async def run(
    directory: Path, *, clients: int = 1000, tenants: int = 20, rate: float = 30.0
) -> dict[str, Any]:
    with NetLab(3) as lab:
        row, problems = await run_partition(
            directory,
            lab,
            clients=clients,
            tenants=tuple(f"t{i}" for i in range(tenants)),
            rate=rate,
        )
    row["problems"] = problems[:10]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tidings-partition-"))
    row = asyncio.run(run(directory, clients=args.clients, tenants=args.tenants, rate=args.rate))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
