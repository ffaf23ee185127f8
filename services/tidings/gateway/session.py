"""One WebSocket connection's conversation: hello, resume, then subscribe/refresh/ping.

A session is the picows listener of its connection: callbacks, no task of its own (a gateway
holds tens of thousands). The steps that must wait — checking a token that may need a JWKS
fetch, the resume — run in a short task while later frames queue behind it, so frames are
still handled in order.

Every refusal is an ``error`` frame with a code from the protocol's table, followed by the close
code that table gives. The security checks live in ``tidings.auth`` (token, rooms); this module
only applies them at the right moments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from prometheus_client import Counter

from tidings import protocol as p
from tidings.auth import Claims, Verifier
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import (
    AuthError,
    HelloRequired,
    Malformed,
    QuotaExceeded,
    RateLimited,
    TidingsError,
    TooManyRooms,
    UnexpectedFrame,
    error_code_of,
)
from tidings.gateway.connection import GONE, Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.frames import HEADROOM
from tidings.gateway.registry import Registry
from tidings.gateway.resume import Resume
from tidings.gateway.upkeep import Expiry
from tidings.lifecycle import spawn
from tidings.settings import GatewaySettings
from tidings.subjects import Audience

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # how long a closing connection may take to answer our close frame
MAX_QUEUED = 64  # frames held while a hello or refresh is checked; beyond it, rate_limited


@dataclass(slots=True)
class SessionDeps:
    """What a session uses of its gateway, and nothing more (one object shared by all)."""

    settings: GatewaySettings
    registry: Registry
    hub: Hub
    verifier: Verifier
    resume: Resume
    expiry: Expiry
    auth_failures: Counter  # refused tokens by reason
    on_slow: Callable[[Connection], None]  # close a slow consumer (1013)


def shed(conn: Connection, hub: Hub, closes: Counter) -> None:
    """Close a connection that cannot keep up (1013); it resumes from its last seq."""
    if conn.state is State.CLOSED:
        return
    closes.inc()
    conn.move(State.CLOSED)
    hub.remove(conn)
    conn.sink.close(int(CloseCode.TRY_AGAIN_LATER), ErrorCode.SLOW_CONSUMER.value)


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


class Session(WSListener):
    """Runs one connection from its upgrade to its close; also the fan-out's sink for it."""

    __slots__ = (
        "_busy",
        "_partial",
        "_queue",
        "_timer",
        "_tokens",
        "_tokens_at",
        "claims",
        "conn",
        "deps",
        "seen",
        "transport",
    )

    def __init__(self, deps: SessionDeps) -> None:
        super().__init__()
        self.deps = deps
        settings = deps.settings
        self.conn = Connection(self)
        self.transport: WSTransport | None = None
        self.claims: Claims | None = None
        self._tokens = float(settings.rate_burst)
        self._tokens_at = self.seen = time.monotonic()
        self._busy = False  # a hello or refresh is being checked; frames wait in _queue
        self._queue: list[tuple[WSMsgType, bytes]] | None = None
        self._partial: tuple[WSMsgType, bytearray] | None = None  # a fragmented message
        self._timer: asyncio.TimerHandle | None = None  # hello timeout, then close timeout

    # -- the fan-out's sink --------------------------------------------------------------------

    def write_frame(self, frame: bytearray) -> None:
        """One text frame whose payload starts at ``HEADROOM`` (picows writes the header in
        place; the same buffer goes to every member). Dropped once our close frame is out."""
        transport = self.transport
        if transport is not None:
            transport.send_reuse_external_bytearray(WSMsgType.TEXT, frame, HEADROOM)

    def pause_writing(self) -> None:
        """asyncio: more than ``max_outbound_bytes`` wait unsent for this client, a slow
        consumer. It is closed (1013) right after the write that crossed the mark, not in the
        middle of a fan-out; it resumes from its last seq elsewhere or later."""
        if self.conn.state is not State.CLOSED:
            asyncio.get_running_loop().call_soon(self.deps.on_slow, self.conn)

    def resume_writing(self) -> None:
        pass  # a slow consumer is closed at the high-water mark; it never resumes

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the socket goes when the client answers, or after
        ``CLOSE_TIMEOUT`` when it does not."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        transport.send_close(WSCloseCode(code), reason.encode())
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.disconnect)

    def ping(self) -> None:
        """A WebSocket Ping (keepalive); the pong, like any frame, updates ``seen``."""
        if self.transport is not None:
            self.transport.send_ping()

    def cut(self) -> None:
        """Drop the socket without a closing handshake (the end of a stop)."""
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    # -- picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(
            high=self.deps.settings.max_outbound_bytes
        )
        # The handshake's headers are not needed any more; picows would keep them per connection.
        transport.request.headers.clear()
        transport.response.headers.clear()
        self.deps.registry.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.deps.settings.hello_timeout, self._hello_timeout)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._cancel_timer()
        conn = self.conn
        conn.move(State.CLOSED)
        self.deps.hub.remove(conn)
        # No reference cycle outlives the socket: refcounting frees the connection at once,
        # the cyclic collector never has to find it (see gateway/collector.py).
        conn.sink = GONE
        self.transport = None
        self.deps.registry.remove(conn)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.seen = time.monotonic()
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if self._partial is not None:
                self._protocol_error("a new message began before the fragmented one ended")
            elif frame.fin:
                self._message(kind, frame.get_payload_as_bytes())
            else:
                self._partial = (kind, bytearray(frame.get_payload_as_memoryview()))
        elif kind == WSMsgType.CONTINUATION:
            self._continuation(frame)
        elif kind == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()  # echoed (RFC 6455 §5.5.1); none: 1000
                none = code.value in (WSCloseCode.NO_INFO.value, 1005)
                transport.send_close(WSCloseCode.OK if none else code)
            transport.disconnect()
        # PING is answered by picows; a PONG only needs to count as a sign of life (`seen`).

    def _continuation(self, frame: WSFrame) -> None:
        if self._partial is None:
            self._protocol_error("a continuation frame without a message to continue")
            return
        kind, buf = self._partial
        buf += frame.get_payload_as_memoryview()
        limit = 4 * self.deps.settings.max_frame_bytes
        if len(buf) > limit:
            self._partial = None
            self.close(int(CloseCode.MESSAGE_TOO_BIG), f"message over {limit} bytes")
        elif frame.fin:
            self._partial = None
            self._message(kind, bytes(buf))

    def _protocol_error(self, reason: str) -> None:
        self._partial = None
        self.close(WSCloseCode.PROTOCOL_ERROR.value, reason)

    # -- frames, in order ----------------------------------------------------------------------

    def _message(self, kind: WSMsgType, raw: bytes) -> None:
        if self.conn.state is State.CLOSED:
            return
        if self._busy:
            queue = self._queue if self._queue is not None else []
            self._queue = queue
            if len(queue) >= MAX_QUEUED:
                self.refuse(ErrorCode.RATE_LIMITED)
                return
            queue.append((kind, raw))
            return
        try:
            self._handle(kind, raw)
        except TidingsError as exc:
            self.refuse(exc)
        except Exception:
            log.exception("session failed", extra={"connection": self.conn.id})
            self.refuse(ErrorCode.INTERNAL)

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

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a step that must wait; frames that arrive meanwhile are handled after it."""
        self._busy = True
        spawn(self._step(coro))

    async def _step(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except TidingsError as exc:
            self.refuse(exc)
        except Exception:
            log.exception("session failed", extra={"connection": self.conn.id})
            self.refuse(ErrorCode.INTERNAL)
        self._busy = False
        while self._queue and not self._busy:
            kind, raw = self._queue.pop(0)
            self._message(kind, raw)
        if not self._queue:
            self._queue = None

    def refuse(self, error: ErrorCode | BaseException, *, code: CloseCode | None = None) -> None:
        """Send the error frame, then close with the code the error table gives."""
        if isinstance(error, ErrorCode):
            close = code or error.close_code
        else:
            close = code or error_code_of(error).close_code
        frame = p.error_frame(error, close=True)
        if isinstance(error, AuthError):
            self.deps.auth_failures.labels(frame.code).inc()
        body = frame.to_dict()
        body["close"] = int(close)
        if self.conn.state is not State.CLOSED:
            self.conn.write_control(orjson.dumps(body))
        self.conn.move(State.CLOSED)
        self.deps.hub.remove(self.conn)
        self.close(int(close), frame.code)

    def _hello_timeout(self) -> None:
        self._timer = None
        if self.conn.state is State.HANDSHAKING and not self._busy:
            self.refuse(ErrorCode.HELLO_TIMEOUT)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- hello ---------------------------------------------------------------------------------

    async def _hello(self, kind: WSMsgType, raw: bytes) -> None:
        deps, settings = self.deps, self.deps.settings
        registry, hub = deps.registry, deps.hub
        hello = self._parse(kind, raw)
        if not isinstance(hello, p.Hello):
            raise HelloRequired(f"the first frame must be hello, not {hello.type}")
        claims = await deps.verifier.verify(hello.token)
        named = [claims.authorize(Audience.from_room(r)).room for r in hello.rooms]
        quota = settings.tenant_quota
        if quota and hub.tenants.get(claims.tenant, 0) >= quota:
            raise QuotaExceeded(f"tenant {claims.tenant} has {quota} connections here")
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
        conn.move(State.SYNCING)
        hub.add(conn, [r for r in claims.default_rooms if r != "broadcast"] + named)
        deps.expiry.watch(conn)
        recovered = await deps.resume.resync(
            conn, since=hello.since, epoch=hello.epoch, claims=claims, first=True
        )
        log.debug(
            "connected",
            extra={"connection": conn.id, "tenant": conn.tenant, "recovered": recovered},
        )

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
            new = claims.ensure_same_identity(await self.deps.verifier.verify(frame.token))
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
