"""Shared fixtures: a real nats-server with JetStream on a free port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tidings.dev.embedded import EmbeddedNats
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


# --- gateway -----------------------------------------------------------------------------------

from collections.abc import Callable  # noqa: E402

from tidings.auth import mint_token  # noqa: E402
from tidings.gateway.service import Gateway  # noqa: E402
from tidings.settings import AuthSettings, GatewaySettings, Settings  # noqa: E402

JWT_SECRET = "tidings-test-secret-0123456789abcdef"


@pytest.fixture
def gateway_settings(nats_settings: NatsSettings) -> Settings:
    """Settings for an in-process gateway on a free loopback port (tests may change them)."""
    return Settings(
        nats=nats_settings,
        auth=AuthSettings(jwt_secret=JWT_SECRET),
        gateway=GatewaySettings(host="127.0.0.1", port=0, api_port=0, drain_seconds=1.0),
    )


@pytest.fixture
async def gateway(js: JetStreamContext, gateway_settings: Settings) -> AsyncIterator[Gateway]:
    """A running gateway in this process (stream provisioned first)."""
    gw = Gateway(gateway_settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
def token() -> Callable[..., str]:
    """Mint a test JWT: ``token(tenant="acme", user="alice", roles=[...], rooms=[...])``."""

    def mint(tenant: str = "acme", user: str = "alice", **claims: object) -> str:
        return mint_token(JWT_SECRET, tenant=tenant, user=user, **claims)  # type: ignore[arg-type]

    return mint
