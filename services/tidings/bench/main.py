"""Run a benchmark from a configuration: presets, the run itself, and what it leaves behind."""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Any

from tidings.bench.config import BenchConfig, config_dict
from tidings.bench.report import machine, markdown, plot, tables, write_json
from tidings.bench.runner import Progress, Runner
from tidings.errors import BenchFailed

# The scenarios: (clients, rooms, rates in notifications/s);
# deliveries/s = rate x clients/rooms
SCENARIOS: dict[str, tuple[int, int, list[float]]] = {
    "one-room": (1000, 1, [20, 50, 100, 200, 500, 1000, 1500, 2000]),
    "hundred-rooms": (1000, 100, [500, 1000, 2000, 5000, 10000, 15000, 20000]),
    "big-room": (5000, 1, [4, 10, 20, 50, 100, 200, 400]),
    "idle": (19000, 100, []),
    "smoke": (20, 2, [50, 100]),
}

__all__ = ["SCENARIOS", "BenchConfig", "BenchFailed", "run_bench"]


def run_bench(cfg: BenchConfig, *, progress: Progress, console: Any) -> dict[str, Any]:
    """Run ``cfg``; write ``<out>/bench-<scenario>-<time>.json`` and ``.png``; print tables."""
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
