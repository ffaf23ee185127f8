"""One WebSocket connection's conversation: hello, resume, then subscribe/refresh/ping.

Every refusal is an ``error`` frame with a code from the protocol's table, followed by the close
code that table gives. The security checks live in ``tidings.auth`` (token, rooms); this module
only applies them at the right moments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import OPEN

from tidings import protocol as p
from tidings.auth import AuthError, Claims
from tidings.errors import TidingsError
from tidings.gateway.connection import Connection, State
from tidings.subjects import Audience

if TYPE_CHECKING:
    from tidings.gateway.service import Gateway

log = logging.getLogger(__name__)


_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it is done."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


class WebSocketSink:
    """The fan-out's view of a websockets connection: pre-built frames straight to the socket."""

    __slots__ = ("ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    def write_frame(self, frame: bytes) -> None:
        # Once the closing handshake began the transport may be half-closed (write() raises);
        # the client resumes elsewhere, so whatever is left for it is dropped here.
        if self.ws.protocol.state is OPEN:
            self.ws.transport.write(frame)

    def buffered(self) -> int:
        size: int = self.ws.transport.get_write_buffer_size()
        return size

    def close(self, code: int, reason: str) -> None:
        spawn(self.ws.close(code, reason))


def _request_id(raw: str | bytes) -> int | None:
    """The ``id`` of a frame that failed to parse, so the client can still match the error."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = body.get("id") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= p.MAX_SAFE_INTEGER else None


class RateLimited(p.WireError):
    error = p.ErrorCode.RATE_LIMITED


class QuotaExceeded(p.WireError):
    error = p.ErrorCode.QUOTA_EXCEEDED


class HelloRequired(p.WireError):
    error = p.ErrorCode.HELLO_REQUIRED


class UnexpectedFrame(p.WireError):
    error = p.ErrorCode.UNEXPECTED_FRAME


class Session:
    """Runs one connection from its first frame to its close."""

    __slots__ = ("_tokens", "_tokens_at", "claims", "conn", "gw", "ws")

    def __init__(self, gateway: Gateway, ws: ServerConnection) -> None:
        self.gw = gateway
        self.ws = ws
        settings = gateway.settings.gateway
        self.conn = Connection(WebSocketSink(ws), max_buffer=settings.max_outbound_bytes)
        self.claims: Claims | None = None
        self._tokens = float(settings.rate_burst)
        self._tokens_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        gw = self.gw
        gw.sessions[self.conn] = self
        try:
            if not await self._handshake():
                return
            async for raw in self.ws:
                await self._on_frame(raw)
        except ConnectionClosed:
            pass
        except TidingsError as exc:
            await self.refuse(exc)
        except Exception:
            log.exception("session failed", extra={"connection": self.conn.id})
            await self.refuse(p.ErrorCode.INTERNAL)
        finally:
            self.conn.move(State.CLOSED)
            gw.hub.remove(self.conn)
            gw.sessions.pop(self.conn, None)
            if gw.draining and not gw.sessions:
                gw.drained.set()

    async def refuse(
        self, error: p.ErrorCode | BaseException, *, code: p.CloseCode | None = None
    ) -> None:
        """Send the error frame, then close with the code the error table gives."""
        if isinstance(error, p.ErrorCode):
            close = code or error.close_code
        else:
            close = code or p.error_code_of(error).close_code
        frame = p.error_frame(error, close=True)
        if isinstance(error, AuthError):
            self.gw.metrics.auth_failures.labels(frame.code).inc()
        body = frame.to_dict()
        body["close"] = int(close)
        if self.conn.state is not State.CLOSED:
            self.conn.write_control(orjson.dumps(body))
        self.conn.move(State.CLOSED)
        self.gw.hub.remove(self.conn)
        await self.ws.close(int(close), frame.code)

    # -- hello ---------------------------------------------------------------------------

    async def _handshake(self) -> bool:
        gw, settings = self.gw, self.gw.settings.gateway
        try:
            raw = await asyncio.wait_for(self.ws.recv(), settings.hello_timeout)
        except TimeoutError:
            await self.refuse(p.ErrorCode.HELLO_TIMEOUT)
            return False
        try:
            if isinstance(raw, bytes):
                raise p.MalformedFrame("binary frames are not part of the protocol; send text")
            hello = p.parse_client_frame(
                raw, max_bytes=settings.max_frame_bytes, max_rooms=settings.max_rooms
            )
            if not isinstance(hello, p.Hello):
                raise HelloRequired(f"the first frame must be hello, not {hello.type}")
            claims = await gw.verifier.verify(hello.token)
            named = [claims.authorize(Audience.from_room(r)).room for r in hello.rooms]
            quota = settings.tenant_quota
            if quota and gw.hub.tenants.get(claims.tenant, 0) >= quota:
                raise QuotaExceeded(f"tenant {claims.tenant} has {quota} connections here")
        except TidingsError as exc:
            await self.refuse(exc)
            return False
        if gw.draining:
            await self.refuse(p.ErrorCode.RESTARTING)
            return False
        if not gw.nats_connected:
            # What was published meanwhile is unknown until the heal: a resume now could only
            # be answered with a needless reset. Retry later (1013), here or elsewhere.
            await self.refuse(p.ErrorCode.UNAVAILABLE)
            return False
        self.claims = claims
        conn = self.conn
        conn.tenant, conn.user = claims.tenant, claims.user
        conn.expires_at = claims.expires_at
        conn.move(State.SYNCING)
        gw.hub.add(conn, [r for r in claims.default_rooms if r != "broadcast"] + named)
        gw.expiry.watch(conn)
        try:
            recovered = await gw.resync(
                conn, since=hello.since, epoch=hello.epoch, claims=claims, first=True
            )
        except TidingsError as exc:
            await self.refuse(exc)
            return False
        log.debug(
            "connected",
            extra={"connection": conn.id, "tenant": conn.tenant, "recovered": recovered},
        )
        return conn.state is State.LIVE

    # -- after hello -----------------------------------------------------------------------

    def _rate_ok(self) -> bool:
        settings = self.gw.settings.gateway
        now = time.monotonic()
        self._tokens = min(
            float(settings.rate_burst), self._tokens + (now - self._tokens_at) * settings.rate_limit
        )
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _on_frame(self, raw: str | bytes) -> None:
        settings = self.gw.settings.gateway
        if not self._rate_ok():
            raise RateLimited(f"more than {settings.rate_limit:g} frames per second")
        frame: p.ClientFrame | None = None
        try:
            if isinstance(raw, bytes):
                raise p.MalformedFrame("binary frames are not part of the protocol; send text")
            frame = p.parse_client_frame(
                raw, max_bytes=settings.max_frame_bytes, max_rooms=settings.max_rooms
            )
            await self._dispatch(frame)
        except TidingsError as exc:
            code = p.error_code_of(exc)
            if code.always_fatal:
                raise
            frame_id = getattr(frame, "id", None) if frame is not None else _request_id(raw)
            self.conn.write_control(p.encode(p.error_frame(exc, id=frame_id)))

    async def _dispatch(self, frame: p.ClientFrame) -> None:
        conn, hub, claims = self.conn, self.gw.hub, self.claims
        assert claims is not None
        if isinstance(frame, p.Subscribe):
            room = claims.authorize(Audience.from_room(frame.room)).room
            if room not in conn.rooms and len(self._named()) >= self.gw.settings.gateway.max_rooms:
                raise p.TooManyRooms(f"at most {self.gw.settings.gateway.max_rooms} named rooms")
            hub.join(conn, room)
            conn.write_control(p.encode(p.Subscribed(room=room, id=frame.id)))
        elif isinstance(frame, p.Unsubscribe):
            room = p.check_named_room(frame.room)
            hub.leave(conn, room)
            conn.write_control(p.encode(p.Unsubscribed(room=room, id=frame.id)))
        elif isinstance(frame, p.Refresh):
            new = claims.ensure_same_identity(await self.gw.verifier.verify(frame.token))
            self._apply_roles(claims, new)
            self.claims = new
            conn.expires_at = new.expires_at
            self.gw.expiry.watch(conn)
            conn.write_control(
                p.encode(
                    p.Refreshed(
                        expires_at=new.expires_at, rooms=tuple(sorted(conn.rooms)), id=frame.id
                    )
                )
            )
        elif isinstance(frame, p.Ping):
            conn.write_control(p.encode(p.Pong(id=frame.id)))
        else:
            raise UnexpectedFrame(f"{frame.type} is only valid as the first frame")

    def _named(self) -> list[str]:
        return [r for r in self.conn.rooms if r.startswith("room:")]

    def _apply_roles(self, old: Claims, new: Claims) -> None:
        """A refreshed token may carry other roles or room patterns: rooms follow it."""
        conn, hub = self.conn, self.gw.hub
        for role in old.roles - new.roles:
            hub.leave(conn, f"role:{role}")
            conn.write_control(
                p.encode(p.Unsubscribed(room=f"role:{role}", reason=p.UnsubscribeReason.FORBIDDEN))
            )
        for role in new.roles - old.roles:
            hub.join(conn, f"role:{role}")
        for room in self._named():
            if not new.may_join(room.removeprefix("room:")):
                hub.leave(conn, room)
                conn.write_control(
                    p.encode(p.Unsubscribed(room=room, reason=p.UnsubscribeReason.FORBIDDEN))
                )
