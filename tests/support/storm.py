"""The reconnect storm, as one function the test suite (reduced) and benchmarks/faults (10,000
connections) both run.

Every client (in child processes: :mod:`tests.support.storm_clients`) connects through nginx
while only gw1 runs; then gw2 and gw3 start, and gw1 is killed (SIGKILL: no drain, no close
frames). Every client reconnects through nginx at once to the two others and resumes there:
those gateways never held these tenants, so each resume needs what was stored while the client
was away, read from JetStream. :class:`StormResult` holds what a user and an operator check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from tests.support.cluster_stack import SidecarPublisher, alive, cluster_stack, connections
from tests.support.fault_load import Alternating, Tally, cpu_seconds, peak_rss_mb, quantile
from tests.support.jetstream_reads import JetStreamReads
from tests.support.load_clients import SteadyPublisher, read_stream
from tests.support.storm_clients import StormProcess
from tests.support.waiting import until
from tidings.client import Publisher

__all__ = ["StormResult", "peak_rss_mb", "quantile", "run_storm"]


@dataclass(slots=True)
class StormResult:
    clients: int
    tenants: int
    rate: float
    filled: float = 0.0  # seconds to connect every client to gw1
    back: float = 0.0  # kill to every client counted by gw2 + gw3
    outages: list[float] = field(default_factory=list)  # per client: disconnected to live
    problems: list[str] = field(default_factory=list)  # lost, duplicated, reordered, resets
    problem_count: int = 0
    tally: dict[str, int] = field(default_factory=dict)  # lost, duplicated, reordered, ...
    acknowledged_by: dict[str, int] = field(default_factory=dict)  # sidecar, sdk
    stored: int = 0
    moved: int = 0
    published: int = 0
    stored_once: bool = False
    deliveries: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # JetStream API requests by verb
    backfills: int = 0
    most_backfills: int = 0  # per gateway and tenant
    most_tenant_backfills: int = 0  # per gateway, for one tenant's room
    most_broadcast_backfills: int = 0  # per gateway, for the broadcast room
    top_backfills: list[str] = field(default_factory=list)  # the three largest pairs
    peak_rss_mb: list[float] = field(default_factory=list)  # gw2, gw3
    cpu_s: dict[str, float] = field(default_factory=dict)  # kill to all back, per process
    left: list[int] = field(default_factory=list)  # processes still running afterwards
    client: str = "sdk"  # or "light" (tests.support.storm_light)
    # light clients: p50 / p99 / max of each step of the outage (StormResult.phase_table)
    phases: dict[str, list[float]] = field(default_factory=dict)
    loop_lag: list[dict[str, float]] = field(default_factory=list)  # per client process
    client_gc: list[dict[str, float]] = field(default_factory=list)  # per client process
    error_counts: dict[str, int] = field(default_factory=dict)  # error frames the clients got
    machine_busy: float = 0.0  # kill to all back: share of the machine's cores busy (anyone's)
    run_cpu_s: float = 0.0  # of which this run's processes (those in cpu_s)

    def row(self) -> dict[str, Any]:
        o = self.outages
        return {
            "scenario": "storm",
            "client": self.client,
            "clients": self.clients,
            "tenants": self.tenants,
            "rate": self.rate,
            **self.tally,
            "lost_or_duplicated": self.problem_count,
            "acknowledged": self.published,
            "acknowledged_by": self.acknowledged_by,
            "stored": self.stored,
            "stored_once": self.stored_once,
            "recovery_p50": round(quantile(o, 0.5), 2),
            "recovery_p99": round(quantile(o, 0.99), 2),
            "recovery_max": round(max(o, default=0.0), 2),
            "recovery_is": "disconnected→live",
            "disconnected_clients": self.moved,
            "all_back_s": round(self.back, 2),
            "jetstream_calls": self.calls,
            "backfills": self.backfills,
            "most_backfills_per_gateway_tenant": self.most_backfills,
            "top_backfills": self.top_backfills,
            "peak_rss_mb": [round(m) for m in self.peak_rss_mb],
            "deliveries": self.deliveries,
            "cpu_s_kill_to_all_back": self.cpu_s,
            "phases": self.phases,
            "client_loop_lag_s": self.loop_lag,
            "client_gc": self.client_gc,
            "error_frames": self.error_counts,
            "machine_busy": self.machine_busy,
            "run_cpu_s": self.run_cpu_s,
        }


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, every core (``/proc/stat``)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


async def _sample(
    watched: dict[str, int], samples: list[tuple[float, dict[str, float], tuple[int, int]]]
) -> None:
    """Every 0.5 s: each watched process's CPU so far and the machine's ticks."""
    while True:
        cpu = {}
        for name, pid in watched.items():
            with contextlib.suppress(OSError):
                cpu[name] = cpu_seconds(pid)
        samples.append((time.monotonic(), cpu, machine_jiffies()))
        await asyncio.sleep(0.5)


def cpu_between(
    samples: list[tuple[float, dict[str, float], tuple[int, int]]], start: float, end: float
) -> tuple[dict[str, float], float, float]:
    """CPU seconds per process between the samples nearest ``start`` and ``end``, their sum,
    and the share of the machine's cores busy meanwhile (anyone's processes)."""
    if not samples:
        return {}, 0.0, 0.0
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    used = {k: round(last[1][k] - v, 1) for k, v in first[1].items() if k in last[1]}
    busy, total = (a - b for a, b in zip(last[2], first[2], strict=True))
    return used, round(sum(used.values()), 1), round(busy / max(1, total), 2)


PHASES = ("lost", "backoff", "retrying", "upgrade", "hello", "resume", "attempts")


def phase_table(phases: list[dict[str, float]], killed: float) -> dict[str, list[float]]:
    """p50 / p99 / max of each step of the light clients' outages: ``lost`` is the kill to
    the socket's loss as the client saw it (the same monotonic clock in every process)."""
    if not phases:
        return {}
    steps = {name: [p[name] for p in phases if name in p] for name in PHASES[1:]}
    steps["lost"] = [p["down"] - killed for p in phases]
    table = {
        name: [round(quantile(steps[name], q), 3) for q in (0.5, 0.99)]
        + [round(max(steps[name]), 3)]
        for name in PHASES
    }
    # How many clients reached each step, per second after the kill: a flat rate is a
    # throughput limit somewhere, a gap is a wait.
    for name, ends in (("upgraded", ("backoff", "retrying", "upgrade")), ("synced", PHASES[1:6])):
        seconds = Counter(int(p["down"] - killed + sum(p[e] for e in ends)) for p in phases)
        table[f"{name}_per_s"] = [float(seconds[s]) for s in range(max(seconds) + 1)]
    return table


