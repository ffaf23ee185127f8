"""What `tidings dev` was asked for, and the table of its children (one row per service).

Each service is one row (command, port, readiness URL; see :func:`services`), so a new service
joins the stack by adding a row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tidings.dev.info import SECRET_ENV
from tidings.units import split_list


@dataclass(frozen=True, slots=True)
class DevOptions:
    """What `tidings dev` was asked for (ports, data dir, the dev token's claims)."""

    dir: Path = Path(".tidings")
    host: str = "127.0.0.1"
    nats_port: int = 4222
    publisher_port: int = 8081
    gateway_port: int = 8080
    gateway_api_port: int = 8083
    demo_port: int = 8082
    tenant: str = "demo"
    user: str = "alice"
    roles: tuple[str, ...] = ("admin",)
    rooms: tuple[str, ...] = ("*",)
    token_ttl: float = 86400.0
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0

    @property
    def nats_url(self) -> str:
        return f"nats://{self.host}:{self.nats_port}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One supervised child: how to start it and how to tell it is ready."""

    name: str
    flag: str  # the `tidings dev` option that sets the port, named when the port is taken
    host: str
    port: int
    command: tuple[str, ...]
    env: Mapping[str, str]
    ready_path: str = "/readyz"
    info: Mapping[str, str] = field(default_factory=dict)  # extra dev.json fields (e.g. "ws")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _gateway_origins(options: DevOptions) -> str:
    """The gateway's Origin allow-list: the demo page's origins plus whatever the user set."""
    configured = os.environ.get("TIDINGS_GATEWAY_ALLOWED_ORIGINS", "")
    if "*" in split_list(configured):
        return configured
    hosts = (
        {options.host, "127.0.0.1", "localhost"}
        if options.host.startswith("127.")
        else {options.host}
    )
    demo = sorted(f"http://{h}:{options.demo_port}" for h in hosts)
    own = f"http://{options.host}:{options.gateway_port}"  # a page the gateway serves itself
    return ",".join(item for item in [configured, *demo, own] if item)


def services(options: DevOptions, *, secret: str) -> list[ServiceSpec]:
    """The children of the dev stack, one row each: a new service is one more row."""
    host, nats_url = options.host, options.nats_url
    gateway_ws = f"ws://{host}:{options.gateway_port}/ws"
    publisher_url = f"http://{host}:{options.publisher_port}"
    demo_command = (
        sys.executable, "-m", "tidings.dev.demo", "--dir", str(options.dir),
        "--host", host, "--port", str(options.demo_port),
        "--gateway", gateway_ws, "--publisher", publisher_url,
    )  # fmt: skip
    return [
        ServiceSpec(
            name="publisher",
            flag="--publisher-port",
            host=host,
            port=options.publisher_port,
            command=(sys.executable, "-m", "tidings", "publisher"),
            env={
                "TIDINGS_NATS_URLS": nats_url,
                "TIDINGS_PUBLISHER_HOST": host,
                "TIDINGS_PUBLISHER_PORT": str(options.publisher_port),
                "TIDINGS_PUBLISHER_OUTBOX_DIR": str(options.dir / "outbox"),
            },
        ),
        ServiceSpec(
            name="gateway",
            flag="--gateway-port",
            host=host,
            port=options.gateway_port,
            command=(sys.executable, "-m", "tidings", "gateway"),
            env={
                "TIDINGS_NATS_URLS": nats_url,
                "TIDINGS_GATEWAY_HOST": host,
                "TIDINGS_GATEWAY_PORT": str(options.gateway_port),
                "TIDINGS_GATEWAY_API_PORT": str(options.gateway_api_port),
                SECRET_ENV: secret,  # the secret the dev token is signed with
                # Ctrl-C should not wait out a production-length drain.
                "TIDINGS_GATEWAY_DRAIN_SECONDS": os.environ.get(
                    "TIDINGS_GATEWAY_DRAIN_SECONDS", "1"
                ),
                # The demo page comes from its own server, so its WebSocket is cross-origin.
                "TIDINGS_GATEWAY_ALLOWED_ORIGINS": _gateway_origins(options),
            },
            info={"ws": gateway_ws, "api": f"http://{host}:{options.gateway_api_port}"},
        ),
        ServiceSpec(
            name="demo",
            flag="--demo-port",
            host=host,
            port=options.demo_port,
            command=demo_command,
            env={SECRET_ENV: secret},  # it mints dev tokens the gateway accepts
            ready_path="/healthz",
            info={"url": f"http://{host}:{options.demo_port}/demo/"},
        ),
    ]
