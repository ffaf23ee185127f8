"""Typed configuration from ``TIDINGS_*`` environment variables.

One group per concern, each with its own prefix (``TIDINGS_NATS_URLS``, ``TIDINGS_STREAM_MAX_AGE``
...). Every field carries its default and its doc; ``docs/configuration.md`` lists them and a
test keeps the two in step. A bad value stops start-up with a :class:`ConfigError` naming the
variable; unknown ``TIDINGS_*`` variables are reported as warnings by :mod:`tidings.variables`
(Kubernetes injects ``<SERVICE>_PORT``-style variables, so they cannot be fatal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tidings.errors import ConfigError
from tidings.settings.connection import EventsSettings, NatsSettings, StreamSettings
from tidings.settings.quotas import QuotaSettings
from tidings.settings.security import AuthSettings, LogSettings, TelemetrySettings
from tidings.settings.services import GatewaySettings, InboxSettings, PublisherSettings

__all__ = [
    "GROUPS",
    "AuthSettings",
    "EventsSettings",
    "GatewaySettings",
    "InboxSettings",
    "LogSettings",
    "NatsSettings",
    "PublisherSettings",
    "QuotaSettings",
    "Settings",
    "StreamSettings",
    "TelemetrySettings",
    "env_var",
    "load_settings",
]

GROUPS: dict[str, type[BaseSettings]] = {
    "nats": NatsSettings,
    "stream": StreamSettings,
    "events": EventsSettings,
    "publisher": PublisherSettings,
    "quota": QuotaSettings,
    "log": LogSettings,
    "auth": AuthSettings,
    "gateway": GatewaySettings,
    "telemetry": TelemetrySettings,
    "inbox": InboxSettings,
}


@dataclass(slots=True)
class Settings:
    """Every settings group, loaded and validated together (tests may build one by hand)."""

    nats: NatsSettings = field(default_factory=NatsSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    publisher: PublisherSettings = field(default_factory=PublisherSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    log: LogSettings = field(default_factory=LogSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    inbox: InboxSettings = field(default_factory=InboxSettings)


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
