"""`tidings bench` run as a user runs it: a tiny sweep against the real stack and nats-server.

Publisher processes → JetStream → a real `tidings gateway` process → 20 WebSocket clients held
by the C load client; nats-server's own WebSocket listener beside it. The result file must
account for every delivery the stream owed (none lost, duplicated or reordered) and carry the
fields a reader of RESULTS.md relies on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_accounts_for_every_delivery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "tidings", "bench", "--scenario", "smoke",
            "--systems", "tidings,nats", "--clients", "20", "--rooms", "2",
            "--rates", "50,100", "--seconds", "1", "--user-share", "0.2",
            "--publishers", "2", "--nice", "0", "--max-minutes", "2", "--out", str(tmp_path),
        ],
        cwd=ROOT, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result_file,) = tmp_path.glob("bench-smoke-*.json")
    result = orjson.loads(result_file.read_bytes())
    assert (tmp_path / result_file.with_suffix(".png").name).stat().st_size > 10_000

    assert result["config"]["clients"] == 20
    assert result["machine"]["cpus"] == os.cpu_count()
    for name in ("tidings", "nats"):
        (sweep,) = [s for s in result["sweeps"] if s["system"] == name]
        assert "error" not in sweep, sweep.get("error")
        assert sweep["connect"]["ready"] == 20
        assert sweep["kb_per_conn"] > 0
        assert [r["rate"] for r in sweep["steps"]] == [50, 100]
        for row in sweep["steps"]:
            # 2 rooms of 10: a tenant publish owes 10 deliveries, a user publish 1
            assert row["published"] == row["rate"]
            assert row["expected"] > row["published"]
            assert row["received"] == row["expected"], row
            assert (row["lost"], row["duplicated"], row["out_of_order"]) == (0, 0, 0)
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"] + 0.02
            assert row["server_rss_mb"] > 0 and row["server_cpu_pct"] >= 0
            assert row["publisher_behind"] is False
        summary = result["summary"][name]
        assert [r["rate"] for r in summary["rates"]] == [50, 100]
        assert summary["errors"] == []
    assert "tidings — 20 clients / 2 rooms" in done.stdout
