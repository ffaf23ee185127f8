"""The admin API's quota routes: a tenant's publish limits, set by the operator, read by its admins.

``PUT /api/admin/quota`` ``{"tenant", "rate"?, "burst"?, "daily"?}`` stores the tenant's limits in
the quotas bucket (creating the bucket if missing); every publisher following the bucket applies
them within its watch's delivery time (milliseconds). ``DELETE /api/admin/quota?tenant=`` puts the
tenant back on the defaults; ``GET /api/admin/quota?tenant=`` answers its limits and today's
count; ``GET /api/admin/quotas`` lists every tenant with limits of its own.

Only the operator key changes limits: a tenant's admin raising its own quota would defeat it.
Each change is an admin action: logged on ``tidings.audit`` and counted in
``tidings_gateway_admin_actions_total`` (``quota_set``, ``quota_reset``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext, api
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.codes import ErrorCode
from tidings.errors import AuthError, Forbidden, InvalidField, MissingField, TidingsError
from tidings.gateway.admin import Actor, Admin, admin_error, admin_json, check_query
from tidings.gateway.audit import Audit
from tidings.quotas.bucket import QuotaBucket
from tidings.quotas.limits import Limits, TenantLimits, day_of
from tidings.settings import QuotaSettings

LIMIT_FIELDS = frozenset({"tenant", "rate", "burst", "daily"})


class QuotaAdmin:
    def __init__(
        self,
        admin: Admin,
        *,
        audit: Audit,
        bucket: QuotaBucket,
        defaults: QuotaSettings,
        js: Callable[[], JetStreamContext],
        like: Callable[[], api.StreamConfig | None],
        timeout: float,
    ) -> None:
        self.admin = admin
        self.audit = audit
        self.bucket = bucket
        self.defaults = Limits.defaults(defaults)
        self.js = js
        self.like = like  # the notification stream's config: the bucket's replicas and storage
        self.timeout = timeout

    def routes(self) -> list[Route]:
        return [
            Route("/api/admin/quota", self.quota, methods=["GET", "PUT", "DELETE"]),
            Route("/api/admin/quotas", self.quotas, methods=["GET"]),
        ]

    async def quota(self, request: Request) -> Response:
        if request.method == "GET":
            return await self.read(request)
        action = "quota_set" if request.method == "PUT" else "quota_reset"
        try:
            actor = await self.admin.actor(request)
        except TidingsError as exc:
            return self.admin.refused(action, exc, request)
        try:
            if actor.tenant is not None:
                raise Forbidden("only the operator key changes quotas", field="Authorization")
            if action == "quota_set":
                check_query(request, frozenset())
                entry = limits_from(await self.admin.read_body(request), actor, time.time())
                tenant = entry.tenant
            else:
                tenant = self.admin.tenant_param(request, actor) or ""
                if not tenant:
                    raise MissingField("name the tenant (?tenant=)", field="tenant")
            js = self.js()
            await self.bucket.ensure(js, like=self.like())
            revision = await (
                self.bucket.put_limits(js, entry)
                if action == "quota_set"
                else self.bucket.delete_limits(js, tenant)
            )
        except TidingsError as exc:
            self.audit.admin(action, "refused", actor=actor.name, code=exc.code.value)
            return admin_error(exc)
        except Exception as exc:  # NATS refused or is away: say so, never a 500
            self.audit.admin(action, "failed", actor=actor.name, why=type(exc).__name__)
            return admin_error(ErrorCode.UNAVAILABLE, f"the quotas bucket is unavailable: {exc}")
        limits = entry.limits if action == "quota_set" else self.defaults
        self.audit.admin(action, "ok", actor=actor.name, tenant=tenant, **limits.to_dict())
        own = action == "quota_set"
        return admin_json(
            {"tenant": tenant, "limits": limits.to_dict(), "own": own, "revision": revision}
        )

    async def read(self, request: Request) -> Response:
        try:
            actor = await self.admin.actor(request)
            tenant = self.admin.tenant_param(request, actor)
            if tenant is None:
                raise MissingField("name the tenant (?tenant=)", field="tenant")
        except AuthError as exc:
            return self.admin.refused("quota_get", exc, request)
        except TidingsError as exc:
            return admin_error(exc)
        try:
            js = self.js()
            await self.bucket.ensure(js, like=self.like())  # none yet: the defaults, 0 used
            entry = await self.bucket.get_limits(js, tenant)
            used = await self.bucket.count(js, day_of(time.time()), tenant)
        except TidingsError as exc:
            return admin_error(exc)
        except Exception as exc:
            return admin_error(ErrorCode.UNAVAILABLE, f"the quotas bucket is unavailable: {exc}")
        body: dict[str, Any] = {
            "tenant": tenant,
            "limits": (entry.limits if entry else self.defaults).to_dict(),
            "own": entry is not None,
            "used_today": used,
        }
        if entry is not None:
            body.update(by=entry.by, at=entry.at)
        return admin_json(body)

    async def quotas(self, request: Request) -> Response:
        try:
            actor = await self.admin.actor(request)
            tenant = self.admin.tenant_param(request, actor)
        except AuthError as exc:
            return self.admin.refused("quota_list", exc, request)
        except TidingsError as exc:
            return admin_error(exc)
        try:
            js = self.js()
            await self.bucket.ensure(js, like=self.like())
            found = await self.bucket.all_limits(js, self.timeout)
        except Exception as exc:
            return admin_error(ErrorCode.UNAVAILABLE, f"the quotas bucket is unavailable: {exc}")
        rows = [e.to_dict() for t, e in sorted(found.items()) if tenant in (None, t)]
        return admin_json({"defaults": self.defaults.to_dict(), "quotas": rows})


def limits_from(body: dict[str, Any], actor: Actor, now: float) -> TenantLimits:
    """The tenant's limits ``body`` asks for; a :class:`TidingsError` naming the field."""
    if "tenant" not in body:
        raise MissingField("name the tenant", field="tenant")
    unknown = sorted(set(body) - LIMIT_FIELDS)
    if unknown:
        raise InvalidField("unknown field", field=unknown[0])
    if not set(body) & {"rate", "burst", "daily"}:
        raise MissingField("set at least one of rate, burst, daily", field="rate")
    return TenantLimits(body["tenant"], Limits.from_dict(body), by=actor.name, at=now)