async def run_storm(
    directory: Path,
    *,
    processes: int,
    per_process: int,
    tenants: tuple[str, ...],
    rate: float,
    fill_timeout: float = 180.0,
    light: bool = False,
) -> StormResult:
    total = processes * per_process
    result = StormResult(total, len(tenants), rate, client="light" if light else "sdk")
    async with cluster_stack(directory, gateways=3, start_timeout=60) as stack:
        started = stack.pids()
        gw1, gw2, gw3 = stack.gateways
        await asyncio.gather(gw2.stop(), gw3.stop())  # every client lands on gw1
        nc = await nats.connect(stack.cluster.urls)
        js = nc.jetstream(timeout=5)
        reads = await JetStreamReads().start(stack.cluster.urls)
        sidecar = SidecarPublisher(stack.publisher.url)
        paths = Alternating(
            sidecar=sidecar, sdk=Publisher(nc.jetstream(timeout=2), timeout=2, allow_broadcast=True)
        )
        storms = [
            StormProcess(
                f"p{i}",
                url=stack.ingress.ws_url,
                nats_urls=stack.cluster.urls,
                count=per_process,
                tenants=tenants,
                log=directory / f"storm{i}.log",
                timeout=fill_timeout,
                light=light,
            )
            for i in range(processes)
        ]
        pub: SteadyPublisher | None = None
        try:
            filled = await asyncio.gather(*(s.ready(timeout=fill_timeout) for s in storms))
            result.filled = max(filled)

            async def all_on_gw1() -> bool:  # a client that timed out under load comes back
                return (await connections(stack))[0] == total

            await until(all_on_gw1, timeout=60, interval=0.5, what=f"all {total} on gw1")
            start = int((await js.stream_info("TIDINGS")).state.last_seq)
            pub = SteadyPublisher(paths, rate=rate, run="st", tenants=tenants).start()
            await pub.until(int(rate), timeout=20)
            await asyncio.gather(gw2.started(timeout=60), gw3.started(timeout=60))
            started += stack.pids()
            reads.reset()
            watched = {g.name: g.pid for g in (gw2, gw3) if g.pid is not None}
            watched |= {f"clients-{s.name}": s.process.pid for s in storms}
            watched["nats-leader"] = stack.cluster.nodes[
                await stack.cluster.stream_leader("TIDINGS")
            ].process.pid
            watched |= {f"nginx-{i}": pid for i, pid in enumerate(stack.ingress.pids())}
            leader_pid = watched["nats-leader"]
            watched |= {
                f"nats-{i}": n.process.pid
                for i, n in enumerate(stack.cluster.nodes)
                if n.process is not None and n.process.pid != leader_pid
            }
            if stack.publisher.process is not None:
                watched["sidecar"] = stack.publisher.process.pid
            watched["runner"] = os.getpid()  # the publishers, the read counter
            samples: list[tuple[float, dict[str, float], tuple[int, int]]] = []
            sampler = asyncio.ensure_future(_sample(watched, samples))
            await until(lambda: bool(samples), timeout=10, interval=0.05, what="a CPU sample")
            killed = time.monotonic()
            await gw1.kill()

            async def everyone_back() -> bool:
                try:
                    return sum(await connections(stack)) == total
                except httpx.TransportError:  # a gateway busy with the storm: ask again
                    return False

            await until(everyone_back, timeout=fill_timeout, interval=0.2, what="all back")
            result.back = time.monotonic() - killed

            await pub.until(len(pub.results) + int(2 * rate), timeout=30)
            published = await pub.stop()
            result.published = len(published)
            result.acknowledged_by = dict(paths.acknowledged)
            stored = await read_stream(js, start=start + 1, timeout=60)
            ids = Counter(s.id for s in stored)
            result.stored = len(stored)
            result.stored_once = len(stored) == len(published) and all(
                ids[r.id] == 1 for r in published
            )
            for s in storms:
                s.check(start)
            reports = await asyncio.gather(*(s.report(timeout=fill_timeout) for s in storms))
            result.problems = [p for r in reports for p in (*r["late"], *r["problems"])]
            result.problem_count = sum(r["late_count"] + r["problem_count"] for r in reports)
            counts = Tally()
            for r in reports:
                counts.add(Tally(**r["tally"]))
            result.tally = counts.as_dict()
            result.outages = [o for r in reports for o in r["outages"]]
            phases_all = [p for r in reports for p in r.get("phases", ())]
            result.phases = phase_table(phases_all, killed)
            result.loop_lag = [r.get("loop_lag", {}) for r in reports]
            result.client_gc = [r.get("gc", {}) for r in reports]
            result.error_counts = dict(
                sum((Counter(r.get("error_counts", {})) for r in reports), Counter())
            )
            result.moved = sum(r["moved"] for r in reports)
            sampler.cancel()
            # CPU from the kill until the last client was live again (the everyone-back poll
            # asks the gateways' status API, which a loaded machine answers late).
            last_live = max(
                (p["down"] + sum(p[e] for e in PHASES[1:6]) for p in phases_all),
                default=time.monotonic(),
            )
            result.cpu_s, result.run_cpu_s, result.machine_busy = cpu_between(
                samples, killed, last_live
            )
            result.deliveries = sum(r["deliveries"] for r in reports)
            result.calls = dict(reads.calls)
            result.backfills = reads.backfill_reads
            result.most_backfills = reads.most_per_tenant_and_gateway()
            result.most_broadcast_backfills = max(
                (n for (_, t), n in reads.backfills.items() if t == "broadcast"), default=0
            )
            result.most_tenant_backfills = max(
                (n for (_, t), n in reads.backfills.items() if t != "broadcast"), default=0
            )
            result.top_backfills = [
                f"{tenant}: {n}" for (_, tenant), n in reads.backfills.most_common(3)
            ]
            result.peak_rss_mb = [peak_rss_mb(g.pid) for g in (gw2, gw3) if g.pid is not None]
        finally:
            if pub is not None:
                with contextlib.suppress(Exception):
                    await pub.stop()
            for s in storms:
                s.stop()
            await sidecar.close()
            await reads.close()
            await nc.close()
    result.left = [pid for pid in started if alive(pid)]
    return result
