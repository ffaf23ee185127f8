"""Thousands of SDK clients in a child process, for reconnect storms.

One process holds ``--count`` real ``tidings.client.Subscriber`` connections through one URL
(the ingress) and says ``ready`` on stdout once every one is welcomed. When its owner writes
``check <seq>`` on stdin, it reads from JetStream what was stored after ``seq``, waits until
every client yielded its share, and prints one JSON line: the problems found (lost, duplicated,
reordered, resets: :meth:`Follower.problems`), each client's longest time from a lost connection
to live again, and how many reconnected. A storm of 10,000 spreads over several of these
(descriptors are limited per process). Run by :class:`StormProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.support.tokens import JWT_SECRET
from tidings.auth import mint_token
from tidings.client import Backoff

BACKOFF = Backoff(base=0.5, max=2.0)  # the SDK's shape, shortened for a test


def _mint(tenant: str = "acme", user: str = "alice", **claims: object) -> str:
    return mint_token(JWT_SECRET, tenant=tenant, user=user, **claims)  # type: ignore[arg-type]


async def _run(args: argparse.Namespace) -> None:
    import nats

    from tests.support.fault_load import tally
    from tests.support.load_clients import fleet, read_stream

    tenants = tuple(args.tenants.split(","))
    fl = fleet(args.count, [(args.url,)], tenants=tenants)
    for f in fl.followers:
        f.name = f"{args.name}-{f.name}"
    began = time.monotonic()
    await fl.start(_mint, backoff=BACKOFF, concurrency=args.concurrency, timeout=args.timeout)
    print(f"ready {time.monotonic() - began:.1f}", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start = int(line.split()[1])
    nc = await nats.connect(args.nats.split(","))
    try:
        stored = await read_stream(nc.jetstream(timeout=10), start=start + 1, timeout=30)
    finally:
        await nc.close()
    late = await fl.wait_caught_up(stored, after=start, timeout=args.timeout)
    report: dict[str, Any] = {
        "clients": len(fl.followers),
        "late": late[:20],
        "late_count": len(late),
        "problems": fl.problems(stored, after=start)[:20],
        "problem_count": len(fl.problems(stored, after=start)),
        "tally": tally(fl.followers, stored, after=start).as_dict(),
        "outages": [max(f.outages(), default=0.0) for f in fl.followers],
        "moved": sum(len(f.welcomed) > 1 for f in fl.followers),
        "deliveries": sum(len(f.seqs) for f in fl.followers),
    }
    print(orjson.dumps(report).decode(), flush=True)
    await fl.close()


class StormProcess:
    """One child process of storm clients (see the module's docstring); ``light``: the light
    clients of :mod:`tests.support.storm_light` instead of SDK subscribers."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        nats_urls: list[str],
        count: int,
        tenants: tuple[str, ...],
        log: Path,
        concurrency: int = 50,
        timeout: float = 120.0,
        light: bool = False,
    ) -> None:
        self.name = name
        module = "tests.support.storm_light" if light else "tests.support.storm_clients"
        cmd = [
            sys.executable, "-m", module, "--name", name, "--url", url,
            "--nats", ",".join(nats_urls), "--count", str(count),
            "--tenants", ",".join(tenants), "--concurrency", str(concurrency),
            "--timeout", str(timeout),
        ]  # fmt: skip
        self.log = log
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ},
                cwd=Path(__file__).resolve().parents[2],
            )

    async def ready(self, *, timeout: float) -> float:
        """Seconds it took to connect every client (fails with its log if it could not)."""
        line = await self._line(timeout)
        if not line.startswith("ready"):
            raise AssertionError(f"storm clients failed: {line!r}\n{self.log.read_text()[-3000:]}")
        return float(line.split()[1])

    def check(self, start: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"check {start}\n".encode())
        self.process.stdin.flush()

    async def report(self, *, timeout: float) -> dict[str, Any]:
        line = await self._line(timeout)
        try:
            body: dict[str, Any] = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"no report: {line!r}\n{self.log.read_text()[-3000:]}") from None
        return body

    async def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        out = self.process.stdout
        raw = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, out.readline), timeout
        )
        return bytes(raw).decode().strip()

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="s")
    parser.add_argument("--url", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tenants", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
