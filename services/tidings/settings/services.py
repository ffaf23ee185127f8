"""One group per service: the publisher sidecar, the gateway, the inbox writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from tidings.settings.base import config as _config
from tidings.units import Bytes, Seconds, StrList


class PublisherSettings(BaseSettings):
    """The publisher sidecar (`tidings publisher`)."""

    model_config = _config("TIDINGS_PUBLISHER_")

    host: str = Field(default="127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(default=8081, ge=0, le=65535, description="Bind port.")
    token: str | None = Field(
        default=None, description="If set, callers must send `Authorization: Bearer <token>`."
    )
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without `TOKEN` on an address other than loopback (anyone who"
        " reaches it may publish); without it such a sidecar refuses to start.",
    )
    allow_broadcast: bool = Field(
        default=False, description='Allow `{"broadcast": true}` audiences (privileged).'
    )
    source: str = Field(default="", description="Default `source` recorded in each envelope.")
    max_body_bytes: Bytes = Field(default=64 * 1024, ge=1024, description="Largest single body.")
    batch_max_bytes: Bytes = Field(default=4 << 20, ge=1024, description="Largest batch body.")
    batch_max_items: int = Field(default=1000, ge=1, description="Most notifications per batch.")
    outbox_dir: Path = Field(
        default=Path(".tidings/outbox"), description="Directory of the durable outbox."
    )
    outbox_max_messages: int = Field(
        default=100_000, ge=1, description="Outbox bound in messages; beyond it answers 503."
    )
    outbox_max_bytes: Bytes = Field(
        default=256 << 20, ge=1024, description="Outbox bound in bytes."
    )
    retry_after: int = Field(default=5, ge=1, description="Retry-After seconds on a full outbox.")


class GatewaySettings(BaseSettings):
    """The WebSocket gateway (`tidings gateway`)."""

    model_config = _config("TIDINGS_GATEWAY_")

    host: str = Field(default="0.0.0.0", description="Bind address.")
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Data port: the WebSocket `/ws`, probes (and the demo page).",
    )
    api_port: int = Field(
        default=8083,
        ge=0,
        le=65535,
        description="API port: `GET /api/notifications/status` (and `/healthz`).",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description=(
            "Metrics port: `GET /metrics` (Prometheus), kept off the public data and API ports;"
            " expose it to the scraper only."
        ),
    )
    id: str = Field(default="", description="Instance id in status answers; default host-pid.")
    allowed_origins: StrList = Field(
        default=[],
        description=(
            "Origins allowed to open /ws and to call the status API from a browser (CORS);"
            " empty: same-origin or no Origin only; `*`: any."
        ),
    )
    backlog: int = Field(
        default=4096,
        ge=1,
        le=65535,
        description="Listen backlog of the data port: connections the kernel queues before the"
        " gateway accepts them. A reconnect storm (a gateway's clients all landing on the others"
        " at once) needs thousands; the kernel caps it at `net.core.somaxconn` (4096 on"
        " Linux >= 5.4).",
    )
    hello_timeout: Seconds = Field(default=5.0, gt=0, description="Time allowed for `hello`.")
    batch_window: Seconds = Field(
        default=0.002,
        description="Longest a notification waits in the fan-out to be coalesced with others:"
        " flushes are spaced by twice their cost (counted from the end of the last), and one"
        " arriving within that spacing waits for its rest, at most this; after a quiet spell or"
        " a cheap flush it goes out at once (at the end of the event loop's turn: a wait under"
        " the loop's 1 ms timer tick is none); 0: always at the end of the turn.",
    )
    batch_window_max: Seconds = Field(
        default=0.02,
        description="Longest the fan-out's spacing stretches under load: after a late flush,"
        " the next waits twice that flush's CPU time (at most this), so writes keep to a third"
        " of the gateway's time and each carries more; equal to `batch_window` (or less): no"
        " stretching.",
    )
    max_frame_bytes: Bytes = Field(default=16 * 1024, ge=1024, description="Largest client frame.")
    max_rooms: int = Field(default=64, ge=1, description="Named rooms per connection.")
    rate_limit: float = Field(default=20.0, gt=0, description="Client frames per second.")
    rate_burst: int = Field(default=40, ge=1, description="Client frames allowed in a burst.")
    tenant_quota: int = Field(
        default=0, ge=0, description="Connections per tenant on one gateway; 0 = unlimited."
    )
    user_connections: int = Field(
        default=0,
        ge=0,
        description="Connections one user (tenant, user) may hold summed over every gateway"
        " (`user_connections_full`, close 4029, at hello beyond); the gateways share their"
        " counts over NATS, so the sum is eventually consistent (about 0.25 s; a gateway not"
        " heard from for 3 s stops counting). 0 = unlimited.",
    )
    connect_rate_per_ip: float = Field(
        default=0.0,
        ge=0,
        description="New connections per second per client address (TCP peer), answered 429"
        " beyond; 0 = off (behind an ingress every client shares its address: limit there).",
    )
    connect_burst_per_ip: int = Field(
        default=20, ge=1, description="New connections allowed at once per client address."
    )
    connect_rate_per_tenant: float = Field(
        default=100.0,
        ge=0,
        description="New connections per second per tenant on one gateway (`rate_limited` at"
        " hello beyond); 0 = off.",
    )
    connect_burst_per_tenant: int = Field(
        default=1000, ge=1, description="New connections allowed at once per tenant."
    )
    max_outbound_bytes: Bytes = Field(
        default=1 << 20,
        ge=4096,
        description="Unsent bytes per connection before it is closed as a slow consumer (1013).",
    )
    replay_max_messages: int = Field(
        default=5000,
        ge=1,
        description="Per tenant: notifications kept for resume, and the most replayed.",
    )
    replay_max_age: Seconds = Field(
        default=900.0, gt=0, description="Per tenant: how far back a resume can reach."
    )
    replay_concurrency: int = Field(
        default=8, ge=1, description="JetStream range reads running at once (reconnect storms)."
    )
    interest_linger: Seconds = Field(
        default=30.0, description="Keep a tenant's subscription this long after its last client."
    )
    drain_seconds: Seconds = Field(
        default=20.0, description="On SIGTERM, spread reconnects over this long, then exit."
    )
    ping_interval: Seconds = Field(default=25.0, gt=0, description="WebSocket keepalive pings.")
    heal_timeout: Seconds = Field(
        default=15.0,
        gt=0,
        description="After a NATS loss, how long the heal (every hosted tenant re-armed) may take"
        " before the gateway sends its connections away with `reconnect`; a resume waits at most"
        " this long for the heal, and retries a transient JetStream error within it; at"
        " start-up, the stream and the revocation list wait out a JetStream election this long.",
    )
    status_timeout: Seconds = Field(
        default=0.25, gt=0, description="How long the status API waits for other gateways."
    )
    admin_token: str | None = Field(
        default=None,
        min_length=32,
        description="Operator key of the admin API (API port: revoke, presence of any tenant):"
        " `Authorization: Bearer <key>`; at least 32 characters. Unset: only tokens with the"
        " admin role, each for its own tenant.",
    )
    admin_role: str = Field(
        default="admin",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Token role that may use the admin API for its own tenant (revoke its users"
        " and tokens, see its presence).",
    )
    admin_timeout: Seconds = Field(
        default=1.0,
        gt=0,
        description="How long a revoke waits for every gateway to apply it (and say how many"
        " connections it closed), and a presence question for their answers.",
    )
    demo: bool = Field(
        default=False,
        description="Development only: serve the demo page at /demo/ and mint dev tokens for"
        " any tenant at /demo/api/token. Never turn it on in production.",
    )
    inbox: bool = Field(
        default=False,
        description="Follow the inbox API over NATS: ask `tidings.inbox.session` at `hello`"
        " (the welcome carries the user's counts), push `inbox` frames on"
        " `tidings.inbox.changed.<tenant>.<user>`, and drop notifications of the domains the user"
        " muted (never `critical`). Off: the gateway neither asks nor listens.",
    )
    inbox_timeout: Seconds = Field(
        default=0.25,
        gt=0,
        description="How long a `hello` waits for the inbox's answer; without one in time the"
        " welcome goes without counts and nothing is muted until the inbox says otherwise.",
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class InboxSettings(BaseSettings):
    """The inbox (`tidings inbox writer` and `tidings inbox api`): the store of every
    notification, its writer and its REST API."""

    model_config = _config("TIDINGS_INBOX_")

    database_url: str = Field(
        default="sqlite:///.tidings/inbox.db",
        description="SQLAlchemy URL: `postgresql://user:pw@host/db` in production, or"
        " `sqlite:///path` (the async drivers asyncpg / aiosqlite are chosen for you).",
    )
    migrate: bool = Field(default=False, description="Apply the database migrations at start-up.")
    host: str = Field(default="127.0.0.1", description="Bind address of /metrics and probes.")
    port: int = Field(default=8084, ge=0, le=65535, description="Port of /metrics and probes.")
    durable: str = Field(
        default="tidings-inbox",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable JetStream consumer the writers share (one name per inbox).",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Messages per fetch.")
    fetch_timeout: Seconds = Field(
        default=1.0, gt=0, description="How long one fetch waits for a first message."
    )
    ack_wait: Seconds = Field(
        default=30.0, gt=0, description="Redelivery delay of a message fetched but not acked."
    )
    retention_max_age_days: int = Field(
        default=90,
        ge=0,
        le=36_500,
        description="Delete notifications stored longer ago than this many days (0: no limit);"
        " a tenant's own value (inbox_retention) wins.",
    )
    retention_max_items: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Keep the newest N notifications per audience (a user, a role, a room, the"
        " tenant, broadcasts), deleting older ones (0: no limit); a tenant's own value wins.",
    )
    retention_interval: Seconds = Field(
        default=600.0, ge=1, description="Time between two retention passes of the writer."
    )
    retention_batch_size: int = Field(
        default=1000, ge=1, le=10_000, description="Rows one retention DELETE removes at most."
    )
    retention_pause: Seconds = Field(
        default=0.1, ge=0, description="Pause between two retention DELETEs (lets writes in)."
    )
    api_host: str = Field(
        default="127.0.0.1", description="Bind address of the inbox REST API (`tidings inbox api`)."
    )
    api_port: int = Field(
        default=8085, ge=0, le=65535, description="Port of the inbox REST API, probes and /metrics."
    )
    admin_role: str = Field(
        default="admin",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Token role that may set tenant preference defaults and erase a user's inbox.",
    )
