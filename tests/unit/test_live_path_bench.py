"""`benchmarks/live_path.py` still runs against the gateway as it is (mypy checks its types; this
checks that it runs and reports every step)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_the_live_path_benchmark_runs_and_reports_every_step() -> None:
    argv = ["--messages", "300", "--rounds", "1", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.live_path", *argv],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    )
    steps = orjson.loads(out.stdout)
    assert "Live._on_message + Hub.flush" in steps
    assert "decode_wire" in steps
    assert all(us > 0 for us in steps.values()), steps
