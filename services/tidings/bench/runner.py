"""Scenario runner: rate sweeps and idle memory, every system side by side, interleaved rounds.

Per (round, system) a fresh stack: the system's server pinned to the server core; its broker,
the publishers, the load clients (and this process) on the generator core. Per step the
publishers offer rate R for ``seconds``; the runner then waits until every owed delivery
arrived (or nothing moved for 3 s) and records deliveries/s, lost/duplicated/out-of-order
deliveries, latency percentiles (publish → receipt, one clock), server CPU% and RSS, generator
CPU% and each core's busy share, and the load average.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tidings.bench import profile
from tidings.bench.layout import Layout
from tidings.bench.loadgen import JSPUB_SOURCE, Fleet, build, percentiles
from tidings.bench.procs import Child, busy, pin, rss_bytes, sample
from tidings.bench.publish import c_argv, data_bytes, write_targets
from tidings.bench.systems import System, make
from tidings.errors import BenchFailed

HOPELESS = 5.0  # a step with loss or p99 past 5x the bound ends that sweep
SATURATED_PCT = 90.0  # our generator processes use this much of their one core: it may limit
BEHIND = 0.97  # publishers reaching less than this share of the offered rate: not a pass

Progress = Callable[[str, bool], None]  # (what runs now, whether a step finished)


@dataclass
class BenchConfig:
    """Everything a run needs; defaults are the issue's one-room scenario."""

    scenario: str = "one-room"
    clients: int = 1000
    rooms: int = 1
    rates: list[float] = field(default_factory=lambda: [100, 200, 500, 1000, 2000])
    seconds: float = 5.0
    systems: list[str] = field(default_factory=lambda: ["tidings", "nats", "socketio-node"])
    rounds: int = 1
    p99_bound_ms: float = 50.0
    user_share: float = 0.0
    publishers: int = 2
    per_process: int = 5000
    server_core: int | None = 0
    gen_core: int | None = 1
    nice: int = -10
    storage: str = "file"
    window: float | None = None
    publisher: str = "c"  # Tidings' publishers: "c" (jspub) or "python" (publish_many)
    idle_clients: int = 0
    idle_only: bool = False
    connect_timeout: float = 120.0
    max_minutes: float = 30.0
    profile_rate: float | None = None  # py-spy the Tidings gateway during this step
    out: Path = Path("benchmarks/results")

    @property
    def layout(self) -> Layout:
        return Layout(self.clients, self.rooms, self.user_share)


def peer_pad() -> int:
    """Padding that gives the peers' messages about the size of a Tidings notification line."""
    from tidings.bench.publish import EVENT, MESSAGE, TITLE
    from tidings.envelope import Notification
    from tidings.protocol import encode_notification
    from tidings.publishing import PublishPolicy, prepare

    data = data_bytes(0, 0, 0, 0)
    body = {"tenant": "t0", "event": EVENT, "title": TITLE, "message": MESSAGE}
    note = Notification.from_bytes(
        prepare({**body, "severity": "warning"}, PublishPolicy()).payload
    )
    line = encode_notification(dataclasses.replace(note, data=data), 1, "tenant")
    return max(0, len(line) - len(data) - 7)


