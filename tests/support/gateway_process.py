"""Run ``python -m tidings gateway`` as a real child process, the way an operator runs it.

One :class:`GatewayProcess` is one gateway on its own loopback port, configured only through
``TIDINGS_*`` variables; it can be started, stopped with SIGTERM (drain), killed with SIGKILL
and restarted on the same port. Waits poll without blocking the event loop, so WebSocket
clients in the same test keep running while a gateway drains or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.tokens import JWT_SECRET
from tidings.ports import free_port

DEFAULT_SECRET = JWT_SECRET  # spawned gateways accept the tokens the `token` fixture mints
# How a gateway (its own error for the data port, uvicorn's for the others) says a port is taken.
PORT_TAKEN = "address already in use"


class GatewayProcessError(AssertionError):
    """A gateway process did not do what the test needed (the message carries its log)."""


class GatewayProcess:
    """One gateway child process with ``TIDINGS_*`` settings, a fixed port and a log file."""

    def __init__(
        self,
        nats_urls: str | Sequence[str],
        *,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        name: str = "gw",
        port: int | None = None,
        secret: str | None = DEFAULT_SECRET,
    ) -> None:
        self.name = name
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.api_port = free_port()
        self.metrics_port = free_port()
        urls = [nats_urls] if isinstance(nats_urls, str) else list(nats_urls)
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        own = {
            "TIDINGS_NATS_URLS": ",".join(urls),
            "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
            "TIDINGS_GATEWAY_HOST": "127.0.0.1",
            "TIDINGS_GATEWAY_PORT": str(self.port),
            "TIDINGS_GATEWAY_API_PORT": str(self.api_port),
            "TIDINGS_GATEWAY_METRICS_PORT": str(self.metrics_port),
            "TIDINGS_GATEWAY_ID": name,
            "TIDINGS_GATEWAY_DRAIN_SECONDS": "1",
            "TIDINGS_LOG_FORMAT": "json",
        }
        if secret is not None:
            own["TIDINGS_AUTH_JWT_SECRET"] = secret
        self.env: dict[str, str] = {**base, **own, **(env or {})}
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.starts = 0

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the data port's HTTP side (``/healthz``, ``/metrics``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> GatewayProcess:
        """Spawn the process (returns at once; :meth:`wait_ready` waits for ``/readyz``)."""
        if self.running:
            raise GatewayProcessError(f"{self.name} is already running (pid {self.pid})")
        self.returncode = None
        self.starts += 1
        with self.log_file.open("ab") as log:
            log.write(f"--- start #{self.starts} of {self.name} on {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings", "gateway"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    async def wait_ready(self, *, timeout: float = 20.0) -> None:
        """Poll ``/readyz`` until 200; fail with the log if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as client:
            while True:
                if not self.running:
                    raise GatewayProcessError(
                        f"{self.name} exited with {self.poll()} before it was ready:\n{self.log()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise GatewayProcessError(
                        f"{self.name} not ready after {timeout:.0f}s:\n{self.log()}"
                    )
                await asyncio.sleep(0.05)

    async def started(self, *, timeout: float = 20.0) -> GatewayProcess:
        """Start and wait until ready."""
        self.start()
        await self.wait_ready(timeout=timeout)
        return self

    async def started_on_free_ports(self, *, timeout: float = 20.0) -> GatewayProcess:
        """Start and wait until ready; on fresh ports when another process (other jobs share
        this machine) took one of the probed free ports before the gateway bound it."""
        for _ in range(2):
            self.start()
            try:
                await self.wait_ready(timeout=timeout)
                return self
            except GatewayProcessError as exc:
                if self.fixed_port or PORT_TAKEN not in str(exc).lower():
                    raise
            self.port, self.api_port, self.metrics_port = free_port(), free_port(), free_port()
            self.env["TIDINGS_GATEWAY_PORT"] = str(self.port)
            self.env["TIDINGS_GATEWAY_API_PORT"] = str(self.api_port)
            self.env["TIDINGS_GATEWAY_METRICS_PORT"] = str(self.metrics_port)
        return await self.started(timeout=timeout)  # the third try: whatever fails, rises

    def poll(self) -> int | None:
        if self.process is not None:
            code = self.process.poll()
            if code is not None:
                self.returncode = code
        return self.returncode

    async def wait_exit(self, *, timeout: float) -> int:
        """The exit code once the process is gone; fail if it is still running after timeout."""
        proc = self.process
        if proc is None:
            return self.returncode if self.returncode is not None else 0
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise GatewayProcessError(
                    f"{self.name} (pid {proc.pid}) still runs after {timeout:.1f}s:\n{self.log()}"
                )
            await asyncio.sleep(0.02)
        self.returncode = proc.returncode
        self.process = None
        return proc.returncode

    def send_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the process and return at once (``wait_exit`` waits for it)."""
        if not self.running:
            raise GatewayProcessError(f"{self.name} is not running:\n{self.log()}")
        assert self.process is not None
        self.process.send_signal(sig)

    async def stop(self, *, timeout: float = 15.0) -> int:
        """SIGTERM (drain, then exit) and wait; if it outlives ``timeout`` it is killed and the
        test fails, since a gateway must exit within its drain period."""
        return await self._signal(signal.SIGTERM, timeout=timeout)

    async def kill(self, *, timeout: float = 5.0) -> int:
        """SIGKILL: the process dies at once, without draining (a crash)."""
        return await self._signal(signal.SIGKILL, timeout=timeout)

    async def restart(self, *, timeout: float = 20.0, hard: bool = False) -> GatewayProcess:
        """Stop (SIGTERM, or SIGKILL when ``hard``) and start again on the same port."""
        if hard:
            await self.kill()
        else:
            await self.stop()
        return await self.started(timeout=timeout)

    async def _signal(self, sig: signal.Signals, *, timeout: float) -> int:
        proc = self.process
        if proc is None:
            return self.returncode if self.returncode is not None else 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return await self.wait_exit(timeout=timeout)
        except GatewayProcessError:
            self.terminate_now()
            raise

    def terminate_now(self) -> None:
        """Synchronous last resort for teardown: SIGKILL this process (by its PID) and reap it."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.returncode = proc.returncode

    # -- what it said ----------------------------------------------------------------------

    def log(self, tail: int = 6000) -> str:
        """The end of the captured stdout/stderr (all starts)."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")[-tail:]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line the process wrote (other lines are skipped)."""
        found: list[dict[str, Any]] = []
        if not self.log_file.exists():
            return found
        for line in self.log_file.read_bytes().splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    body = orjson.loads(line)
                    if isinstance(body, dict):
                        found.append(body)
        return found

    # -- HTTP ------------------------------------------------------------------------------

    def http(
        self, *, timeout: float = 5.0, api: bool = False, metrics: bool = False
    ) -> httpx.AsyncClient:
        """A client for the data port's HTTP side, or with ``api`` the API port's, or with
        ``metrics`` the metrics port's (the caller closes it, e.g. ``async with``)."""
        base = self.url
        if api or metrics:
            base = f"http://127.0.0.1:{self.api_port if api else self.metrics_port}"
        return httpx.AsyncClient(base_url=base, timeout=timeout)


