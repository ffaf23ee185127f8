"""Medians over interleaved rounds, so one noisy round does not decide a system's max rate."""

from __future__ import annotations

import statistics
from typing import Any

from tidings.bench.config import BenchConfig


def summarize(sweeps: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    """Medians over rounds per (system, rate), and the highest passing rate.

    ``max_rate`` is the highest rate that passed (median over rounds). A server's latency need
    not grow with the rate: nats-server's WebSocket writes one frame per message at moderate
    rates and coalesces under load, so it can fail at 5,000/s and pass at 10,000/s. The
    stricter ``max_rate_all_lower`` (every lower rate passed too) and ``failed_below`` (the
    failing rates under ``max_rate``) are kept beside it so such a curve stays visible."""
    out: dict[str, Any] = {}
    for name in cfg.systems:
        mine = [s for s in sweeps if s["system"] == name]
        per_rate: list[dict[str, Any]] = []
        best: float | None = None
        strict: float | None = None
        ok = True
        for rate in cfg.rates:
            rows = [r for s in mine for r in s["steps"] if r.get("rate") == rate and "lost" in r]
            if not rows:
                per_rate.append({"rate": rate, "runs": 0})
                ok = False
                continue

            def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
                return float(statistics.median(r[key] for r in rows))

            agg: dict[str, Any] = {"rate": rate, "runs": len(rows)}
            for key in (
                "offered_per_s",
                "delivered_per_s",
                "publish_rate",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "max_ms",
                "server_cpu_pct",
                "server_rss_mb",
                "clients_cpu_pct",
                "publishers_cpu_pct",
                "broker_cpu_pct",
                "generator_cpu_pct",
                "server_us_per_n",
                "publishers_us_per_n",
                "broker_us_per_n",
                "loadavg_1m",
            ):
                agg[key] = round(med(key), 2)
            for key in (f"core{cfg.server_core}_busy_pct", f"core{cfg.gen_core}_busy_pct"):
                if all(key in r for r in rows):
                    agg[key] = round(med(key), 1)
            per_read = [r["deliveries_per_read"] for r in rows if r.get("deliveries_per_read")]
            agg["deliveries_per_read"] = (
                round(float(statistics.median(per_read)), 2) if per_read else None
            )
            agg["lost"] = sum(r["lost"] for r in rows)
            agg["duplicated"] = sum(r["duplicated"] for r in rows)
            agg["out_of_order"] = sum(r["out_of_order"] for r in rows)
            agg["p99_ms_runs"] = [r["p99_ms"] for r in rows]
            agg["generator_saturated"] = any(r["generator_saturated"] for r in rows)
            agg["publisher_behind"] = any(r["publisher_behind"] for r in rows)
            # as the transport benchmark: nothing lost, duplicated or refused in any round, the
            # publishers kept up, and the median p99 within the bound
            agg["pass"] = (
                agg["lost"] == 0
                and agg["duplicated"] == 0
                and not agg["publisher_behind"]
                and not any(r["publish_errors"] for r in rows)
                and agg["p99_ms"] <= cfg.p99_bound_ms
            )
            ok = ok and agg["pass"]
            if ok:
                strict = rate
            if agg["pass"]:
                best = rate
            per_rate.append(agg)
        errors = [s["error"] for s in mine if "error" in s]
        kb = [s["kb_per_conn"] for s in mine if "kb_per_conn" in s]
        out[name] = {
            "publisher": next((s["publisher"] for s in mine if "publisher" in s), None),
            "receiver": next((s["receiver"] for s in mine if "receiver" in s), None),
            "rates": per_rate,
            "max_rate": best,
            "max_rate_all_lower": strict,
            "failed_below": [
                r["rate"]
                for r in per_rate
                if best is not None and r["rate"] < best and not r.get("pass")
            ],
            "max_deliveries_per_s": next(
                (r["delivered_per_s"] for r in per_rate if r["rate"] == best), None
            ),
            "kb_per_conn_in_sweep": statistics.median(kb) if kb else None,
            "errors": errors,
        }
    return out
