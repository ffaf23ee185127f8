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
from urllib.parse import urlsplit

from tidings.dev.info import SECRET_ENV
from tidings.errors import InvalidField
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
    gateway_metrics_port: int = 9464  # +100 for each next gateway, like the other two
    demo_port: int = 8082
    inbox_port: int = 8084  # the inbox writer's probes and /metrics
    inbox_api_port: int = 8085
    tenant: str = "demo"
    user: str = "alice"
    roles: tuple[str, ...] = ("admin",)
    rooms: tuple[str, ...] = ("*",)
    token_ttl: float = 86400.0
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0
    nats_cluster: int = 1  # nats-servers; more than one are clustered, the stream at R3
    gateways: int = 1
    ingress: bool | None = None  # nginx in front of the gateways; None: when gateways > 1
    ingress_port: int = 8090
    allow_origins: tuple[str, ...] = ()  # --allow-origin: more pages allowed to open /ws

    @property
    def nats_ports(self) -> list[int]:
        """Client ports of the nats-servers: ``nats_port`` and the next ones."""
        return [self.nats_port + i for i in range(self.nats_cluster)]

    @property
    def nats_url(self) -> str:
        """Every nats-server, comma-separated, as ``TIDINGS_NATS_URLS`` takes them."""
        return ",".join(f"nats://{self.host}:{p}" for p in self.nats_ports)

    @property
    def inbox_database_url(self) -> str:
        """The dev inbox: a SQLite file in the dev dir (migrated by the stack before its
        children start, so the writer and the API never race to create the schema)."""
        return f"sqlite:///{(self.dir / 'inbox.db').resolve()}"

    @property
    def inbox_api_url(self) -> str:
        return f"http://{self.host}:{self.inbox_api_port}"

    @property
    def with_ingress(self) -> bool:
        return self.gateways > 1 if self.ingress is None else self.ingress

    @property
    def gateway_ports(self) -> list[tuple[int, int]]:
        """(data port, API port) of each gateway: the given ports, then +100 for each next one
        (8080/8083, 8180/8183, 8280/8283 by default)."""
        return [
            (self.gateway_port + 100 * i, self.gateway_api_port + 100 * i)
            for i in range(self.gateways)
        ]

    def gateway_name(self, i: int) -> str:
        return "gateway" if self.gateways == 1 else f"gateway-{i + 1}"

    @property
    def ingress_url(self) -> str:
        return f"http://{self.host}:{self.ingress_port}"


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


