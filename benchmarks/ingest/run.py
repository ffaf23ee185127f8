"""CPU per live message in the gateway's NATS client, before the handler, by client path.

A real nats-server; a publisher process sends ``--count`` messages shaped like the stream's
RePublish copies (the seven headers, a real envelope: ``benchmarks.live_path.messages``) over
``--tenants`` tenants, paced in bursts with a flush; a receiver process holds one subscription
per tenant (``live.tenant.<t>.>``, as the gateway does) and reads from every message what
``Live`` reads (the sequence and the stored time), nothing else. The receiver's process CPU from
its first message to its last, per message, is the figure (and its messages/s). Receivers:

* ``queue``: nats-py's own path, a callback per subscription (the gateway before item 3);
* ``direct``: ``tidings.gateway.direct`` (raw header block, no ``Msg``, queue or task);
* ``core``: ``nats-core`` on Python 3.13 (``benchmarks/ingest/core_receiver.py``);

each on asyncio and, for nats-py, on uvloop too. Rounds alternate the receivers.

    taskset -c 0 python -m benchmarks.ingest.run --count 50000 --tenants 100 --rounds 3
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
from pathlib import Path
from typing import Any

import nats

from tidings.dev.embedded import EmbeddedNats
from tidings.gateway import direct

HERE = Path(__file__).resolve().parent
SEQ, STAMP = b"\r\nNats-Sequence:", b"\r\nNats-Time-Stamp:"


async def receive(url: str, count: int, tenants: int, mode: str) -> dict[str, float]:
    nc = await nats.connect(url)
    got = 0
    first = [0.0, 0.0]
    done = asyncio.Event()

    def count_one() -> None:
        nonlocal got
        if got == 0:
            first[:] = [time.process_time(), time.monotonic()]
        got += 1
        if got == count:
            done.set()

    async def on_message(msg: Any) -> None:
        h = msg.headers
        int(h["Nats-Sequence"])
        h.get("Nats-Time-Stamp")
        count_one()

    def on_raw(subject: bytes, data: bytes, headers: bytes | None) -> None:
        int(direct.header_value(headers, SEQ) or b"")
        direct.header_value(headers, STAMP)
        subject.decode()
        count_one()

    routes = direct.install(nc) if mode == "direct" else None
    for t in range(tenants):
        subject = f"live.tenant.t{t}.>"
        if routes is None:
            await nc.subscribe(subject, cb=on_message, pending_msgs_limit=65536)
        else:
            sub = await nc.subscribe(subject)
            routes.route(sub._id, on_raw)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    cpu, wall = time.process_time() - first[0], time.monotonic() - first[1]
    await nc.close()
    return {"cpu_us": cpu * 1e6 / (count - 1), "per_s": (count - 1) / wall}


async def publish(url: str, count: int, tenants: int) -> None:
    from benchmarks.live_path import messages

    msgs = messages(count, tenants)
    nc = await nats.connect(url)
    for i, m in enumerate(msgs, 1):
        await nc.publish(m.subject, m.data, headers=m.headers)
        if i % 500 == 0:
            await nc.flush()
    await nc.flush()
    await nc.close()


def run_receiver(url: str, args: argparse.Namespace, receiver: str) -> dict[str, float]:
    mode = receiver.partition("@")[0]
    if mode == "core":
        cmd = ["python3.13", str(HERE / "core_receiver.py"), url, str(args.count)]
        cmd.append(str(args.tenants))
        env = {**os.environ, "PYENV_VERSION": "3.13.0"}
        env.pop("PYTHONPATH", None)
    else:
        cmd = [sys.executable, "-m", "benchmarks.ingest.run", "--receive", receiver, "--url", url]
        cmd += ["--count", str(args.count), "--tenants", str(args.tenants)]
        env = dict(os.environ)
    rx = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert rx.stdout is not None
    if rx.stdout.readline().strip() != "ready":
        rx.kill()
        raise RuntimeError(f"{receiver}: receiver did not start")
    pub = [sys.executable, "-m", "benchmarks.ingest.run", "--publish", "--url", url]
    pub += ["--count", str(args.count), "--tenants", str(args.tenants)]
    subprocess.run(pub, check=True, timeout=300)
    out, _ = rx.communicate(timeout=300)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=50_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--receivers",
        default="queue@asyncio,direct@asyncio,queue@uvloop,direct@uvloop,core@asyncio",
    )
    ap.add_argument("--url", default="")
    ap.add_argument("--receive", default="", help=argparse.SUPPRESS)
    ap.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publish:
        asyncio.run(publish(args.url, args.count, args.tenants))
        return
    if args.receive:
        mode, _, loop = args.receive.partition("@")
        coro = receive(args.url, args.count, args.tenants, mode)
        if loop == "uvloop":
            import uvloop

            result = uvloop.run(coro)
        else:
            result = asyncio.run(coro)
        print(json.dumps(result), flush=True)
        return
    receivers = args.receivers.split(",")
    results: dict[str, list[dict[str, float]]] = {r: [] for r in receivers}
    with tempfile.TemporaryDirectory(prefix="tidings-ingest-") as tmp:
        server = EmbeddedNats(Path(tmp)).start()
        try:
            for _ in range(args.rounds):
                for r in receivers:
                    results[r].append(run_receiver(server.url, args, r))
        finally:
            server.stop()
    print(
        f"{args.count:,} messages over {args.tenants} tenant subscriptions, {args.rounds} rounds;"
        f" load {os.getloadavg()[0]:.2f}"
    )
    print(f"  {'receiver':<16} {'µs CPU/msg (median)':>20} {'min':>7} {'msgs/s (median)':>16}")
    for r, rows in results.items():
        cpu = [x["cpu_us"] for x in rows]
        rate = statistics.median(x["per_s"] for x in rows)
        print(f"  {r:<16} {statistics.median(cpu):20.2f} {min(cpu):7.2f} {rate:16,.0f}")


if __name__ == "__main__":
    main()
