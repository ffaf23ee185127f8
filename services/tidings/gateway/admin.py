"""The admin API on the gateway's API port: revoke (and lift), the revocations in force, presence.

Two credentials, both ``Authorization: Bearer …`` (docs/decisions.md explains why):

- the **operator key** (``TIDINGS_GATEWAY_ADMIN_TOKEN``): any tenant, the cluster-wide view;
  it works when the identity provider does not (or is what was compromised);
- a **token with the admin role** (``TIDINGS_GATEWAY_ADMIN_ROLE``) verified like any other:
  its own tenant only, and never the whole tenant at once.

``POST /api/admin/revoke`` stores the revocation in the bucket, then asks every gateway (over
NATS, :data:`REVOKED_SUBJECT`) to say once it applied it and how many connections it closed.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.auth import Verifier
from tidings.codes import ErrorCode
from tidings.errors import (
    AuthError,
    Forbidden,
    InvalidField,
    Malformed,
    MissingField,
    TidingsError,
    TokenMissing,
    TooLarge,
    error_body,
)
from tidings.gateway.audit import Audit
from tidings.gateway.presence import PRESENCE_SUBJECT, Presence, merge
from tidings.gateway.revoke import (
    MAX_REASON,
    REVOKED_SUBJECT,
    Revocation,
    RevocationBucket,
    RevocationList,
)
from tidings.gateway.scatter import answer_on, gather
from tidings.settings import GatewaySettings
from tidings.subjects import check_id

MAX_BODY = 4096
MAX_TTL = 10 * 365 * 86400.0  # the longest explicit ttl when token lifetimes are unbounded
REVOKE_FIELDS = frozenset({"tenant", "user", "jti", "ttl", "reason"})
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who calls the admin API: the operator (any tenant), or a tenant's admin."""

    name: str  # "operator", or "<tenant>/<user>" (the audit line's actor)
    tenant: str | None = None  # None: the operator

    def may(self, tenant: str | None) -> bool:
        return self.tenant is None or tenant == self.tenant


