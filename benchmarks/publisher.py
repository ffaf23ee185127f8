"""Publisher throughput and latency: the sidecar (single, batch) against plain nats-py.

Everything runs on this machine in one run, side by side and interleaved (rounds), so the
comparison survives a noisy neighbour: a real nats-server (file storage, as in production), the
sidecar as a real process (`tidings publisher`, pinned to core 0), and this load generator with
the nats-py baselines (pinned to core 1). Every notification carries the same body.

    python -m benchmarks.publisher --seconds 5 --rounds 3

Prints a table and writes `benchmarks/results/publisher-<time>.json`.
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
from typing import Any

import httpx
import nats
import orjson
from rich.console import Console
from rich.table import Table

from tidings.dev.embedded import EmbeddedNats, wait_for_port
from tidings.envelope import new_id
from tidings.nats import ensure_stream
from tidings.ports import free_port
from tidings.publishing import OutgoingMessage, PublishPolicy, prepare
from tidings.settings import StreamSettings

BODY = {
    "tenant": "acme",
    "event": "incident.created",
    "audience": {"role": "safety-officer"},
    "title": "Spill in hall 3",
    "message": "Cleanup under way, avoid the east entrance",
    "severity": "warning",
    "data": {"incident_id": "INC-1234", "site": "berlin", "floor": 2},
}

Result = dict[str, Any]


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": round(pick(0.50), 2), "p99_ms": round(pick(0.99), 2)}


async def timed(seconds: float, step: Callable[[], Awaitable[int]]) -> Result:
    """Run ``step`` (returns notifications sent) until ``seconds`` pass; rate and latency."""
    sent, latencies = 0, []
    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sent += await step()
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    return {
        "notifications_per_s": round(sent / elapsed),
        "requests": len(latencies),
        "generator_cpu_pct": round(100 * (time.process_time() - cpu0) / elapsed),
        **percentiles(latencies),
    }


async def concurrent(seconds: float, workers: int, step: Callable[[], Awaitable[int]]) -> Result:
    """``workers`` loops of ``step`` at once; latency per step, rate over all."""
    return await concurrent_steps(seconds, [step] * workers)


async def concurrent_steps(seconds: float, steps: list[Callable[[], Awaitable[int]]]) -> Result:
    """One loop per step function, all at once; latency per step, rate over all."""
    results = await asyncio.gather(*(timed(seconds, step) for step in steps))
    lat_p50 = statistics.median(r["p50_ms"] for r in results)
    lat_p99 = max(r["p99_ms"] for r in results)
    return {
        "notifications_per_s": sum(r["notifications_per_s"] for r in results),
        "requests": sum(r["requests"] for r in results),
        "p50_ms": lat_p50,
        "p99_ms": lat_p99,
        "generator_cpu_pct": results[0]["generator_cpu_pct"],
    }


def messages(n: int) -> list[OutgoingMessage]:
    policy = PublishPolicy()
    return [prepare(BODY, policy) for _ in range(n)]


async def scenarios(nats_url: str, sidecar: str, seconds: float, batch: int) -> dict[str, Result]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    http = httpx.AsyncClient(base_url=sidecar, timeout=30)
    body = orjson.dumps(BODY)
    batch_body = orjson.dumps({"notifications": [BODY] * batch})
    headers = {"content-type": "application/json"}
    writers: list[asyncio.StreamWriter] = []

    # The baselines publish one pre-built envelope under fresh ids: the raw NATS cost, without
    # the validation and envelope building the sidecar does for every notification.
    (template,) = messages(1)

    async def nats_single() -> int:
        await js.publish(
            template.subject, template.payload, headers={"Nats-Msg-Id": new_id()}, stream="TIDINGS"
        )
        return 1

    async def nats_async_batch() -> int:
        futures = [
            await js.publish_async(
                template.subject,
                template.payload,
                headers={"Nats-Msg-Id": new_id()},
                stream="TIDINGS",
            )
            for _ in range(batch)
        ]
        await asyncio.gather(*futures)
        return batch

    async def sidecar_single_worker() -> Callable[[], Awaitable[int]]:
        # A keep-alive HTTP/1.1 connection written by hand: httpx costs ~3 ms of CPU a request
        # here and would measure itself, not the sidecar.
        host, port = sidecar.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writers.append(writer)
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

        return step

    async def sidecar_batch() -> int:
        r = await http.post("/v1/notifications/batch", content=batch_body, headers=headers)
        assert r.status_code == 202, r.text
        assert all(x["seq"] for x in r.json()["results"]), "queued instead of stored"
        return batch

    try:
        return {
            "nats-py publish (1 at a time, ack each)": await timed(seconds, nats_single),
            f"nats-py publish_async (pipelined, {batch} per window)": await timed(
                seconds, nats_async_batch
            ),
            "sidecar POST single (16 concurrent)": await concurrent_steps(
                seconds, [await sidecar_single_worker() for _ in range(16)]
            ),
            f"sidecar POST batch of {batch} (1 at a time)": await timed(seconds, sidecar_batch),
            f"sidecar POST batch of {batch} (2 concurrent)": await concurrent(
                seconds, 2, sidecar_batch
            ),
        }
    finally:
        for writer in writers:
            writer.close()
        await http.aclose()
        await nc.close()


def pin(pid: int, core: int) -> None:
    if (os.cpu_count() or 1) > core:
        os.sched_setaffinity(pid, {core})


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians)")
    ap.add_argument("--batch", type=int, default=500, help="notifications per batch")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        pin(server.process.pid if server.process else 0, 1)
        pin(0, 1)
        nc = await nats.connect(server.url)
        await ensure_stream(nc.jetstream(), StreamSettings(max_bytes=8 << 30))
        await nc.close()
        port = free_port()
        env = {
            **os.environ,
            "TIDINGS_NATS_URLS": server.url,
            "TIDINGS_PUBLISHER_PORT": str(port),
            "TIDINGS_PUBLISHER_OUTBOX_DIR": str(Path(tmp) / "outbox"),
            "TIDINGS_PUBLISHER_BATCH_MAX_ITEMS": str(max(1000, args.batch)),
            "TIDINGS_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen([sys.executable, "-m", "tidings", "publisher"], env=env)  # noqa: ASYNC220
        try:
            pin(proc.pid, 0)
            wait_for_port(port, timeout=20)
            rounds: list[dict[str, Result]] = []
            for i in range(args.rounds):
                console.print(f"round {i + 1}/{args.rounds} …")
                rounds.append(
                    await scenarios(
                        server.url, f"http://127.0.0.1:{port}", args.seconds, args.batch
                    )
                )
        finally:
            proc.terminate()
            proc.wait(15)
    summary = {
        name: {
            key: statistics.median(r[name][key] for r in rounds)
            for key in ("notifications_per_s", "p50_ms", "p99_ms", "generator_cpu_pct")
        }
        for name in rounds[0]
    }
    baseline = next(v for k, v in summary.items() if "publish_async" in k)["notifications_per_s"]
    table = Table(title=f"Publisher, medians of {args.rounds} interleaved rounds")
    for col in ("scenario", "notifications/s", "vs publish_async", "p50 ms", "p99 ms", "gen CPU %"):
        table.add_column(col, justify="right" if col != "scenario" else "left")
    for name, s in summary.items():
        table.add_row(
            name,
            f"{s['notifications_per_s']:,.0f}",
            f"{s['notifications_per_s'] / baseline:.2f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['generator_cpu_pct']:.0f}",
        )
    console.print(table)
    out = Path(__file__).parent / "results" / f"publisher-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rounds": rounds, "median": summary}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
