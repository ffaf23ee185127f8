"""Rolling upgrade: every gateway in turn drained (SIGTERM) and restarted behind nginx, under load.

The test suite runs the same code reduced (tests/integration/test_cluster_rolling.py).
``python -m benchmarks.faults --scenarios rolling``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.fault_load import tenant_names
from tests.support.rolling import run_rolling

NAME = "rolling"
FAULT = "each of 3 gateways drained (SIGTERM, 5 s) and restarted in turn behind nginx"


async def run(
    directory: Path,
    *,
    clients: int = 1000,
    tenants: int = 20,
    rate: float = 30.0,
    drain: float = 5.0,
) -> tuple[dict[str, Any], list[str]]:
    return await run_rolling(
        directory,
        clients=clients,
        tenants=tenant_names(tenants),
        rate=rate,
        drain=drain,
    )
