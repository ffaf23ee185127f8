"""Rolling upgrade: every gateway in turn drained (SIGTERM) and restarted behind nginx, under load.

``python -m benchmarks.faults.scenarios.rolling --clients 1000 --tenants 20`` prints the row as
JSON (and the problems found, if any). The test suite runs the same code reduced
(tests/integration/test_cluster_rolling.py, 90 clients).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.support.rolling import run_rolling

NAME = "rolling"


async def run(
    directory: Path,
    *,
    clients: int = 1000,
    tenants: int = 20,
    rate: float = 30.0,
    drain: float = 5.0,
) -> dict[str, Any]:
    row, problems = await run_rolling(
        directory,
        clients=clients,
        tenants=tuple(f"t{i}" for i in range(tenants)),
        rate=rate,
        drain=drain,
    )
    row["problems"] = problems[:10]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tidings-rolling-"))
    row = asyncio.run(
        run(directory, clients=args.clients, tenants=args.tenants, rate=args.rate, drain=args.drain)
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
