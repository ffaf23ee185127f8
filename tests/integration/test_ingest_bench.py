"""`benchmarks/ingest` still runs against the gateway's direct ingest as it is: a real
nats-server, every nats-py receiver path reporting a figure (``nats-core`` needs Python 3.13
and is left out here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_ingest_benchmark_runs_and_reports_every_receiver() -> None:
    receivers = ["queue@asyncio", "direct@asyncio", "direct@uvloop"]
    argv = ["--count", "400", "--tenants", "5", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest.run", *argv, "--receivers", ",".join(receivers)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
    assert set(rows) == set(receivers), out.stdout
    assert all(float(cells[0]) > 0 for cells in rows.values()), out.stdout
