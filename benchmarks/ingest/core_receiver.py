"""The ingest receiver on ``nats-core`` (the NATS maintainers' lean client; Python >= 3.13).

Standalone (no tidings import: the project runs on 3.11): run by ``benchmarks.ingest.run`` as
``PYENV_VERSION=3.13.0 python3.13 benchmarks/ingest/core_receiver.py URL COUNT TENANTS``.
Same work as the nats-py receivers: one subscription per tenant, every message's sequence and
stamp headers read; prints "ready", then one JSON line.
"""

import asyncio
import json
import sys
import time

from nats.client import connect


async def main(url: str, count: int, tenants: int) -> None:
    nc = await connect(url)
    got = 0
    first = [0.0, 0.0]
    done = asyncio.Event()

    async def drain(sub: object) -> None:
        nonlocal got
        async for msg in sub:  # type: ignore[attr-defined]
            h = msg.headers
            int(h.get("Nats-Sequence"))
            h.get("Nats-Time-Stamp")
            if got == 0:
                first[:] = [time.process_time(), time.monotonic()]
            got += 1
            if got == count:
                done.set()

    subs = [await nc.subscribe(f"live.tenant.t{t}.>") for t in range(tenants)]
    tasks = [asyncio.create_task(drain(s)) for s in subs]
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    cpu, wall = time.process_time() - first[0], time.monotonic() - first[1]
    print(json.dumps({"cpu_us": cpu * 1e6 / (count - 1), "per_s": (count - 1) / wall}))
    for t in tasks:
        t.cancel()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
