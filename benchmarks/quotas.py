"""The sidecar's publish path with quotas off and on, side by side (issue 14 item 4).

Two sidecar processes on one nats-server (file storage): one with `TIDINGS_QUOTA_ENABLED=false`,
one with quotas on and a tenant with limits of its own that are never reached (a rate of 10^6/s,
a daily volume of 10^12: every publish is checked and counted, the counts merged into the bucket
every second, nothing refused). Rounds alternate between the two so both see the same
neighbours. Also the check alone (`Meter.admit`, in this process): what a publish pays for it.

    python -m benchmarks.quotas --seconds 5 --rounds 3

Prints a table and writes `benchmarks/results/quotas-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import nats
import orjson
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from benchmarks.publisher import BODY, Result, concurrent_steps, pin, timed
from tidings.dev.embedded import EmbeddedNats, wait_for_port
from tidings.nats import ensure_stream
from tidings.ports import free_port
from tidings.quotas.bucket import QuotaBucket
from tidings.quotas.limits import Limits, TenantLimits
from tidings.quotas.meter import Meter
from tidings.quotas.metrics import QuotaMetrics
from tidings.settings import QuotaSettings, StreamSettings

HIGH = {"tenant": "acme", "rate": 1_000_000.0, "burst": 1_000_000, "daily": 10**12}


async def worker(url: str) -> tuple[Callable[[], Awaitable[int]], asyncio.StreamWriter]:
    """One keep-alive connection posting single notifications (HTTP written by hand: httpx
    costs more CPU per request than the sidecar and would measure itself)."""
    body = orjson.dumps(BODY)
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        b"POST /v1/notifications HTTP/1.1\r\nHost: sidecar\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def step() -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202"), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return 1

    return step, writer


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(pid: int, per_request: int, run: Awaitable[Result]) -> Result:
    """``run``'s result plus the sidecar's CPU per notification: what the machine's load
    cannot inflate the way it inflates latency and rate."""
    before = cpu_seconds(pid)
    result = await run
    spent = cpu_seconds(pid) - before
    notifications = result["requests"] * per_request
    result["sidecar_cpu_us_per_notification"] = round(spent / max(1, notifications) * 1e6, 1)
    return result


async def scenarios(url: str, pid: int, seconds: float, batch: int) -> dict[str, Result]:
    http = httpx.AsyncClient(base_url=url, timeout=30)
    batch_body = orjson.dumps({"notifications": [BODY] * batch})
    made = [await worker(url) for _ in range(16)]

    async def post_batch() -> int:
        r = await http.post(
            "/v1/notifications/batch",
            content=batch_body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 202, r.text
        return batch

    try:
        return {
            "POST single (16 concurrent)": await measured(
                pid, 1, concurrent_steps(seconds, [s for s, _ in made])
            ),
            f"POST batch of {batch} (1 at a time)": await measured(
                pid, batch, timed(seconds, post_batch)
            ),
        }
    finally:
        for _, writer in made:
            writer.close()
        await http.aclose()


async def check_alone(n: int, tenant: str = "acme") -> float:
    """CPU nanoseconds per `Meter.admit` (``acme``: a rate and a daily volume; another
    tenant: the unlimited defaults, i.e. the call alone)."""
    meter = Meter(QuotaSettings(enabled=True), QuotaMetrics(CollectorRegistry()))
    meter.set_limits("acme", TenantLimits.from_dict(HIGH))
    assert meter.limits_of("acme") == Limits.from_dict(HIGH)
    start = time.process_time()
    for _ in range(n):
        await meter.admit(tenant)
    return (time.process_time() - start) / n * 1e9


def sidecar(
    server: EmbeddedNats, tmp: Path, name: str, *, quotas: bool
) -> tuple[str, subprocess.Popen[bytes]]:
    for _ in range(3):  # a free port can be taken by a neighbour before the sidecar binds it
        port = free_port()
        url, proc = _start(server, tmp, name, port, quotas=quotas)
        try:
            wait_for_port(port, timeout=20)
            return url, proc
        except Exception:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(15)
    raise SystemExit(f"the {name} sidecar did not start")


def _start(
    server: EmbeddedNats, tmp: Path, name: str, port: int, *, quotas: bool
) -> tuple[str, subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "TIDINGS_NATS_URLS": server.url,
        "TIDINGS_PUBLISHER_PORT": str(port),
        "TIDINGS_PUBLISHER_OUTBOX_DIR": str(tmp / f"outbox-{name}"),
        "TIDINGS_PUBLISHER_BATCH_MAX_ITEMS": "1000",
        "TIDINGS_LOG_LEVEL": "WARNING",
        "TIDINGS_QUOTA_ENABLED": "true" if quotas else "false",
    }
    proc = subprocess.Popen([sys.executable, "-m", "tidings", "publisher"], env=env)
    pin(proc.pid, 0)
    return f"http://127.0.0.1:{port}", proc


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians)")
    ap.add_argument("--batch", type=int, default=500, help="notifications per batch")
    args = ap.parse_args()
    console = Console()
    alone = statistics.median([await check_alone(200_000) for _ in range(5)])
    bare = statistics.median([await check_alone(200_000, "globex") for _ in range(5)])
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        pin(server.process.pid if server.process else 0, 1)
        pin(0, 1)
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_stream(js, StreamSettings(max_bytes=8 << 30))
        bucket = QuotaBucket(stream="TIDINGS")
        await bucket.ensure(js)
        await bucket.put_limits(js, TenantLimits.from_dict(HIGH))
        procs: list[subprocess.Popen[bytes]] = []
        rounds: dict[str, list[dict[str, Result]]] = {"off": [], "on": []}
        try:
            off_url, off = sidecar(server, Path(tmp), "off", quotas=False)
            procs.append(off)
            on_url, on = sidecar(server, Path(tmp), "on", quotas=True)
            procs.append(on)
            await asyncio.sleep(1.0)  # the quota sidecar follows the bucket
            for i in range(args.rounds):
                both = (("off", off_url, off.pid), ("on", on_url, on.pid))
                for name, url, pid in both[:: 1 if i % 2 == 0 else -1]:
                    console.print(f"round {i + 1}/{args.rounds}, quotas {name} …")
                    rounds[name].append(await scenarios(url, pid, args.seconds, args.batch))
            counted = await bucket.count(js, time.strftime("%Y%m%d", time.gmtime()), "acme")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(15)
            await nc.close()
    summary = {
        name: {
            scenario: {
                key: statistics.median(r[scenario][key] for r in runs)
                for key in (
                    "notifications_per_s",
                    "p50_ms",
                    "p99_ms",
                    "sidecar_cpu_us_per_notification",
                )
            }
            for scenario in runs[0]
        }
        for name, runs in rounds.items()
    }
    table = Table(title=f"Sidecar, quotas off vs on, medians of {args.rounds} alternating rounds")
    columns = ("scenario", "off n/s", "on n/s", "off p50/p99 ms", "on p50/p99 ms")
    for col in (*columns, "off CPU µs/n", "on CPU µs/n", "on/off CPU"):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    for scenario, off_s in summary["off"].items():
        on_s = summary["on"][scenario]
        off_cpu = off_s["sidecar_cpu_us_per_notification"]
        on_cpu = on_s["sidecar_cpu_us_per_notification"]
        table.add_row(
            scenario,
            f"{off_s['notifications_per_s']:,.0f}",
            f"{on_s['notifications_per_s']:,.0f}",
            f"{off_s['p50_ms']:.2f} / {off_s['p99_ms']:.2f}",
            f"{on_s['p50_ms']:.2f} / {on_s['p99_ms']:.2f}",
            f"{off_cpu:.0f}",
            f"{on_cpu:.0f}",
            f"{on_cpu / off_cpu:.2f}",
        )
    console.print(table)
    console.print(
        f"Meter.admit: {alone:.0f} ns of CPU with limits, {bare:.0f} ns without;"
        f" the bucket counted {counted:,} for acme"
    )
    out = Path(__file__).parent / "results" / f"quotas-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "rounds": rounds,
                "median": summary,
                "admit_ns": alone,
                "admit_unlimited_ns": bare,
                "counted": counted,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
