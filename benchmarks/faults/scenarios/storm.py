"""Reconnect storm: every client on one gateway behind nginx, that gateway killed (SIGKILL); the
clients, in several processes, reconnect through nginx to the two others at once and resume.

``clients`` are spread over ``processes`` child processes (this machine allows 20,000
descriptors per process) of SDK subscribers (``client="sdk"``) or of the light protocol clients
of tests/support/storm_light.py (``"light"``: picows and uvloop; 10,000 SDK subscribers starve
on two cores). The test suite runs the same code reduced
(tests/integration/test_cluster_storm.py, 2 x 500). ``python -m benchmarks.faults --scenarios
storm --storm-clients 10000 --storm-processes 5 --storm-client light``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.fault_load import tenant_names
from tests.support.storm import run_storm

NAME = "storm"
FAULT = "all clients on gw1, gw1 killed (SIGKILL): all reconnect at once to gw2 + gw3 (cold)"


async def run(
    directory: Path,
    *,
    clients: int = 10000,
    tenants: int = 20,
    rate: float = 20.0,
    processes: int = 5,
    client: str = "sdk",
) -> tuple[dict[str, Any], list[str]]:
    per_process = -(-clients // processes)
    result = await run_storm(
        directory,
        processes=processes,
        per_process=per_process,
        tenants=tenant_names(tenants),
        rate=rate,
        fill_timeout=max(60.0, per_process * processes / 20),
        light=client == "light",
    )
    row = result.row()
    row["processes"] = processes
    problems = list(result.problems)
    if result.problem_count > len(problems):
        problems.append(f"... {result.problem_count} problems in all")
    if not result.stored_once:
        problems.append(f"{result.stored} stored for {result.published} acknowledged")
    if result.left:
        problems.append(f"still running after the stack stopped: {result.left}")
    return row, problems
