"""Shared fixtures: a real nats-server with JetStream on a free port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tidings.embedded import EmbeddedNats
from tidings.nats import ensure_stream
from tidings.settings import NatsSettings, StreamSettings


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh nats-server with JetStream; tests may stop and restart it (same port, same data)."""
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_settings(nats_server: EmbeddedNats) -> NatsSettings:
    return NatsSettings(urls=[nats_server.url], reconnect_wait=0.2, request_timeout=2.0)


@pytest.fixture
def stream_settings() -> StreamSettings:
    return StreamSettings()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_server.url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def js(nc: NATS, stream_settings: StreamSettings) -> JetStreamContext:
    """A JetStream context on a server where the TIDINGS stream is provisioned."""
    ctx = nc.jetstream()
    await ensure_stream(ctx, stream_settings)
    return ctx
