"""`benchmarks/live_path.py` still runs against the gateway as it is (mypy checks its types; this
checks that it runs and reports every step), in both of its modes: tenant rooms and single
users."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]

# Stages every run reports (decode_wire and _on_raw where the gateway has them: it does).
STAGES = (
    "nats-py parser (HMSG)",
    "gateway parser (HMSG, routed)",
    "room_of",
    "decode_wire",
    "encode_notification",
    "Live._on_raw (no writes)",
    "Live._on_raw + Hub.flush",
    "Live._on_message + Hub.flush",
)


def run(*argv: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.live_path", *argv, "--rounds", "1", "--json"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    )
    steps: dict[str, float] = orjson.loads(out.stdout)
    return steps


@pytest.mark.parametrize(
    "argv",
    [
        ("--messages", "300"),
        # Single users: 40 connections over 10 tenants, more messages than users (each user
        # gets several) and a batch that does not divide them.
        ("--users", "40", "--rooms", "10", "--messages", "150", "--batch", "4"),
    ],
    ids=["tenant-rooms", "users"],
)
def test_the_live_path_benchmark_runs_and_reports_every_step(argv: tuple[str, ...]) -> None:
    steps = run(*argv)
    assert set(STAGES) <= set(steps), steps
    assert all(us > 0 for us in steps.values()), steps
