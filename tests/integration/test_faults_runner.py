"""The fault runner (``python -m benchmarks.faults``) at a tiny size, as a user runs it, so the
command and its report cannot rot: one scenario (a gateway killed behind nginx, then restarted)
with a few clients, the report written as JSON and Markdown, exit 0 only when nothing was lost,
duplicated or reordered and every acknowledged publish was stored once. The full runs are in
benchmarks/faults/report.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_fault_runner_reports_a_gateway_kill_with_nothing_lost(tmp_path: Path) -> None:
    out = tmp_path / "report"
    cmd = [
        sys.executable, "-m", "benchmarks.faults", "--scenarios", "gateway_kill",
        "--clients", "24", "--tenants", "3", "--rate", "10", "--timeout", "90", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=150
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(out.with_suffix(".json").read_bytes())
    (row,) = report["scenarios"]
    assert row["scenario"] == "gateway_kill" and row["clients"] == 24 and row["tenants"] == 3
    assert (row["lost"], row["duplicated"], row["reordered"], row["resets"]) == (0, 0, 0, 0)
    assert row["problems"] == []  # this includes any process of the stack left running
    assert row["stored_once"] and row["acknowledged"] == row["stored"] > 0
    assert set(row["acknowledged_by"]) == {"sidecar", "sdk"}  # both publish paths ran
    assert row["disconnected_clients"] >= 1  # the killed gateway held clients; they came back
    assert 0 < row["recovery_p50"] <= row["recovery_p99"] <= row["recovery_max"]
    assert row["peak_rss_mb"] and all(m > 0 for m in row["peak_rss_mb"])
    table = out.with_suffix(".md").read_text()
    assert "| gateway_kill |" in table and "0 / 0 / 0" in table
