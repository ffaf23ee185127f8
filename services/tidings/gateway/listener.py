"""A connection's socket side: picows callbacks, fragments, writes, closes, ordered steps.

:class:`Listener` is what picows calls for one connection (callbacks, no task of its own: a
gateway holds tens of thousands) and what the fan-out writes to. It turns frames into whole
messages, in order: a step that must wait (a token check, a resume) runs in a short task while
later messages queue behind it. What a message *means* is the subclass's ``_handle``
(:class:`tidings.gateway.session.Session`); keeping it a method, not a callback object, costs
the hot path nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from prometheus_client import Counter

from tidings import protocol as p
from tidings.auth import Claims, Verifier
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import AuthError, TidingsError, error_code_of
from tidings.gateway.connect_rate import ConnectRate
from tidings.gateway.connection import GONE, Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.frames import HEADROOM
from tidings.gateway.inbox import Inbox
from tidings.gateway.registry import Registry
from tidings.gateway.resume import Resume
from tidings.gateway.upkeep import Expiry

if TYPE_CHECKING:
    from tidings.gateway.audit import Audit
    from tidings.gateway.revoke import RevocationList
from tidings.lifecycle import spawn
from tidings.settings import GatewaySettings

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # how long a closing connection may take to answer our close frame
_TEXT = WSMsgType.TEXT  # looked up once: the send path runs per member per flush
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
    inbox: Inbox | None = None  # TIDINGS_GATEWAY_INBOX: counts, inbox frames, muted domains
    tenant_rate: ConnectRate | None = None  # new connections per tenant
    rate_refused: Counter | None = None  # connects refused, by scope
    revocations: RevocationList | None = None  # checked at hello and refresh
    audit: Audit | None = None  # refused tokens logged (rate-limited)


def shed(conn: Connection, hub: Hub, closes: Counter) -> None:
    """Close a connection that cannot keep up (1013); it resumes from its last seq."""
    if conn.state is State.CLOSED:
        return
    closes.inc()
    conn.move(State.CLOSED)
    hub.remove(conn)
    conn.sink.close(int(CloseCode.TRY_AGAIN_LATER), ErrorCode.SLOW_CONSUMER.value)


class Listener(WSListener):
    """One connection's socket from its upgrade to its close; also the fan-out's sink for it."""

    __slots__ = (
        "_busy",
        "_partial",
        "_queue",
        "_timer",
        "claims",
        "conn",
        "deps",
        "seen",
        "transport",
    )

    def __init__(self, deps: SessionDeps) -> None:
        super().__init__()
        self.deps = deps
        self.conn = Connection(self)
        self.transport: WSTransport | None = None
        self.claims: Claims | None = None  # who is on the socket, once its hello is accepted
        self.seen = time.monotonic()
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
            transport.send_reuse_external_bytearray(_TEXT, frame, HEADROOM)

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
        self.deps.expiry.forget(conn)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.seen = time.monotonic()
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            # No extension is ever negotiated here: RFC 6455 §5.2 says fail the connection.
            self._protocol_error("RSV bits set without a negotiated extension")
            return
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
        """Close 1002; nothing the client sends after it is handled."""
        self._partial = None
        self.conn.move(State.CLOSED)
        self.deps.hub.remove(self.conn)
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
        """What one whole message means (the session's conversation); raise to refuse."""
        raise NotImplementedError

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
