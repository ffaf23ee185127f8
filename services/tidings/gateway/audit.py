"""The audit trail: refused authentications and admin actions, logged and counted.

Refused tokens are logged on the ``tidings.audit`` logger with the reason code, where (``hello``,
``refresh``, the API), and the tenant when one is known, never the token itself. An attacker can
cause as many refusals as it likes, so their lines are rate-limited (a token bucket): beyond it
lines are dropped and counted, and the next line written says how many were (``suppressed``);
the ``tidings_gateway_auth_failures_total`` counter still counts every one. Admin actions
(revoke, lift, quota changes) are few and authenticated: each is logged, and counted in
``tidings_gateway_admin_actions_total`` by action and outcome.
"""

from __future__ import annotations

import base64
import logging
import time

import orjson
from prometheus_client import CollectorRegistry, Counter

from tidings.subjects import ID_RE

log = logging.getLogger("tidings.audit")

LOG_RATE = 5.0  # refused-authentication lines per second, on average
LOG_BURST = 20  # lines written at once before the rate applies


def claimed_tenant(token: object, tenant_claim: str) -> str | None:
    """The tenant a refused token *claims* (its signature may not verify), when it is a
    well-formed id: what an operator needs to see which tenant's users fail, and nothing an
    attacker can use to write arbitrary text into the log."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        return None
    try:
        part = token.split(".")[1]
        body = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    value = body.get(tenant_claim) if isinstance(body, dict) else None
    return value if isinstance(value, str) and ID_RE.fullmatch(value) else None


class Audit:
    """Writes the audit lines of one gateway; counts admin actions on its metrics registry."""

    def __init__(
        self,
        metrics: CollectorRegistry,
        *,
        tenant_claim: str = "tenant",
        rate: float = LOG_RATE,
        burst: int = LOG_BURST,
    ) -> None:
        self.tenant_claim = tenant_claim
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self.suppressed = 0  # refused-authentication lines dropped since the last one written
        self.admin_actions = Counter(
            "tidings_gateway_admin_actions",
            "Admin API actions (revoke, lift, quota_set, quota_reset), by action and outcome"
            " (ok, refused, failed).",
            ["action", "outcome"],
            registry=metrics,
        )

    def _may_log(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.suppressed += 1
            return False
        self._tokens -= 1
        return True

    def auth_failed(
        self, reason: str, *, where: str, tenant: str | None = None, token: object = None
    ) -> None:
        """A refused token: ``tenant`` when verified, else the one ``token`` claims (if any)."""
        if not self._may_log():
            return
        extra: dict[str, object] = {"reason": reason, "where": where}
        if tenant is not None:
            extra["tenant"] = tenant
        elif (claimed := claimed_tenant(token, self.tenant_claim)) is not None:
            extra["tenant_claimed"] = claimed  # unverified: the token's signature may be forged
        if self.suppressed:
            extra["suppressed"], self.suppressed = self.suppressed, 0
        log.warning("authentication refused", extra=extra)

    def admin(self, action: str, outcome: str, *, actor: str, **details: object) -> None:
        """One admin action: who did what, and how it ended."""
        self.admin_actions.labels(action, outcome).inc()
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(
            level,
            "admin action",
            extra={"action": action, "outcome": outcome, "actor": actor, **details},
        )
