"""Scenario runner: rate sweeps and idle memory, every system side by side, interleaved rounds.

Per (round, system) a fresh stack: the system's server pinned to the server core; its broker,
the publishers, the load clients (and this process) on the generator core. Per step the
publishers offer rate R for ``seconds``; the runner then waits until every owed delivery
arrived (or nothing moved for 3 s) and records deliveries/s, lost/duplicated/out-of-order
deliveries, latency percentiles (publish → receipt, one clock), server CPU% and RSS, generator
CPU% and each core's busy share, and the load average (``tidings.bench.step`` measures a step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidings.bench.config import BenchConfig
from tidings.bench.layout import Layout
from tidings.bench.loadgen import JSPUB_SOURCE, Fleet, build
from tidings.bench.procs import Child, pin, rss_bytes
from tidings.bench.publish import c_argv, data_bytes, write_targets
from tidings.bench.step import measure_step
from tidings.bench.summary import summarize
from tidings.bench.systems import RECEIVERS, System, make, receiver_argv
from tidings.errors import BenchFailed

HOPELESS = 5.0  # a step with loss or p99 past 5x the bound ends that sweep

Progress = Callable[[str, bool], None]  # (what runs now, whether a step finished)


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
            write_targets(targets, self.cfg.layout, w, opts["workers"], system.backend)
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
            receiver_argv(system, self.binary),
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
        info["receiver"] = RECEIVERS[system.receiver]
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
                row = measure_step(cfg, k, rate, fleet, pubs, groups, system, layout)
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
