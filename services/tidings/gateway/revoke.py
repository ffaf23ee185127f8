"""Revocations: tokens (``jti``), users and tenants refused on every gateway at once.

The list lives in a NATS KV bucket (``<stream>_REVOKED``, replicated like the stream), one key
per revocation: ``tenant.<tenant>``, ``user.<tenant>.<user>``, ``jti.<tenant>.<hash of jti>``.
Each entry ends by itself: the message's own TTL (the longest a token it refuses can still live,
bounded by ``TIDINGS_AUTH_MAX_TOKEN_LIFETIME``) removes it from the bucket, and every gateway
ignores an entry past its ``until`` anyway.

Every gateway follows the bucket (an ordered consumer, last value per key): it loads the whole
list before it serves (and again after a NATS reconnect), then applies each change as it comes,
closing the connections it refuses. A ``hello`` (and a ``refresh``) is checked against the list
in memory: at most three dictionary lookups, never per notification.

A user's or a tenant's revocation refuses the tokens issued up to its time (``iat``; a token
without one counts as issued at ``exp`` minus the lifetime bound), so a token the identity
provider issues afterwards is accepted: the way to "log a user out everywhere".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from tidings.auth import Claims
from tidings.errors import InvalidField, TidingsError, TokenRevoked
from tidings.gateway.connection import State
from tidings.gateway.registry import Registry
from tidings.nats import follow_keys, keys_loaded
from tidings.nats_link import NatsLink
from tidings.subjects import check_id

log = logging.getLogger(__name__)

REVOKED_SUBJECT = "tidings.gateway.revoked"  # "have you applied revision R? how many closed?"
MAX_JTI = 256  # characters of a `jti` an operator may name
MAX_REASON = 200
_KEPT_COUNTS = 256  # closed-connection counts remembered per revision (for the API's answer)
_DEL_OPS = ("DEL", "PURGE")


def bucket_name(stream: str) -> str:
    """The KV bucket of a stream's revocations (its stream is ``KV_<bucket>``)."""
    return f"{stream}_REVOKED"


