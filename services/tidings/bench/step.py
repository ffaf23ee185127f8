"""One rate step: offer the rate, wait for what is owed, and measure delivery, latency and CPU.

Apart from the scenario loop because it is the one place that turns raw counters (publisher
answers, the fleet's report and histogram, process samples) into a row of the results.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tidings.bench import profile
from tidings.bench.config import BenchConfig
from tidings.bench.layout import Layout
from tidings.bench.loadgen import Fleet, percentiles
from tidings.bench.procs import Child, busy, rss_bytes, sample
from tidings.bench.systems import System

SATURATED_PCT = 90.0  # our generator processes use this much of their one core: it may limit
BEHIND = 0.97  # publishers reaching less than this share of the offered rate: not a pass


def measure_step(
    cfg: BenchConfig,
    k: int,
    rate: float,
    fleet: Fleet,
    pubs: list[Child],
    groups: dict[str, list[int]],
    system: System,
    layout: Layout,
) -> dict[str, Any]:
    """Run step ``k`` at ``rate`` on a started stack and return its row (``pass`` included)."""
    time.sleep(0.3)
    load = os.getloadavg()[0]
    rss_before = rss_bytes(system.server_pids)
    spy = None
    if system.backend == "jetstream" and cfg.profile_rate == rate:
        raw = cfg.out / f"profile-{cfg.scenario}-R{rate:g}-{time.strftime('%H%M%S')}.txt"
        cfg.out.mkdir(parents=True, exist_ok=True)
        spy = profile.start(system.server_pids[0], cfg.seconds, raw, core=cfg.gen_core)
    before = fleet.report()
    s0 = sample(groups, time.monotonic())
    share = rate / len(pubs)
    for pub in pubs:
        pub.send({"cmd": "step", "step": k, "rate": share, "seconds": cfg.seconds})
    answers = [pub.read(timeout=cfg.seconds * 4 + 60) for pub in pubs]
    s1 = sample(groups, time.monotonic())
    # jspub reports refused, duplicate or unacknowledged publishes in "error" of its "done":
    # they are owed to no one (not in "tenant"/"user") and fail the step, not count as loss
    errors = [a["error"] for a in answers if a.get("error")]
    tenant: dict[int, int] = {}
    users = sent = acked = 0
    for a in answers:
        sent += a.get("sent", 0)
        acked += a.get("acked", a.get("sent", 0))
        users += a.get("user", 0)
        for r, n in a.get("tenant", {}).items():
            tenant[int(r)] = tenant.get(int(r), 0) + n
    expected = layout.expected(tenant, users)
    # wait for the stragglers: until everything owed arrived, or 3 s without progress
    last, last_change = -1, time.monotonic()
    rep = fleet.report()["steps"].get(k, {"received": 0})
    while rep["received"] < expected and time.monotonic() - last_change < 3:
        time.sleep(0.05)
        rep = fleet.report()["steps"].get(k, {"received": 0})
        if rep["received"] != last:
            last, last_change = rep["received"], time.monotonic()
    whole = rep["received"] >= expected
    report = fleet.report()
    st = report["steps"].get(
        k, {"received": 0, "dups": 0, "out_of_order": 0, "gaps": 0, "max_ns": 0}
    )
    hist = fleet.histogram(k)
    p50, p95, p99, p999 = percentiles(hist, [0.5, 0.95, 0.99, 0.999])
    # all in: the publishing time plus the slowest delivery; else up to the last progress
    published_s = max(cfg.seconds, *(a.get("elapsed_s", 0.0) for a in answers))
    span = published_s + st["max_ns"] / 1e9 if whole else max(cfg.seconds, last_change - s0.wall)
    unique = st["received"] - st["dups"]
    publish_rate = sum(a.get("publish_rate", 0.0) for a in answers)
    fanout = expected / sent if sent else 0.0
    usage = busy(s0, s1)
    generator = sum(usage[f"{g}_cpu_pct"] for g in ("clients", "publishers", "broker"))
    row: dict[str, Any] = {
        "rate": rate,
        "offered_per_s": round(rate * fanout),
        "published": sent,
        "acked": acked,
        "publish_rate": round(publish_rate, 1),
        "expected": expected,
        "received": st["received"],
        "delivered_per_s": round(unique / span),
        "lost": max(0, expected - unique),
        "duplicated": st["dups"],
        "out_of_order": st["out_of_order"],
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": round(st["max_ns"] / 1e6, 2),
        "server_rss_mb": round(rss_bytes(system.server_pids) / 2**20, 1),
        "server_rss_growth_mb": round((rss_bytes(system.server_pids) - rss_before) / 2**20, 1),
        **usage,
        "publisher_self_cpu_pct": [a.get("cpu_pct") for a in answers],
        "loadavg_1m": round(load, 2),
        "ws_errors": report.get("errors", 0),
        "closed": report.get("closed", 0),
        "publish_errors": errors,
    }
    # how much one server write carried: deliveries per client read (wsload counts reads)
    reads = report.get("reads", 0) - before.get("reads", 0)
    row["deliveries_per_read"] = round(unique / reads, 2) if reads > 0 else None
    if spy is not None:
        spy.p.wait(cfg.seconds + 30)
        if raw.exists():
            row["profile"] = {"raw": str(raw), **profile.summarize(raw)}
    # CPU per notification: the server under test's, and what makes the publishes
    for g in ("server", "publishers", "broker"):
        row[f"{g}_us_per_n"] = round(usage[f"{g}_cpu_pct"] * 1e4 / max(publish_rate, 1.0), 1)
    row["generator_cpu_pct"] = round(generator, 1)
    row["generator_saturated"] = generator >= SATURATED_PCT
    row["publisher_behind"] = publish_rate < BEHIND * rate
    row["pass"] = (
        row["lost"] == 0
        and row["duplicated"] == 0
        and p99 <= cfg.p99_bound_ms
        and not row["publisher_behind"]
        and not errors
    )
    return row
