"""Tokens, logs and traces: what every service verifies and reports the same way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings

from tidings.auth.keys import check_algorithms, check_secret, load_public_key
from tidings.settings.base import config as _config
from tidings.units import Seconds, StrList


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
    max_token_lifetime: Seconds = Field(
        default=7 * 86400.0,
        ge=0,
        description="Longest lifetime accepted (`exp` - `iat`, and `exp` - now); 0: no bound.",
    )

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
