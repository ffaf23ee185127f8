"""Shared fixtures: a real nats-server with JetStream on a free port per test, an in-process
gateway on it (settings changed with ``pytest.mark.settings``) and a token minter."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tests.support.postgres import PostgresServer
from tests.support.tokens import JWT_SECRET
from tidings.auth import mint_token
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway
from tidings.nats import ensure_stream
from tidings.settings import AuthSettings, GatewaySettings, NatsSettings, Settings, StreamSettings


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


@pytest.fixture
def gateway_settings(request: pytest.FixtureRequest, nats_settings: NatsSettings) -> Settings:
    """Settings for an in-process gateway on a free loopback port.

    A module or a test changes them with ``pytest.mark.settings(gateway={...}, auth={...})``
    (fields of GatewaySettings / AuthSettings; the nearest mark wins field by field) rather than
    declaring a fixture of its own.
    """
    fields: dict[str, dict[str, Any]] = {
        "gateway": {
            "host": "127.0.0.1",
            "port": 0,
            "api_port": 0,
            "metrics_port": 0,
            "drain_seconds": 1.0,
        },
        "auth": {"jwt_secret": JWT_SECRET},
    }
    for mark in reversed(list(request.node.iter_markers("settings"))):  # module first, test last
        for section, changes in mark.kwargs.items():
            if section not in fields:
                raise pytest.UsageError(f"pytest.mark.settings: no section {section!r}")
            fields[section].update(changes)
    return Settings(
        nats=nats_settings,
        auth=AuthSettings(**fields["auth"]),
        gateway=GatewaySettings(**fields["gateway"]),
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


# --- databases (the inbox) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's package, temp dir, free port)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty inbox database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inbox.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def collect_leftovers() -> Iterator[None]:
    """Collect garbage right after the test, while its warning filters still apply: what a
    killed or frozen server left in nats-py is then reported (and filtered) in that test, not
    in whichever test the collector happens to run in next."""
    yield
    gc.collect()