@asynccontextmanager
async def gateway_processes(
    count: int,
    nats_urls: str | Sequence[str],
    directory: Path,
    *,
    env: Mapping[str, str] | None = None,
    secret: str | None = DEFAULT_SECRET,
    timeout: float = 20.0,
    pinned: Sequence[str] | None = None,
) -> AsyncIterator[list[GatewayProcess]]:
    """``count`` gateways started together and ready; all stopped (SIGTERM) on exit.

    ``pinned``: gateway i is given only ``pinned[i]`` instead of ``nats_urls`` (one node of a
    cluster: it connects there first and learns the others from the server).

    The stream must already be provisioned (the ``js`` fixture does it). On exit a gateway that
    does not stop in time is killed by its PID, and the test fails.
    """
    gateways = [
        GatewayProcess(
            pinned[i] if pinned is not None else nats_urls,
            log_file=directory / f"gw{i + 1}.log",
            env=env,
            name=f"gw{i + 1}",
            secret=secret,
        )
        for i in range(count)
    ]
    try:
        await asyncio.gather(*(gw.started_on_free_ports(timeout=timeout) for gw in gateways))
        yield gateways
        await asyncio.gather(*(gw.stop() for gw in gateways))
    finally:
        for gw in gateways:
            gw.terminate_now()
