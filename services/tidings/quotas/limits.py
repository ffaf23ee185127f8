"""A tenant's publish limits, the keys of the quotas bucket, and the UTC day they count in.

The bucket ``<stream>_QUOTAS`` holds three kinds of keys:

- ``limit.<tenant>``: the tenant's limits (``{"rate", "burst", "daily", "by", "at"}``), written
  by the admin API (`tidings quota set`); a tenant without one has the settings' defaults;
- ``day.<yyyymmdd>.<tenant>``: the notifications the tenant published that day, summed over
  every publisher (each adds its own count with compare-and-set on the key's revision);
- ``sent.<yyyymmdd>.<tenant>.<kind>``: created once by the publisher that sends the tenant's
  admins that day's notice of ``kind`` (a create fails when the key exists: one notice per day).

Day and notice keys carry a message TTL of two days: the bucket never grows with time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from tidings.errors import InvalidField
from tidings.settings import QuotaSettings
from tidings.subjects import check_id

DAY_SECONDS = 86400
DAY_KEY_TTL = 2 * DAY_SECONDS  # a day's count and notices outlive the day by one day
MAX_RATE = 1_000_000.0
MAX_COUNT = 10**12
UNLIMITED = 0  # a limit of 0: none


def bucket_name(stream: str) -> str:
    """The KV bucket of a stream's quotas (its stream is ``KV_<bucket>``)."""
    return f"{stream}_QUOTAS"


def day_of(now: float) -> str:
    """The UTC day ``now`` falls in, as ``yyyymmdd`` (a key token)."""
    return time.strftime("%Y%m%d", time.gmtime(now))


def seconds_to_midnight(now: float) -> int:
    """Whole seconds until the next UTC day (at least 1): a daily refusal's ``Retry-After``."""
    return max(1, math.ceil(DAY_SECONDS - now % DAY_SECONDS))


def limit_key(tenant: str) -> str:
    return f"limit.{tenant}"


def day_key(day: str, tenant: str) -> str:
    return f"day.{day}.{tenant}"


def sent_key(day: str, tenant: str, kind: str) -> str:
    return f"sent.{day}.{tenant}.{kind}"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one tenant may publish: ``rate`` per second per process with a ``burst``, and
    ``daily`` notifications per UTC day over every publisher (0: unlimited)."""

    rate: float = 0.0
    burst: int = 0
    daily: int = 0

    def __post_init__(self) -> None:
        if not _number(self.rate) or not 0 <= self.rate <= MAX_RATE:
            raise InvalidField(f"notifications per second, 0 to {MAX_RATE:.0f}", field="rate")
        for name in ("burst", "daily"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise InvalidField(f"a whole number, 0 to {MAX_COUNT}", field=name)

    @property
    def size(self) -> float:
        """The token bucket's size: ``burst``, or one second of ``rate`` (at least 1)."""
        return float(self.burst) if self.burst else max(1.0, self.rate)

    @property
    def unlimited(self) -> bool:
        return not self.rate and not self.daily

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst, "daily": self.daily}

    @classmethod
    def from_dict(cls, body: Any) -> Limits:
        """From a request or a stored entry; :class:`InvalidField` names what is wrong."""
        if not isinstance(body, dict):
            raise InvalidField("limits are a JSON object {rate, burst, daily}", field="limits")
        rate = body.get("rate", 0)
        if not _number(rate):
            raise InvalidField("must be a number", field="rate")
        return cls(rate=float(rate), burst=body.get("burst", 0), daily=body.get("daily", 0))

    @classmethod
    def defaults(cls, settings: QuotaSettings) -> Limits:
        return cls(rate=settings.rate, burst=settings.burst, daily=settings.daily)


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A stored entry: one tenant's limits, who set them and when (audit)."""

    tenant: str
    limits: Limits
    by: str = ""
    at: float = 0.0

    def __post_init__(self) -> None:
        check_id(self.tenant, field="tenant")

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, **self.limits.to_dict(), "by": self.by, "at": self.at}

    @classmethod
    def from_dict(cls, body: Any) -> TenantLimits:
        if not isinstance(body, dict):
            raise InvalidField("a quota entry is a JSON object", field="limits")
        by, at = body.get("by", ""), body.get("at", 0.0)
        if not isinstance(by, str) or not _number(at):
            raise InvalidField("by/at have wrong types", field="by")
        return cls(body.get("tenant"), Limits.from_dict(body), by[:200], float(at))  # type: ignore[arg-type]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
