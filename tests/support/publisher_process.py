"""Run the publisher sidecar in tests: in-process (ASGI with its lifespan) or as a real process.

Also reads back what the stream holds, the way a user would check: message by message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.api import RawStreamMsg
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.support.waiting import until
from tidings.nats import ensure_stream
from tidings.ports import free_port
from tidings.publisher.app import create_app
from tidings.settings import (
    EventsSettings,
    LogSettings,
    NatsSettings,
    PublisherSettings,
    Settings,
    StreamSettings,
)

STREAM = "TIDINGS"


def make_settings(nats_settings: NatsSettings, outbox_dir: Path, **publisher: Any) -> Settings:
    return Settings(
        nats=nats_settings,
        stream=StreamSettings(),
        events=EventsSettings(),
        publisher=PublisherSettings(outbox_dir=outbox_dir, **publisher),
        log=LogSettings(),
    )


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text page (0.0 if the series does not exist)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


class Chunked:
    """A JSON body sent without Content-Length, so only counting the streamed bytes can catch it."""

    def __init__(self, size: int) -> None:
        self.payload = b'{"tenant": "acme", "data": {"x": "' + b"y" * size + b'"}}'

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.payload), 512):
            yield self.payload[i : i + 512]


async def nats_state(client: httpx.AsyncClient) -> str:
    state: str = (await client.get("/readyz")).json()["nats"]
    return state


@asynccontextmanager
async def sidecar(
    settings: Settings, *, wait_connected: bool = True
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running, and an HTTP client talking to it in-process."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client,
    ):
        if wait_connected:

            async def connected() -> bool:
                return await nats_state(client) == "connected"

            await until(connected, timeout=10, what="the sidecar to connect to NATS")
        yield app, client


async def stored_messages(url: str, *, stream: str = STREAM) -> list[RawStreamMsg]:
    """Every message the stream holds, in stream order (a fresh connection each call)."""
    nc = await nats.connect(url, max_reconnect_attempts=0, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(stream)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0:
            return []
        return [await js.get_msg(stream, seq, direct=True) for seq in range(first, last + 1)]
    finally:
        await nc.close()


async def provision(url: str) -> None:
    """Create the stream as `tidings nats init` would (idempotent)."""
    nc = await nats.connect(url, max_reconnect_attempts=0, connect_timeout=2)
    try:
        await ensure_stream(nc.jetstream(timeout=5), StreamSettings())
    finally:
        await nc.close()


async def stream_count(url: str, *, stream: str = STREAM) -> int:
    nc = await nats.connect(url, max_reconnect_attempts=0, connect_timeout=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


class PublisherProcess:
    """``python -m tidings.publisher`` as a child process with ``TIDINGS_*`` variables."""

    def __init__(self, env: Mapping[str, str], *, log_file: Path) -> None:
        self.port = int(env.get("TIDINGS_PUBLISHER_PORT") or free_port())
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
            "TIDINGS_PUBLISHER_PORT": str(self.port),
            **env,
        }
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PublisherProcess:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings.publisher"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def wait_healthy(self, *, timeout: float = 15.0) -> None:
        async def healthy() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"the publisher exited early:\n{self.log()}")
            try:
                async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
                    return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await until(healthy, timeout=timeout, what="the publisher process to answer")

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 15.0) -> int:
        """Signal the process and wait for it; kill and fail if it does not exit in time."""
        proc, self.process = self.process, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"the publisher did not exit within {timeout:.0f}s of {sig.name}:\n{self.log()}"
            ) from None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]