def _jti_key(jti: str) -> str:
    # A `jti` may hold any character; a KV key may not: the key holds its hash.
    return hashlib.sha256(jti.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: a tenant, one of its users, or one of its tokens (``jti``)."""

    tenant: str
    user: str | None = None
    jti: str | None = None
    at: float = 0.0  # unix time it was made: a user's or tenant's refuses tokens issued up to it
    until: float | None = None  # unix time it ends; None: until lifted
    reason: str = ""
    by: str = ""  # who made it (audit): "operator" or "<tenant>/<user>" of an admin token

    def __post_init__(self) -> None:
        check_id(self.tenant, field="tenant")
        if self.user is not None:
            check_id(self.user, field="user")
        if self.jti is not None:
            if not isinstance(self.jti, str) or not 0 < len(self.jti) <= MAX_JTI:
                raise InvalidField(f"must be 1 to {MAX_JTI} characters", field="jti")
            if self.user is not None:
                raise InvalidField("name a user or a token (jti), not both", field="jti")

    @property
    def scope(self) -> str:
        return "jti" if self.jti is not None else "user" if self.user is not None else "tenant"

    @property
    def key(self) -> str:
        if self.jti is not None:
            return f"jti.{self.tenant}.{_jti_key(self.jti)}"
        if self.user is not None:
            return f"user.{self.tenant}.{self.user}"
        return f"tenant.{self.tenant}"

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def refuses(self, claims: Claims, max_lifetime: float) -> bool:
        """Whether this revocation refuses ``claims`` (it must be the one its key names)."""
        if claims.tenant != self.tenant:
            return False
        if self.jti is not None:
            return claims.jti == self.jti
        if self.user is not None and claims.user != self.user:
            return False
        issued = claims.issued_at
        if issued is None and claims.expires_at is not None and max_lifetime:
            issued = claims.expires_at - max_lifetime  # the earliest it can have been accepted
        return issued is None or issued <= self.at

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"scope": self.scope, "tenant": self.tenant}
        if self.user is not None:
            body["user"] = self.user
        if self.jti is not None:
            body["jti"] = self.jti
        body.update(at=self.at, until=self.until, reason=self.reason, by=self.by)
        return body

    @classmethod
    def from_dict(cls, body: Any) -> Revocation:
        """From a stored entry; :class:`InvalidField` (or ``Malformed``) for anything else."""
        if not isinstance(body, dict):
            raise InvalidField("a revocation is a JSON object", field="revocation")
        at, until = body.get("at"), body.get("until")
        if not isinstance(at, int | float) or not _number(at):
            raise InvalidField("must be a number", field="at")
        if until is not None and not (isinstance(until, int | float) and _number(until)):
            raise InvalidField("must be a number", field="until")
        reason, by = body.get("reason", ""), body.get("by", "")
        if not isinstance(reason, str) or not isinstance(by, str):
            raise InvalidField("reason/by must be strings", field="reason")
        return cls(
            tenant=body.get("tenant"),  # type: ignore[arg-type]  # checked by __post_init__
            user=body.get("user"),
            jti=body.get("jti"),
            at=float(at),
            until=None if until is None else float(until),
            reason=reason[:MAX_REASON],
            by=by[:MAX_REASON],
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def keys_of(claims: Claims) -> tuple[str, ...]:
    """The keys of every revocation that could refuse ``claims``."""
    keys = (f"tenant.{claims.tenant}", f"user.{claims.tenant}.{claims.user}")
    if claims.jti is not None:
        return (*keys, f"jti.{claims.tenant}.{_jti_key(claims.jti)}")
    return keys


class RevocationList:
    """The revocations this gateway holds, and the connections they close."""

    def __init__(self, registry: Registry, *, max_lifetime: float) -> None:
        self.registry = registry
        self.max_lifetime = max_lifetime
        self.entries: dict[str, Revocation] = {}
        self.revision = 0  # the bucket's last stream sequence applied here
        self.closed: OrderedDict[int, int] = OrderedDict()  # revision -> connections it closed
        self._moved = asyncio.Event()  # set (and replaced) whenever `revision` moves

    def refusing(self, claims: Claims, now: float | None = None) -> Revocation | None:
        """The revocation that refuses ``claims``, if any (expired entries are dropped)."""
        entries = self.entries
        if not entries:
            return None
        now = time.time() if now is None else now
        for key in keys_of(claims):
            rev = entries.get(key)
            if rev is None:
                continue
            if not rev.active(now):
                del entries[key]
            elif rev.refuses(claims, self.max_lifetime):
                return rev
        return None

    def check(self, claims: Claims) -> None:
        """Raise :class:`TokenRevoked` when a revocation refuses ``claims``."""
        rev = self.refusing(claims)
        if rev is not None:
            raise TokenRevoked(f"the {rev.scope} was revoked", field="token")

    def apply(self, key: str, rev: Revocation | None, revision: int) -> int:
        """Record a change of the bucket (``None``: lifted or expired); close the connections
        it refuses; how many were closed."""
        closed = 0
        now = time.time()
        for ended in [k for k, r in self.entries.items() if not r.active(now)]:
            del self.entries[ended]  # the bucket's TTL removed it; no message says so
        if rev is None or not rev.active(now):
            self.entries.pop(key, None)
        else:
            self.entries[key] = rev
            closed = self._close(rev)
        self.closed[revision] = closed
        while len(self.closed) > _KEPT_COUNTS:
            self.closed.popitem(last=False)
        if revision > self.revision:
            self.revision = revision
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()
        return closed

    def _close(self, rev: Revocation) -> int:
        closed = 0
        for member in self.registry.members():
            claims = member.claims
            if claims is None or member.conn.state is State.CLOSED:
                continue
            if rev.refuses(claims, self.max_lifetime):
                member.refuse(TokenRevoked(f"the {rev.scope} was revoked", field="token"))
                closed += 1
        if closed:
            log.info(
                "revoked connections closed",
                extra={"scope": rev.scope, "tenant": rev.tenant, "closed": closed},
            )
        return closed

    async def reached(self, revision: int, timeout: float) -> bool:
        """Until this gateway has applied ``revision`` (True), or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while self.revision < revision:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return True

    def active(self, tenant: str | None = None) -> list[Revocation]:
        """The revocations in force (of ``tenant``), oldest first."""
        now = time.time()
        return sorted(
            (r for r in self.entries.values() if r.active(now) and tenant in (None, r.tenant)),
            key=lambda r: r.at,
        )


class RevocationBucket:
    """The KV bucket: created when missing, written by the admin API, followed by every gateway."""

    def __init__(self, revocations: RevocationList, *, stream: str) -> None:
        self.revocations = revocations
        self.bucket = bucket_name(stream)
        self.stream = f"KV_{self.bucket}"
        self.prefix = f"$KV.{self.bucket}."
        self._sub: Any = None
        self._loaded = asyncio.Event()
        self._following = asyncio.Lock()  # one (re)load at a time: never two consumers

    async def ensure(self, js: JetStreamContext, *, like: api.StreamConfig) -> None:
        """Create the bucket when it does not exist, with the replicas and storage of the
        notification stream (``like``)."""
        try:
            await js.stream_info(self.stream)
            return
        except NotFoundError:
            pass
        lifetime = self.revocations.max_lifetime
        await js.create_key_value(
            api.KeyValueConfig(
                bucket=self.bucket,
                description="Tidings revocations (tidings revoke); entries expire on their own",
                history=1,
                ttl=lifetime or None,  # a backstop: no entry outlives the longest token
                replicas=like.num_replicas or 1,
                storage=like.storage or api.StorageType.FILE,
            )
        )
        log.info("revocation bucket created", extra={"bucket": self.bucket})

    async def follow(self, js: JetStreamContext, timeout: float) -> None:
        """(Re)load the whole list, then follow its changes; returns once loaded."""
        async with self._following:
            await self._follow(js, timeout)

    async def _follow(self, js: JetStreamContext, timeout: float) -> None:
        await self.stop()
        loaded = self._loaded = asyncio.Event()
        sub = self._sub = await follow_keys(
            js, stream=self.stream, subject=f"{self.prefix}>", cb=self._on_msg
        )
        await keys_loaded(sub, loaded, timeout)
        log.info(
            "revocations loaded",
            extra={"entries": len(self.revocations.entries), "revision": self.revocations.revision},
        )

    async def refollow(self, link: NatsLink, timeout: float) -> None:
        """:meth:`follow` again after a reconnect, retried while this connection lasts."""
        client = link.client
        while link.connected and link.client is client:
            try:
                await self.follow(link.js, timeout)
                return
            except Exception as exc:  # a JetStream leader election: try again shortly
                log.warning("revocations not reloaded yet; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(min(1.0, timeout))

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        meta = msg.metadata
        key = msg.subject[len(self.prefix) :]
        headers = msg.headers or {}
        rev: Revocation | None = None
        deleted = headers.get("KV-Operation") in _DEL_OPS or "Nats-Marker-Reason" in headers
        if not deleted:
            try:
                rev = Revocation.from_dict(orjson.loads(msg.data))
            except (orjson.JSONDecodeError, TidingsError) as exc:
                # Written by something else than a gateway: never trusted, never fatal.
                log.warning("revocation entry ignored", extra={"key": key, "why": str(exc)})
            else:
                if rev.key != key:
                    log.warning("revocation entry ignored", extra={"key": key, "why": "key"})
                    rev = None
        self.revocations.apply(key, rev, meta.sequence.stream)
        if meta.num_pending == 0:
            self._loaded.set()

    async def put(self, js: JetStreamContext, rev: Revocation) -> int:
        """Store ``rev`` with its own TTL; the revision every gateway will apply it at."""
        ttl = None if rev.until is None else max(1, math.ceil(rev.until - time.time()))
        ack = await js.publish(f"{self.prefix}{rev.key}", orjson.dumps(rev.to_dict()), msg_ttl=ttl)
        return int(ack.seq)

    async def lift(self, js: JetStreamContext, key: str) -> int:
        """End a revocation before its time (a delete marker, as ``KeyValue.delete`` writes)."""
        ack = await js.publish(f"{self.prefix}{key}", b"", headers={"KV-Operation": "DEL"})
        return int(ack.seq)
