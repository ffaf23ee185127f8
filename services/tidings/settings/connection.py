"""Where NATS is and what the stream and its event catalogue look like."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings

from tidings.settings.base import config as _config
from tidings.units import Bytes, Seconds, StrList


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
    publish_try: Seconds = Field(
        default=1.0,
        gt=0,
        description="How long one publish waits for its PubAck before it is sent again with the"
        " same `Nats-Msg-Id` (the stream stores it once), within `request_timeout` (sidecar and"
        " outbox, SDK). While a stream leader is elected (~5 s) nothing answers; a publish"
        " then lands within about this after the new leader exists.",
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
    inbox_prefix: str | None = Field(
        default=None,
        description="Prefix of reply subjects; default `_INBOX_<service>` (`gateway`,"
        " `publisher`, `admin`), so NATS permissions let each user read its own replies only.",
    )

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
