"""One connection's conversation: hello, resume, then subscribe/refresh/ping.

The socket side (picows callbacks, fragments, the ordered queue of steps, closing) is
:class:`tidings.gateway.listener.Listener`; a session is that listener plus what each message
means. Every refusal is an ``error`` frame with a code from the protocol's table, followed by the
close code that table gives. The security checks live in ``tidings.auth`` (token, rooms); this
module only applies them at the right moments.
"""

from __future__ import annotations

import logging
import time

import orjson
from picows import WSMsgType, WSTransport

from tidings import protocol as p
from tidings.auth import Claims
from tidings.codes import ErrorCode
from tidings.errors import (
    AuthError,
    HelloRequired,
    Malformed,
    QuotaExceeded,
    RateLimited,
    TidingsError,
    TooManyRooms,
    UnexpectedFrame,
    UserConnectionsFull,
    error_code_of,
)
from tidings.gateway.connection import State
from tidings.gateway.listener import Listener, SessionDeps
from tidings.gateway.user_limit import UserLimit
from tidings.subjects import Audience

log = logging.getLogger(__name__)


def _request_id(raw: bytes) -> int | None:
    """The ``id`` of a frame that failed to parse, so the client can still match the error."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= p.MAX_SAFE_INTEGER else None


class Session(Listener):
    """A listener that speaks the protocol: the hello, then the client's requests."""

    __slots__ = ("_tokens", "_tokens_at", "_users")

    def __init__(self, deps: SessionDeps, users: UserLimit | None = None) -> None:
        super().__init__(deps)
        self._users = users  # TIDINGS_GATEWAY_USER_CONNECTIONS: counted over every gateway
        self._tokens = float(deps.settings.rate_burst)
        self._tokens_at = self.seen

    # -- one message ---------------------------------------------------------------------------

    def _handle(self, kind: WSMsgType, raw: bytes) -> None:
        settings = self.deps.settings
        if self.conn.state is State.HANDSHAKING:
            self._cancel_timer()
            self._run(self._hello(kind, raw))
            return
        if not self._rate_ok():
            raise RateLimited(f"more than {settings.rate_limit:g} frames per second")
        frame: p.ClientFrame | None = None
        try:
            frame = self._parse(kind, raw)
            if isinstance(frame, p.Refresh):
                self._run(self._refresh(frame))
            else:
                self._dispatch(frame)
        except TidingsError as exc:
            self._answer_error(exc, frame, raw)

    def _answer_error(self, exc: TidingsError, frame: p.ClientFrame | None, raw: bytes) -> None:
        """A non-fatal error is answered with an error frame; the connection stays."""
        if error_code_of(exc).always_fatal:
            raise exc
        frame_id = getattr(frame, "id", None) if frame is not None else _request_id(raw)
        self.conn.write_control(p.encode(p.error_frame(exc, id=frame_id)))

    def _parse(self, kind: WSMsgType, raw: bytes) -> p.ClientFrame:
        if kind != WSMsgType.TEXT:
            raise Malformed("binary frames are not part of the protocol; send text")
        settings = self.deps.settings
        return p.parse_client_frame(
            raw, max_bytes=settings.max_frame_bytes, max_rooms=settings.max_rooms
        )

    # -- hello ---------------------------------------------------------------------------------

    async def _hello(self, kind: WSMsgType, raw: bytes) -> None:
        deps, settings = self.deps, self.deps.settings
        registry, hub = deps.registry, deps.hub
        hello = self._parse(kind, raw)
        if not isinstance(hello, p.Hello):
            raise HelloRequired(f"the first frame must be hello, not {hello.type}")
        claims = await self._verified(hello.token, "hello")
        named = [claims.authorize(Audience.from_room(r)).room for r in hello.rooms]
        quota = settings.tenant_quota
        if quota and hub.tenants.get(claims.tenant, 0) >= quota:
            raise QuotaExceeded(f"tenant {claims.tenant} has {quota} connections here")
        if deps.tenant_rate is not None and (wait := deps.tenant_rate.take(claims.tenant)):
            if deps.rate_refused is not None:
                deps.rate_refused.labels("tenant").inc()
            raise RateLimited(f"too many new connections of this tenant; retry in {wait:.1f}s")
        conn = self.conn
        if conn.state is State.CLOSED:
            return  # gone while the token was checked
        if registry.draining:
            self.refuse(ErrorCode.RESTARTING)
            return
        if not registry.nats_connected:
            # What was published meanwhile is unknown until the heal: a resume now could only
            # be answered with a needless reset. Retry later (1013), here or elsewhere.
            self.refuse(ErrorCode.UNAVAILABLE)
            return
        self.claims = claims
        conn.tenant, conn.user = claims.tenant, claims.user
        conn.expires_at = claims.expires_at
        counts = None
        if deps.inbox is not None:  # bounded: an inbox that does not answer costs its counts
            counts = await deps.inbox.join(conn, claims)
            if conn.state is not State.HANDSHAKING:
                return  # closed or sent away meanwhile
        users = self._users
        if users is not None:
            # Here, with no await before the hub counts it: two hellos of one user on this
            # gateway cannot both take the last slot.
            try:
                users.admit(claims.tenant, claims.user)
            except UserConnectionsFull:
                if deps.rate_refused is not None:
                    deps.rate_refused.labels("user").inc()
                raise
            users.changed(claims.tenant, claims.user)
        conn.move(State.SYNCING)
        hub.add(conn, [r for r in claims.default_rooms if r != "broadcast"] + named)
        deps.expiry.watch(conn)
        recovered = await deps.resume.resync(
            conn, since=hello.since, epoch=hello.epoch, claims=claims, first=True, inbox=counts
        )
        if deps.inbox is not None:
            deps.inbox.welcomed(conn)
        log.debug(
            "connected",
            extra={"connection": conn.id, "tenant": conn.tenant, "recovered": recovered},
        )

    async def _verified(self, token: str | None, where: str) -> Claims:
        """The token's claims unless refused or revoked; a refusal goes to the audit log. No
        await between the revocation check and the caller's use of the claims: a revocation
        that arrives later finds the connection by its claims (gateway/revoke.py)."""
        deps = self.deps
        try:
            claims = await deps.verifier.verify(token)
        except AuthError as exc:
            if deps.audit is not None:
                deps.audit.auth_failed(exc.code.value, where=where, token=token)
            raise
        if deps.revocations is not None and deps.revocations.refusing(claims) is not None:
            if deps.audit is not None:
                deps.audit.auth_failed("token_revoked", where=where, tenant=claims.tenant)
            deps.revocations.check(claims)  # raises TokenRevoked
        return claims

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        super().on_ws_disconnected(transport)
        if self._users is not None and self.claims is not None:
            self._users.changed(self.conn.tenant, self.conn.user)
        if self.deps.inbox is not None:
            self.deps.inbox.forget(self.conn)

    # -- after hello ---------------------------------------------------------------------------

    def _rate_ok(self) -> bool:
        settings = self.deps.settings
        now = time.monotonic()
        self._tokens = min(
            float(settings.rate_burst), self._tokens + (now - self._tokens_at) * settings.rate_limit
        )
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _refresh(self, frame: p.Refresh) -> None:
        claims = self.claims
        assert claims is not None
        try:
            new = claims.ensure_same_identity(await self._verified(frame.token, "refresh"))
        except TidingsError as exc:
            self._answer_error(exc, frame, b"")
            return
        conn = self.conn
        if conn.state is State.CLOSED:
            return
        self._apply_roles(claims, new)
        self.claims = new
        conn.expires_at = new.expires_at
        self.deps.expiry.watch(conn)
        conn.write_control(
            p.encode(
                p.Refreshed(expires_at=new.expires_at, rooms=tuple(sorted(conn.rooms)), id=frame.id)
            )
        )

    def _dispatch(self, frame: p.ClientFrame) -> None:
        conn, hub, claims = self.conn, self.deps.hub, self.claims
        assert claims is not None
        if isinstance(frame, p.Subscribe):
            room = claims.authorize(Audience.from_room(frame.room)).room
            max_rooms = self.deps.settings.max_rooms
            if room not in conn.rooms and len(self._named()) >= max_rooms:
                raise TooManyRooms(f"at most {max_rooms} named rooms")
            hub.join(conn, room)
            conn.write_control(p.encode(p.Subscribed(room=room, id=frame.id)))
        elif isinstance(frame, p.Unsubscribe):
            room = p.check_named_room(frame.room)
            hub.leave(conn, room)
            conn.write_control(p.encode(p.Unsubscribed(room=room, id=frame.id)))
        elif isinstance(frame, p.Ping):
            conn.write_control(p.encode(p.Pong(id=frame.id)))
        else:
            raise UnexpectedFrame(f"{frame.type} is only valid as the first frame")

    def _named(self) -> list[str]:
        return [r for r in self.conn.rooms if r.startswith("room:")]

    def _apply_roles(self, old: Claims, new: Claims) -> None:
        """A refreshed token may carry other roles or room patterns: rooms follow it."""
        conn, hub = self.conn, self.deps.hub
        for role in old.roles - new.roles:
            hub.leave(conn, f"role:{role}")
            conn.write_control(
                p.encode(p.Unsubscribed(room=f"role:{role}", reason=p.UnsubscribeReason.FORBIDDEN))
            )
        for role in new.roles - old.roles:
            hub.join(conn, f"role:{role}")
        for room in self._named():
            if not new.allows(Audience.from_room(room)):
                hub.leave(conn, room)
                conn.write_control(
                    p.encode(p.Unsubscribed(room=room, reason=p.UnsubscribeReason.FORBIDDEN))
                )
