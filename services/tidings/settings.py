"""Typed configuration from ``TIDINGS_*`` environment variables.

One group per concern, each with its own prefix (``TIDINGS_NATS_URLS``, ``TIDINGS_STREAM_MAX_AGE``
...). Every field carries its default and its doc; ``docs/configuration.md`` lists them and a
test keeps the two in step. A bad value stops start-up with a :class:`ConfigError` naming the
variable; unknown ``TIDINGS_*`` variables are reported as warnings by :mod:`tidings.variables`
(Kubernetes injects ``<SERVICE>_PORT``-style variables, so they cannot be fatal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from tidings.auth.keys import check_algorithms, check_secret, load_public_key
from tidings.errors import ConfigError
from tidings.units import Bytes, Seconds, StrList


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", validate_default=True)


class NatsSettings(BaseSettings):
    """How every Tidings process connects to NATS."""

    model_config = _config("TIDINGS_NATS_")

    urls: StrList = Field(
        default=["nats://127.0.0.1:4222"],
        description="Comma-separated server URLs (nats://, tls://); the client picks any.",
    )
    user: str | None = Field(default=None, description="User name for user/password auth.")
    password: str | None = Field(default=None, description="Password for user/password auth.")
    token: str | None = Field(default=None, description="Token for token auth.")
    nkey_seed_file: Path | None = Field(
        default=None, description="File holding an NKey seed (SU...) for NKey auth."
    )
    creds_file: Path | None = Field(
        default=None, description="A `.creds` file (user JWT + NKey seed) for decentralized auth."
    )
    tls_ca_file: Path | None = Field(default=None, description="CA bundle to verify the servers.")
    tls_cert_file: Path | None = Field(default=None, description="Client certificate (mTLS).")
    tls_key_file: Path | None = Field(default=None, description="Client certificate's key.")
    tls_hostname: str | None = Field(
        default=None, description="Server name to verify when it differs from the URL's host."
    )
    connect_timeout: Seconds = Field(default=2.0, description="Timeout of one connect attempt.")
    reconnect_wait: Seconds = Field(default=1.0, description="Pause between reconnect attempts.")
    request_timeout: Seconds = Field(
        default=5.0, description="How long to wait for a JetStream answer (PubAck, API call)."
    )
    ping_interval: Seconds = Field(
        default=1.0,
        gt=0,
        description="Seconds between the client's pings to its NATS server. With"
        " `max_outstanding_pings` it bounds how long a frozen or cut-off server goes unnoticed:"
        " (max_outstanding_pings + 1) x ping_interval, 3 s by default (nats-py's own: 6 min).",
    )
    max_outstanding_pings: int = Field(
        default=2,
        ge=1,
        description="Pings left unanswered before the connection counts as stale and the client"
        " moves to another server.",
    )
    name: str = Field(default="tidings", description="Connection name shown in NATS monitoring.")

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("at least one server URL is required")
        for url in urls:
            if not re.fullmatch(r"(nats|tls|ws|wss)://[^\s/]+(:\d+)?/?", url):
                raise ValueError(f"{url!r} is not a NATS URL such as nats://host:4222")
        return urls

    @field_validator("nkey_seed_file", "creds_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _check_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{str(path)!r} is not a readable file")
        return path

    @model_validator(mode="after")
    def _check_auth(self) -> NatsSettings:
        methods = [
            name
            for name, on in (
                ("user/password", self.user is not None or self.password is not None),
                ("token", self.token is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if on
        ]
        if len(methods) > 1:
            raise ValueError(f"choose one NATS auth method, not {' and '.join(methods)}")
        if (self.user is None) != (self.password is None):
            raise ValueError("TIDINGS_NATS_USER and TIDINGS_NATS_PASSWORD go together")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TIDINGS_NATS_TLS_CERT_FILE and TIDINGS_NATS_TLS_KEY_FILE go together")
        return self


class StreamSettings(BaseSettings):
    """The JetStream stream that holds every notification (provisioned by `tidings nats init`)."""

    model_config = _config("TIDINGS_STREAM_")

    name: str = Field(default="TIDINGS", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Name.")
    replicas: int = Field(default=1, ge=1, le=5, description="Copies: 1 in dev, 3 in production.")
    storage: Literal["file", "memory"] = Field(default="file", description="file or memory.")
    max_age: Seconds = Field(default=7 * 86400.0, description="Keep notifications this long.")
    max_bytes: Bytes = Field(default=1 << 30, description="Keep at most this many bytes.")
    max_msg_size: Bytes = Field(default=1 << 20, description="Largest stored notification.")
    duplicate_window: Seconds = Field(
        default=120.0, description="Window in which a repeated notification id is dropped."
    )

    @model_validator(mode="after")
    def _check_window(self) -> StreamSettings:
        if self.max_age and self.duplicate_window > self.max_age:
            raise ValueError(
                "TIDINGS_STREAM_DUPLICATE_WINDOW must not exceed TIDINGS_STREAM_MAX_AGE"
            )
        return self


class EventsSettings(BaseSettings):
    """Which event types are accepted beyond the built-in catalogue."""

    model_config = _config("TIDINGS_EVENTS_")

    extra: StrList = Field(default=[], description="Extra `<domain>.<action>` types, comma-sep.")
    allow_unknown: bool = Field(default=False, description="Accept any well-formed event type.")


class PublisherSettings(BaseSettings):
    """The publisher sidecar (`tidings publisher`)."""

    model_config = _config("TIDINGS_PUBLISHER_")

    host: str = Field(default="127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(default=8081, ge=0, le=65535, description="Bind port.")
    token: str | None = Field(
        default=None, description="If set, callers must send `Authorization: Bearer <token>`."
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


class LogSettings(BaseSettings):
    """Logging of every Tidings process."""

    model_config = _config("TIDINGS_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level."
    )
    format: Literal["json", "console"] = Field(default="json", description="json or console.")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class AuthSettings(BaseSettings):
    """How the gateway verifies the JWT a client sends in `hello` and `refresh`."""

    model_config = _config("TIDINGS_AUTH_")

    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret (at least 32 bytes); for development."
    )
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key or certificate (RSA >= 2048 bits, EC, Ed25519)."
    )
    jwks_url: str | None = Field(
        default=None, description="JWKS URL of the identity provider; keys chosen by `kid`."
    )
    jwks_cache_seconds: Seconds = Field(
        default=300.0, description="How long a fetched key set is used before it is refetched."
    )
    jwks_refetch_interval: Seconds = Field(
        default=10.0, description="Least time between fetches (an unknown `kid` triggers one)."
    )
    jwks_timeout: Seconds = Field(default=5.0, gt=0, description="Timeout of one JWKS fetch.")
    algorithms: StrList = Field(
        default=[],
        description="Allowed `alg` values; empty: derived from the keys (HS256, RS256, ES256).",
    )
    audience: str | None = Field(default=None, description="Required `aud`, checked when set.")
    issuer: str | None = Field(default=None, description="Required `iss`, checked when set.")
    leeway: Seconds = Field(default=0.0, description="Clock skew allowed on `exp`/`nbf`/`iat`.")
    user_claim: str = Field(default="sub", min_length=1, description="Claim holding the user id.")
    tenant_claim: str = Field(default="tenant", min_length=1, description="Claim: tenant id.")
    roles_claim: str = Field(default="roles", min_length=1, description="Claim: roles array.")
    rooms_claim: str = Field(
        default="rooms", min_length=1, description="Claim: allowed named-room patterns array."
    )
    require_exp: bool = Field(default=True, description="Refuse tokens without `exp`.")

    @field_validator(
        "jwt_secret", "jwt_public_key_file", "jwks_url", "audience", "issuer", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            check_secret(secret.get_secret_value())
        return secret

    @field_validator("jwt_public_key_file")
    @classmethod
    def _check_key_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            load_public_key(path)
        return path

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, algorithms: list[str], info: ValidationInfo) -> list[str]:
        path = info.data.get("jwt_public_key_file")
        return check_algorithms(
            algorithms,
            secret=info.data.get("jwt_secret") is not None,
            public_key=load_public_key(path) if path is not None else None,
            jwks=info.data.get("jwks_url") is not None,
        )

    @property
    def configured(self) -> bool:
        """Whether any key source is set (the gateway refuses to start without one)."""
        return bool(self.algorithms)


class GatewaySettings(BaseSettings):
    """The WebSocket gateway (`tidings gateway`)."""

    model_config = _config("TIDINGS_GATEWAY_")

    host: str = Field(default="0.0.0.0", description="Bind address.")
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Data port: the WebSocket `/ws`, probes, `/metrics` (and the demo page).",
    )
    api_port: int = Field(
        default=8083,
        ge=0,
        le=65535,
        description="API port: `GET /api/notifications/status` (and `/healthz`).",
    )
    id: str = Field(default="", description="Instance id in status answers; default host-pid.")
    allowed_origins: StrList = Field(
        default=[],
        description="Origins allowed to open /ws; empty: same-origin or no Origin only; `*`: any.",
    )
    hello_timeout: Seconds = Field(default=5.0, gt=0, description="Time allowed for `hello`.")
    batch_window: Seconds = Field(
        default=0.002, description="Coalescing window of the fan-out; 0 sends at once."
    )
    max_frame_bytes: Bytes = Field(default=16 * 1024, ge=1024, description="Largest client frame.")
    max_rooms: int = Field(default=64, ge=1, description="Named rooms per connection.")
    rate_limit: float = Field(default=20.0, gt=0, description="Client frames per second.")
    rate_burst: int = Field(default=40, ge=1, description="Client frames allowed in a burst.")
    tenant_quota: int = Field(
        default=0, ge=0, description="Connections per tenant on one gateway; 0 = unlimited."
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
        " this long for the heal, and retries a transient JetStream error within it.",
    )
    status_timeout: Seconds = Field(
        default=0.25, gt=0, description="How long the status API waits for other gateways."
    )
    demo: bool = Field(
        default=False,
        description="Development only: serve the demo page at /demo/ and mint dev tokens for"
        " any tenant at /demo/api/token. Never turn it on in production.",
    )


class TelemetrySettings(BaseSettings):
    """Tracing (OpenTelemetry) of every Tidings process."""

    model_config = _config("TIDINGS_TELEMETRY_")

    exporter: Literal["none", "otlp", "console"] = Field(
        default="none", description="Where spans go: none, otlp (HTTP/protobuf) or console."
    )
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint."
    )
    service_name: str = Field(
        default="", description="service.name of the spans; default tidings-<process>."
    )
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces recorded (parent-based)."
    )


GROUPS: dict[str, type[BaseSettings]] = {
    "nats": NatsSettings,
    "stream": StreamSettings,
    "events": EventsSettings,
    "publisher": PublisherSettings,
    "log": LogSettings,
    "auth": AuthSettings,
    "gateway": GatewaySettings,
    "telemetry": TelemetrySettings,
}


@dataclass(slots=True)
class Settings:
    """Every settings group, loaded and validated together (tests may build one by hand)."""

    nats: NatsSettings = field(default_factory=NatsSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    publisher: PublisherSettings = field(default_factory=PublisherSettings)
    log: LogSettings = field(default_factory=LogSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)


def env_var(group: type[BaseSettings], field_name: str) -> str:
    return f"{group.model_config.get('env_prefix', '')}{field_name}".upper()


def _describe(group: type[BaseSettings], error: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    field = loc[0] if loc and loc[0] in group.model_fields else None
    name = env_var(group, field) if field else f"{group.model_config.get('env_prefix', '')}*"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read every group from the environment; ``overrides`` (group -> model) win."""
    loaded: dict[str, Any] = {}
    problems: list[str] = []
    for key, group in GROUPS.items():
        if key in overrides:
            loaded[key] = overrides[key]
            continue
        try:
            loaded[key] = group()
        except ValidationError as exc:
            problems.extend(_describe(group, e) for e in exc.errors())
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return Settings(**loaded)
