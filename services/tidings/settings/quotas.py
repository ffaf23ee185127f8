"""Per-tenant publish quotas (the sidecar and the SDK): on or off, and the default limits."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from tidings.settings.base import config as _config
from tidings.units import Seconds


class QuotaSettings(BaseSettings):
    """Publish quotas per tenant (sidecar and SDK); limits per tenant come from `tidings quota`."""

    model_config = _config("TIDINGS_QUOTA_")

    enabled: bool = Field(
        default=False,
        description="Enforce per-tenant publish quotas in this publisher (sidecar or SDK): follow"
        " the `<stream>_QUOTAS` bucket, count, refuse with 429 beyond a limit.",
    )
    rate: float = Field(
        default=0.0,
        ge=0,
        description="Default publish rate per tenant and per publisher process (notifications"
        " per second; 0: unlimited) for tenants without their own limits.",
    )
    burst: int = Field(
        default=0,
        ge=0,
        description="Default burst above the rate (the token bucket's size; 0: one second of"
        " `RATE`, at least 1).",
    )
    daily: int = Field(
        default=0,
        ge=0,
        description="Default notifications per tenant per UTC day, summed over every publisher"
        " (0: unlimited).",
    )
    warn_at: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="Share of the daily volume at which the tenant's admins get `quota.warning`.",
    )
    notify_role: str = Field(
        default="admin",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Role whose members receive `quota.warning` and `quota.exceeded`.",
    )
    merge_interval: Seconds = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a publisher adds its counts to the shared daily totals.",
    )
