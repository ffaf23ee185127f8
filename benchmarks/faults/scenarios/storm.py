"""Reconnect storm: every client on one gateway behind nginx, that gateway killed (SIGKILL); the
clients, in several processes, reconnect through nginx to the two others at once and resume.

``python -m benchmarks.faults.scenarios.storm --processes 5 --per-process 2000`` (10,000
connections; this machine allows 20,000 descriptors per process) prints the row as JSON. The
test suite runs the same code reduced (tests/integration/test_cluster_storm.py, 2 x 500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.support.storm import run_storm

NAME = "storm"


async def run(
    directory: Path,
    *,
    processes: int = 5,
    per_process: int = 2000,
    tenants: int = 20,
    rate: float = 20.0,
) -> dict[str, Any]:
    result = await run_storm(
        directory,
        processes=processes,
        per_process=per_process,
        tenants=tuple(f"t{i}" for i in range(tenants)),
        rate=rate,
        fill_timeout=600.0,
    )
    row = result.row()
    row["problems"] = result.problems[:10]
    row["left_running"] = result.left
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--per-process", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tidings-storm-"))
    row = asyncio.run(
        run(
            directory,
            processes=args.processes,
            per_process=args.per_process,
            tenants=args.tenants,
            rate=args.rate,
        )
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