class Runner:
    def __init__(self, cfg: BenchConfig, progress: Progress = lambda what, step: None) -> None:
        self.cfg = cfg
        self.progress = progress
        self.binary = build()
        self._jspub: Path | None = None
        self.started = time.monotonic()
        self.pad = peer_pad()
        self.tmp = Path(tempfile.mkdtemp(prefix="tidings-bench-"))

    def left(self) -> float:
        return self.cfg.max_minutes * 60 - (time.monotonic() - self.started)

    def _system(self, name: str, tag: str) -> System:
        cfg = self.cfg
        workdir = self.tmp / f"{name}-{tag}"
        workdir.mkdir(parents=True, exist_ok=True)
        return make(
            name,
            workdir,
            server_core=cfg.server_core,
            gen_core=cfg.gen_core,
            nice=cfg.nice,
            storage=cfg.storage,
            window=cfg.window,
            publisher=cfg.publisher,
        )

    def _publisher(self, system: System, opts: dict[str, Any], w: int) -> Child:
        """One publisher process: jspub for Tidings by default, else the Python publisher."""
        if system.publisher == "c":
            if self._jspub is None:
                self._jspub = build(source=JSPUB_SOURCE)
            targets = system.workdir / f"pub{w}-targets.txt"
            write_targets(targets, self.cfg.layout, w, opts["workers"])
            argv = c_argv(self._jspub, opts, targets)
        else:
            argv = [sys.executable, "-m", "tidings.bench.publish", json.dumps(opts)]
        log = system.workdir / f"pub{w}.log"
        return Child(argv, core=self.cfg.gen_core, nice=self.cfg.nice, log=log)

    def _fleet(self, system: System, layout: Layout, first: int, count: int, tag: str) -> Fleet:
        specs = [system.spec(i, layout) for i in range(first, first + count)]
        workdir = system.workdir / tag
        workdir.mkdir(exist_ok=True)
        return Fleet(
            self.binary,
            system.proto,
            system.port,
            specs,
            workdir=workdir,
            core=self.cfg.gen_core,
            nice=self.cfg.nice,
            per_process=self.cfg.per_process,
            connect_timeout=self.cfg.connect_timeout,
        )

    # -- rate sweep ----------------------------------------------------------------------

    def sweep(self, name: str, rnd: int) -> dict[str, Any]:
        cfg, layout = self.cfg, self.cfg.layout
        system = self._system(name, f"r{rnd}")
        fleet: Fleet | None = None
        pubs: list[Child] = []
        rows: list[dict[str, Any]] = []
        info: dict[str, Any] = {"system": name, "round": rnd}
        info["publisher"] = system.publisher_label
        try:
            self.progress(f"{name} r{rnd}: starting", False)
            system.start(layout)
            time.sleep(0.5)
            rss0 = rss_bytes(system.server_pids)
            self.progress(f"{name} r{rnd}: connecting {cfg.clients:,} clients", False)
            fleet = self._fleet(system, layout, 0, cfg.clients, "clients")
            info["connect"] = conn = fleet.wait_connected()
            if conn["ready"] < cfg.clients:
                raise BenchFailed(
                    f"only {conn['ready']} of {cfg.clients} clients got ready: {conn}"
                )
            time.sleep(1.0)
            rss1 = rss_bytes(system.server_pids)
            info["server_rss_mb_idle"] = round(rss1 / 2**20, 1)
            info["kb_per_conn"] = round((rss1 - rss0) / cfg.clients / 1024, 2)
            workers = layout.max_publishers(cfg.publishers)
            for w in range(workers):
                opts = {
                    **system.publisher_options(),
                    "clients": cfg.clients,
                    "rooms": cfg.rooms,
                    "user_share": cfg.user_share,
                    "worker": w,
                    "workers": workers,
                    "pad": 0 if system.backend == "jetstream" else self.pad,
                }
                pubs.append(self._publisher(system, opts, w))
            for pub in pubs:
                ready = pub.read(timeout=30)
                if ready.get("event") != "ready":
                    raise BenchFailed(f"a publisher did not start: {ready}")
            info["publishers"] = workers
            groups = {
                "server": system.server_pids,
                "clients": fleet.pids,
                "publishers": [p.pid for p in pubs],
                "broker": system.broker_pids,
            }
            hopeless = False
            for k, rate in enumerate(cfg.rates):
                if hopeless or self.left() < cfg.seconds + 10:
                    rows.append(
                        {"rate": rate, "skipped": "hopeless" if hopeless else "time budget"}
                    )
                    self.progress(f"{name} r{rnd}: R={rate:g} skipped", True)
                    continue
                self.progress(f"{name} r{rnd}: R={rate:g}/s for {cfg.seconds:g}s", False)
                row = self._step(k, rate, fleet, pubs, groups, system, layout)
                rows.append(row)
                self.progress(
                    f"{name} r{rnd}: R={rate:g} → {row['delivered_per_s']:,.0f}/s "
                    f"p99 {row['p99_ms']:.1f} ms lost {row['lost']}",
                    True,
                )
                if row["lost"] > 0 or row["p99_ms"] > HOPELESS * cfg.p99_bound_ms:
                    hopeless = True
        except BenchFailed as exc:
            info["error"] = str(exc)[:2000]
            self.progress(f"{name} r{rnd}: ERROR {str(exc)[:200]}", False)
        finally:
            for pub in pubs:
                pub.stop('{"cmd":"quit"}')
            if fleet is not None:
                fleet.stop()
            system.stop()
        done = {r.get("rate") for r in rows}
        for rate in cfg.rates:
            if rate not in done:
                rows.append({"rate": rate, "skipped": "error"})
                self.progress(f"{name} r{rnd}: R={rate:g} skipped", True)
        info["steps"] = rows
        return info

    def _step(
        self,
        k: int,
        rate: float,
        fleet: Fleet,
        pubs: list[Child],
        groups: dict[str, list[int]],
        system: System,
        layout: Layout,
    ) -> dict[str, Any]:
        cfg = self.cfg
        time.sleep(0.3)
        load = os.getloadavg()[0]
        rss_before = rss_bytes(system.server_pids)
        spy = None
        if system.backend == "jetstream" and cfg.profile_rate == rate:
            raw = cfg.out / f"profile-{cfg.scenario}-R{rate:g}-{time.strftime('%H%M%S')}.txt"
            cfg.out.mkdir(parents=True, exist_ok=True)
            spy = profile.start(system.server_pids[0], cfg.seconds, raw, core=cfg.gen_core)
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
        span = (
            published_s + st["max_ns"] / 1e9 if whole else max(cfg.seconds, last_change - s0.wall)
        )
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
        if spy is not None:
            spy.p.wait(cfg.seconds + 30)
            if raw.exists():
                row["profile"] = {"raw": str(raw), **profile.summarize(raw)}
        # CPU per notification of what makes the publishes: the publishers and the broker
        for g in ("publishers", "broker"):
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

    # -- idle memory ---------------------------------------------------------------------

    def idle(self, name: str) -> dict[str, Any]:
        """RSS per idle authenticated connection: warm up with a few, then add ``idle_clients``."""
        cfg = self.cfg
        n = cfg.idle_clients
        layout = Layout(n + 100, min(cfg.rooms, n), 0.0)
        system = self._system(name, "idle")
        fleets: list[Fleet] = []
        out: dict[str, Any] = {"system": name, "clients": n}
        try:
            self.progress(f"{name} idle: starting", False)
            system.start(layout)
            warm = self._fleet(system, layout, n, 100, "warm")
            fleets.append(warm)
            warm.wait_connected()
            time.sleep(1.0)
            rss0 = rss_bytes(system.server_pids)
            self.progress(f"{name} idle: connecting {n:,} clients", False)
            fleet = self._fleet(system, layout, 0, n, "idle")
            fleets.append(fleet)
            t0 = time.monotonic()
            conn = fleet.wait_connected()
            out["connect"] = conn
            out["connect_per_s"] = round(conn["ready"] / max(1e-3, time.monotonic() - t0))
            time.sleep(2.0)
            rss1 = rss_bytes(system.server_pids)
            out |= {
                "ready": conn["ready"],
                "baseline_rss_mb": round(rss0 / 2**20, 1),
                "loaded_rss_mb": round(rss1 / 2**20, 1),
                "kb_per_conn": round((rss1 - rss0) / max(1, conn["ready"]) / 1024, 2),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        except BenchFailed as exc:
            out["error"] = str(exc)[:2000]
        finally:
            for f in fleets:
                f.stop()
            system.stop()
            self.progress(f"{name} idle: done", True)
        return out

    # -- everything ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        pin(0, cfg.gen_core)  # keep the runner off the server's core
        rounds: list[dict[str, Any]] = []
        try:
            if not cfg.idle_only:
                for r in range(cfg.rounds):
                    k = r % len(cfg.systems)
                    for name in cfg.systems[k:] + cfg.systems[:k]:
                        rounds.append(self.sweep(name, r))
            idle = [self.idle(name) for name in cfg.systems] if cfg.idle_clients else []
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return {
            "summary": summarize(rounds, cfg),
            "sweeps": rounds,
            "idle": idle,
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }


def summarize(sweeps: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    """Medians over rounds per (system, rate); the max rate passing with every lower one."""
    out: dict[str, Any] = {}
    for name in cfg.systems:
        mine = [s for s in sweeps if s["system"] == name]
        per_rate: list[dict[str, Any]] = []
        best: float | None = None
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
                "publishers_us_per_n",
                "broker_us_per_n",
                "loadavg_1m",
            ):
                agg[key] = round(med(key), 2)
            for key in (f"core{cfg.server_core}_busy_pct", f"core{cfg.gen_core}_busy_pct"):
                if all(key in r for r in rows):
                    agg[key] = round(med(key), 1)
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
                best = rate
            per_rate.append(agg)
        errors = [s["error"] for s in mine if "error" in s]
        kb = [s["kb_per_conn"] for s in mine if "kb_per_conn" in s]
        out[name] = {
            "publisher": next((s["publisher"] for s in mine if "publisher" in s), None),
            "rates": per_rate,
            "max_rate": best,
            "max_deliveries_per_s": next(
                (r["delivered_per_s"] for r in per_rate if r["rate"] == best), None
            ),
            "kb_per_conn_in_sweep": statistics.median(kb) if kb else None,
            "errors": errors,
        }
    return out


def config_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    return d
