"""Run a benchmark from a configuration: presets, the run itself, and what it leaves behind."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from tidings.bench.config import BenchConfig, config_dict
from tidings.bench.report import machine, markdown, plot, tables, write_json
from tidings.bench.runner import Progress, Runner
from tidings.errors import BenchFailed


@dataclass(frozen=True, slots=True)
class Preset:
    """One scenario: clients, tenant rooms, rates (notifications/s per step), share to users.

    Deliveries/s = rate x clients/rooms for tenant publishes, = rate for user publishes."""

    clients: int
    rooms: int
    rates: list[float]
    user_share: float = 0.0


USER_RATES = [1000.0, 2000, 5000, 10000, 20000, 30000, 40000]
SCENARIOS: dict[str, Preset] = {
    "one-room": Preset(1000, 1, [20, 50, 100, 200, 500, 1000, 1500, 2000]),
    "hundred-rooms": Preset(1000, 100, [500, 1000, 2000, 5000, 10000, 15000, 20000]),
    "big-room": Preset(5000, 1, [4, 10, 20, 50, 100, 200, 400]),
    "idle": Preset(19000, 100, []),
    "smoke": Preset(20, 2, [50, 100]),
    # single users: every notification to ONE of 10,000 connected users
    "users": Preset(10000, 100, USER_RATES, user_share=1.0),
    "users-1000": Preset(10000, 1000, USER_RATES, user_share=1.0),
    "users-each": Preset(10000, 10000, USER_RATES, user_share=1.0),  # a tenant per user
    "users-smoke": Preset(20, 2, [50, 100], user_share=1.0),
}

__all__ = ["SCENARIOS", "BenchConfig", "BenchFailed", "Preset", "run_bench"]


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_bench(cfg: BenchConfig, *, progress: Progress, console: Any) -> dict[str, Any]:
    """Run ``cfg``; write ``<out>/bench-<scenario>-<time>.json`` and ``.png``; print tables.

    SIGTERM ends the run like Ctrl-C: the runner's ``finally`` blocks stop every server, broker,
    publisher and load client it started (by default SIGTERM would leave them running)."""
    signal.signal(signal.SIGTERM, _terminated)
    info = machine()
    result: dict[str, Any] = {
        "machine": info,
        "command": " ".join(shlex.quote(a) for a in ["tidings", *sys.argv[1:]]),
        "config": config_dict(cfg),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    result |= Runner(cfg, progress).run()
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stem = cfg.out / f"bench-{cfg.scenario}-{time.strftime('%Y%m%dT%H%M%S')}"
    write_json(result, stem.with_suffix(".json"))
    result["files"] = {"json": str(stem.with_suffix(".json"))}
    png = plot(result, stem.with_suffix(".png")) if cfg.rates and not cfg.idle_only else None
    if png is not None:
        result["files"]["png"] = str(png)
    elif cfg.rates and not cfg.idle_only:
        console.print(
            "[yellow]matplotlib is not installed: no PNG (pip install 'tidings[bench]')[/]"
        )
    write_json(result, stem.with_suffix(".json"))
    stem.with_suffix(".md").write_text(markdown(result))
    result["files"]["md"] = str(stem.with_suffix(".md"))
    tables(result, console)
    return result