def check_origin(value: str) -> str:
    """An origin as browsers send it (``http://localhost:5173``: scheme, host, port; no path),
    or ``*``; :class:`InvalidField` naming ``--allow-origin`` otherwise."""
    if value == "*":
        return value
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise InvalidField(
            f"{value!r} is not an origin: give scheme://host[:port], e.g. http://localhost:5173",
            field="--allow-origin",
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"  # what a browser sends: no trailing /


def _gateway_origins(options: DevOptions) -> str:
    """The gateway's Origin allow-list: the demo page's origins, ``--allow-origin``, and
    whatever TIDINGS_GATEWAY_ALLOWED_ORIGINS already says."""
    configured = os.environ.get("TIDINGS_GATEWAY_ALLOWED_ORIGINS", "")
    if "*" in split_list(configured) or "*" in options.allow_origins:
        return "*"
    hosts = (
        {options.host, "127.0.0.1", "localhost"}
        if options.host.startswith("127.")
        else {options.host}
    )
    demo = sorted(f"http://{h}:{options.demo_port}" for h in hosts)
    # Pages a gateway serves itself, directly or through the ingress.
    own = [f"http://{options.host}:{port}" for port, _ in options.gateway_ports]
    if options.with_ingress:
        own.append(options.ingress_url)
    given = [*options.allow_origins]
    return ",".join(item for item in [configured, *given, *demo, *own] if item)


def services(options: DevOptions, *, secret: str) -> list[ServiceSpec]:
    """The children of the dev stack, one row each: a new service is one more row."""
    host, nats_url = options.host, options.nats_url
    first_port = options.gateway_ports[0][0]
    # The demo page connects where a user's browser would: the ingress when there is one.
    gateway_ws = (
        options.ingress_url.replace("http://", "ws://", 1) + "/ws"
        if options.with_ingress
        else f"ws://{host}:{first_port}/ws"
    )
    publisher_url = f"http://{host}:{options.publisher_port}"
    demo_command = (
        sys.executable, "-m", "tidings.dev.demo", "--dir", str(options.dir),
        "--host", host, "--port", str(options.demo_port),
        "--gateway", gateway_ws, "--publisher", publisher_url,
        "--inbox-api", options.inbox_api_url,
    )  # fmt: skip
    inbox_env = {
        "TIDINGS_NATS_URLS": nats_url,
        "TIDINGS_INBOX_DATABASE_URL": options.inbox_database_url,
    }
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
                "TIDINGS_PUBLISHER_ALLOW_ANONYMOUS": "true",  # dev, even with --host 0.0.0.0
            },
        ),
        *(
            _gateway(options, i, port, api_port, secret=secret)
            for i, (port, api_port) in enumerate(options.gateway_ports)
        ),
        ServiceSpec(
            name="inbox-writer",
            flag="--inbox-port",
            host=host,
            port=options.inbox_port,
            command=(sys.executable, "-m", "tidings", "inbox", "writer"),
            env={
                **inbox_env,
                "TIDINGS_INBOX_HOST": host,
                "TIDINGS_INBOX_PORT": str(options.inbox_port),
            },
        ),
        ServiceSpec(
            name="inbox-api",
            flag="--inbox-api-port",
            host=host,
            port=options.inbox_api_port,
            command=(sys.executable, "-m", "tidings", "inbox", "api"),
            env={
                **inbox_env,
                "TIDINGS_INBOX_API_HOST": host,
                "TIDINGS_INBOX_API_PORT": str(options.inbox_api_port),
                SECRET_ENV: secret,  # it verifies the same tokens as the gateway
                # The demo page calls it from its own origin (CORS follows this list).
                "TIDINGS_GATEWAY_ALLOWED_ORIGINS": _gateway_origins(options),
            },
            info={"openapi": f"{options.inbox_api_url}/v1/inbox/openapi.json"},
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


def _gateway(options: DevOptions, i: int, port: int, api_port: int, *, secret: str) -> ServiceSpec:
    host = options.host
    env = {
        "TIDINGS_NATS_URLS": options.nats_url,
        "TIDINGS_GATEWAY_HOST": host,
        "TIDINGS_GATEWAY_PORT": str(port),
        "TIDINGS_GATEWAY_API_PORT": str(api_port),
        "TIDINGS_GATEWAY_METRICS_PORT": str(options.gateway_metrics_port + 100 * i),
        SECRET_ENV: secret,  # the secret the dev token is signed with
        # Ctrl-C should not wait out a production-length drain.
        "TIDINGS_GATEWAY_DRAIN_SECONDS": os.environ.get("TIDINGS_GATEWAY_DRAIN_SECONDS", "1"),
        # The demo page comes from its own server, so its WebSocket is cross-origin.
        "TIDINGS_GATEWAY_ALLOWED_ORIGINS": _gateway_origins(options),
        # Counts in welcome, `inbox` frames, muted domains (the inbox API answers).
        "TIDINGS_GATEWAY_INBOX": "true",
    }
    if options.gateways > 1:  # status answers say which one answered
        env["TIDINGS_GATEWAY_ID"] = options.gateway_name(i)
    return ServiceSpec(
        name=options.gateway_name(i),
        flag="--gateway-port",
        host=host,
        port=port,
        command=(sys.executable, "-m", "tidings", "gateway"),
        env=env,
        info={"ws": f"ws://{host}:{port}/ws", "api": f"http://{host}:{api_port}"},
    )