class Admin:
    """The admin routes, and this gateway's answers to the other gateways' questions."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        gateway_id: str,
        verifier: Verifier,
        revocations: RevocationList,
        bucket: RevocationBucket,
        presence: Presence,
        audit: Audit,
        auth_failures: Counter,
        nats: Callable[[], NATS],
        js: Callable[[], JetStreamContext],
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.verifier = verifier
        self.revocations = revocations
        self.bucket = bucket
        self.presence = presence
        self.audit = audit
        self.auth_failures = auth_failures
        self.nats = nats
        self.js = js

    def routes(self) -> list[Route]:
        return [
            Route("/api/admin/revoke", self.revoke, methods=["POST", "DELETE"]),
            Route("/api/admin/revocations", self.revocations_in_force, methods=["GET"]),
            Route("/api/admin/presence", self.presence_of, methods=["GET"]),
        ]

    # -- answering the other gateways ----------------------------------------------------------

    async def listen(self, nc: NATS) -> None:
        """Answer presence and revoke questions (again, on a new client)."""
        await answer_on(nc, PRESENCE_SUBJECT, self.gateway_id, self._presence_here)
        await answer_on(nc, REVOKED_SUBJECT, self.gateway_id, self._revoked_here)

    async def _presence_here(self, question: dict[str, Any]) -> dict[str, Any] | None:
        tenant, user = question.get("tenant"), question.get("user")
        if not all(v is None or isinstance(v, str) for v in (tenant, user)):
            return None
        return self.presence.answer(tenant, user)

    async def _revoked_here(self, question: dict[str, Any]) -> dict[str, Any] | None:
        revision = question.get("revision")
        if isinstance(revision, bool) or not isinstance(revision, int):
            return None
        applied = await self.revocations.reached(revision, self.settings.admin_timeout)
        return {"applied": applied, "closed": self.revocations.closed.get(revision, 0)}

    # -- the routes ----------------------------------------------------------------------------

    async def revoke(self, request: Request) -> Response:
        lift = request.method == "DELETE"
        action = "lift" if lift else "revoke"
        try:
            actor = await self.actor(request)
        except TidingsError as exc:
            return self.refused(action, exc, request)
        try:
            check_query(request, frozenset())
            rev = revocation_from(
                await self.read_body(request), actor, self.revocations.max_lifetime, time.time()
            )
            if not actor.may(rev.tenant) or (actor.tenant is not None and rev.scope == "tenant"):
                raise Forbidden(
                    "a tenant's admin may revoke its own users and tokens only", field="tenant"
                )
            js = self.js()
            revision = await (self.bucket.lift(js, rev.key) if lift else self.bucket.put(js, rev))
        except TidingsError as exc:
            self.audit.admin(action, "refused", actor=actor.name, code=exc.code.value)
            return admin_error(exc)
        except Exception as exc:  # NATS refused or is away: say so, never a 500
            self.audit.admin(action, "failed", actor=actor.name, why=type(exc).__name__)
            return admin_error(ErrorCode.UNAVAILABLE, f"the revocation list is unavailable: {exc}")
        try:
            replies = await gather(
                self.nats(), REVOKED_SUBJECT, {"revision": revision}, self.settings.admin_timeout
            )
        except Exception:  # stored; NATS went away before the gateways could be asked
            replies = []
        closed = sum(_int(r.get("closed")) for r in replies)
        applied = sum(1 for r in replies if r.get("applied") is True)
        self.audit.admin(
            action,
            "ok",
            actor=actor.name,
            scope=rev.scope,
            tenant=rev.tenant,
            user=rev.user,
            key=rev.key,  # a jti only as its hash
            closed=closed,
            gateways=len(replies),
        )
        body = {
            "lifted" if lift else "revoked": _named(rev) if lift else rev.to_dict(),
            "closed": closed,
            "gateways": len(replies),
            "applied": applied,
        }
        return admin_json(body)

    async def revocations_in_force(self, request: Request) -> Response:
        try:
            actor = await self.actor(request)
            tenant = self.tenant_param(request, actor)
        except AuthError as exc:
            return self.refused("list", exc, request)
        except TidingsError as exc:
            return admin_error(exc)
        return admin_json({"revocations": [r.to_dict() for r in self.revocations.active(tenant)]})

    async def presence_of(self, request: Request) -> Response:
        try:
            actor = await self.actor(request)
            tenant = self.tenant_param(request, actor, frozenset({"tenant", "user"}))
            user = request.query_params.get("user")
            if user is not None:
                check_id(user, field="user")
                if tenant is None:
                    raise MissingField("a user is named within its tenant", field="tenant")
        except AuthError as exc:
            return self.refused("presence", exc, request)
        except TidingsError as exc:
            return admin_error(exc)
        question = {"tenant": tenant, "user": user}
        try:
            replies = await gather(
                self.nats(), PRESENCE_SUBJECT, question, self.settings.admin_timeout
            )
        except Exception as exc:  # NATS is away: say so, never a 500
            return admin_error(ErrorCode.UNAVAILABLE, f"the gateways cannot be asked: {exc}")
        return admin_json(merge(tenant, user, replies))

    # -- checks --------------------------------------------------------------------------------

    async def actor(self, request: Request) -> Actor:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenMissing("send Authorization: Bearer <operator key or admin token>")
        key = self.settings.admin_token
        if key is not None and hmac.compare_digest(token.encode(), key.encode()):
            return Actor("operator")
        claims = await self.verifier.verify(token)
        self.revocations.check(claims)
        if self.settings.admin_role not in claims.roles:
            raise Forbidden(f"the token lacks the role {self.settings.admin_role}", field="roles")
        return Actor(f"{claims.tenant}/{claims.user}", claims.tenant)

    def refused(self, action: str, exc: TidingsError, request: Request) -> Response:
        if isinstance(exc, AuthError):
            self.auth_failures.labels(exc.code.value).inc()
            token = request.headers.get("Authorization", "").partition(" ")[2].strip()
            self.audit.auth_failed(exc.code.value, where=f"admin {action}", token=token)
            return admin_error(exc, **{"WWW-Authenticate": "Bearer"})
        self.audit.admin(action, "refused", actor="unknown", code=exc.code.value)
        return admin_error(exc)

    def tenant_param(
        self, request: Request, actor: Actor, allowed: frozenset[str] = frozenset({"tenant"})
    ) -> str | None:
        check_query(request, allowed)
        tenant = request.query_params.get("tenant", actor.tenant)
        if tenant is not None:
            check_id(tenant, field="tenant")
        if not actor.may(tenant):
            raise Forbidden("a tenant's admin sees its own tenant only", field="tenant")
        return tenant

    async def read_body(self, request: Request) -> dict[str, Any]:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise TooLarge(f"the body is over {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Malformed("the body is not JSON") from None
        if not isinstance(body, dict):
            raise Malformed("the body is a JSON object: {tenant, user?, jti?, ttl?, reason?}")
        return body


def revocation_from(
    body: dict[str, Any], actor: Actor, max_lifetime: float, now: float
) -> Revocation:
    """The revocation ``body`` asks for (made by ``actor`` at ``now``), its end set by the
    token lifetime bound; a :class:`TidingsError` naming the field for anything else."""
    if "tenant" not in body:
        raise MissingField("name the tenant", field="tenant")
    unknown = sorted(set(body) - REVOKE_FIELDS)
    if unknown:
        raise InvalidField("unknown field", field=unknown[0])
    for name in ("user", "jti", "reason"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidField("must be a string", field=name)
    reason = body.get("reason") or ""
    if len(reason) > MAX_REASON:
        raise InvalidField(f"at most {MAX_REASON} characters", field="reason")
    longest = max_lifetime or MAX_TTL  # no lifetime bound: an explicit ttl is still bounded
    ttl = body.get("ttl")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= longest:
            raise InvalidField(
                f"seconds, from 1 to {longest:.0f} (TIDINGS_AUTH_MAX_TOKEN_LIFETIME: no token"
                " it refuses lives longer)",
                field="ttl",
            )
    else:
        ttl = max_lifetime or None  # unbounded lifetimes: until lifted
    return Revocation(
        tenant=body["tenant"],
        user=body.get("user"),
        jti=body.get("jti"),
        at=now,
        until=None if ttl is None else now + float(ttl),
        reason=reason,
        by=actor.name,
    )


def check_query(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a query parameter the route does not take, or one given twice (a typo such as
    ``?tenat=`` must not pass as a request about every tenant)."""
    names = [key for key, _ in request.query_params.multi_items()]
    for name in names:
        if name not in allowed:
            raise InvalidField("unknown query parameter", field=name[:64])
        if names.count(name) > 1:
            raise InvalidField("given more than once", field=name[:64])


def _named(rev: Revocation) -> dict[str, Any]:
    """What a lift names: the revocation's scope and whom, not a time of its own."""
    return {k: v for k, v in rev.to_dict().items() if k in ("scope", "tenant", "user", "jti")}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def admin_json(body: Any) -> Response:
    return Response(orjson.dumps(body), 200, _NO_STORE, "application/json")


def admin_error(error: TidingsError | ErrorCode, reason: str = "", **headers: str) -> Response:
    code = error if isinstance(error, ErrorCode) else error.code
    return Response(
        error_body(error, reason or None),
        code.http_status,
        {**_NO_STORE, **headers},
        "application/json",
    )
