"""The Python WebSocket client: notifications as an async iterator that survives reconnects.

A :class:`Subscriber` keeps one connection to a gateway (of several it may be given), sends
``hello`` first (the token never travels in the URL), and yields each notification once, in
stream order. It remembers the last ``seq`` and the stream ``epoch``, so after any drop
(network, gateway crash or drain, slow-consumer close) it reconnects with exponential backoff
and full jitter and resumes where it stopped; ``Recovered`` and ``Reset`` events tell the
application whether its view is complete. Closes that retrying cannot fix end the iterator with
:class:`Refused`, carrying the gateway's error code. Wire frames come from ``tidings.protocol``::

    async with await connect("ws://127.0.0.1:8080/ws", token=jwt) as sub:
        async for n in sub:
            print(n.seq, n.event, n.title)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from tidings import protocol as p
from tidings.codes import CloseCode, ErrorCode, Reconnect
from tidings.errors import InvalidField, Malformed, TidingsError

log = logging.getLogger(__name__)

GetToken = Callable[[], Awaitable[str]]

ABNORMAL_CLOSURE = 1006  # no close frame arrived: the network or the gateway process died
RATE_LIMITED_DELAY = 5.0  # docs/protocol.md §12: at least this long after 4029
_FATAL_HTTP = frozenset(range(400, 500)) - {408, 429}  # a handshake refusal retrying won't fix


# --- errors ------------------------------------------------------------------------------------


class ClientError(TidingsError):
    """Base of the errors this client raises."""

    code = ErrorCode.INTERNAL


class Refused(ClientError):
    """The gateway refused the connection in a way that retrying unchanged cannot fix.

    ``error`` is the gateway's error code (``token_malformed``, ``forbidden``…, or for an HTTP
    refusal of the handshake its code such as ``origin_forbidden``), ``close_code`` the
    WebSocket close code (``None`` for an HTTP refusal, then ``http_status`` is set).
    """

    code = ErrorCode.REFUSED

    def __init__(
        self,
        reason: str,
        *,
        error: str,
        close_code: int | None = None,
        number: int | None = None,
        status: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason, field=field)
        self.error = error
        self.close_code = close_code
        self.number = number
        self.status = status

    @property
    def error_code(self) -> ErrorCode | None:
        """The code as an enum member; ``None`` for a code newer than this client."""
        try:
            return ErrorCode(self.error)
        except ValueError:
            return None

    def __str__(self) -> str:
        how = f"close {self.close_code}" if self.close_code is not None else f"HTTP {self.status}"
        return f"tidings: {self.error} ({how}): {self.reason}"


class RequestRefused(ClientError):
    """The gateway answered a request (subscribe, refresh…) with an ``error`` frame."""

    code = ErrorCode.REQUEST_REFUSED

    def __init__(self, frame: p.ErrorFrame) -> None:
        super().__init__(f"{frame.code}: {frame.reason}", field=frame.field)
        self.frame = frame


class ConnectionLost(ClientError):
    """The connection dropped before a request was answered; the client reconnects by itself."""

    code = ErrorCode.CONNECTION_LOST


class Closed(ClientError):
    """The subscriber was closed."""

    code = ErrorCode.CLOSED


class GaveUp(ClientError):
    """``max_attempts`` connection attempts in a row failed."""

    code = ErrorCode.UNREACHABLE


# --- backoff -----------------------------------------------------------------------------------


_rng = random.Random()  # noqa: S311 -- jitter spreads reconnects; it protects no secret


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits ``uniform(0, min(max, base·2ⁿ))``.

    Full jitter spreads a reconnect storm (every client of a dead gateway at once) evenly over
    the window instead of in waves; ``healthy_after`` seconds connected resets the attempt count.
    """

    base: float = 0.5
    max: float = 30.0
    factor: float = 2.0
    healthy_after: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.max:
            raise InvalidField("need 0 < base <= max", field="backoff")
        if self.factor < 1:
            raise InvalidField("factor must be at least 1", field="backoff.factor")

    def cap(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        return min(self.max, self.base * self.factor ** min(max(attempt, 0), 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or _rng).uniform(0.0, self.cap(attempt))


# --- events ------------------------------------------------------------------------------------


class State(StrEnum):
    CONNECTING = "connecting"  # opening the socket, hello sent
    CONNECTED = "connected"  # welcome received; replay may still be arriving
    LIVE = "live"  # synced: everything up to now was delivered
    DISCONNECTED = "disconnected"  # waiting (``delay``) before the next attempt
    CLOSED = "closed"  # for good: close() or a refusal


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: State
    url: str
    attempt: int = 0
    delay: float | None = None  # DISCONNECTED: seconds until the next attempt
    close_code: int | None = None  # DISCONNECTED: why the last connection ended
    reason: str | None = None
    welcome: p.Welcome | None = None  # CONNECTED


@dataclass(frozen=True, slots=True)
class Recovered:
    """The gateway replays everything after ``since``: nothing was missed across the gap."""

    since: int
    epoch: str
    welcome: p.Welcome


@dataclass(frozen=True, slots=True)
class Reset:
    """Notifications up to ``seq`` may be missing (gap beyond the replay bound, new epoch):
    refetch history over REST; everything after ``seq`` is delivered as usual."""

    seq: int
    epoch: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoomRemoved:
    """The gateway took a room away (a refreshed token no longer allows it)."""

    room: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` frame that answered nothing in particular and did not close."""

    error: p.ErrorFrame


Event = StateChanged | Recovered | Reset | RoomRemoved | ServerError


@dataclass(slots=True)
class Stats:
    frames: int = 0  # server text frames received
    notifications: int = 0  # notifications accepted (queued for the iterator)
    duplicates: int = 0  # notifications dropped because their seq was already seen
    connects: int = 0  # welcomes received
    reconnects: int = 0  # drops followed by a new attempt


# --- the client --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Drop:
    """How one connection attempt ended."""

    close_code: int | None  # None: no WebSocket was established
    reason: str
    error: p.ErrorFrame | None = None
    welcomed_at: float | None = None
    reconnect_at: float | None = None  # a `reconnect` frame came: go again then, no backoff
    status: int | None = None  # HTTP status of a refused handshake
    http_error: str | None = None


class _Transient(Exception):
    """This attempt failed for a reason a later attempt may not meet (get_token, network)."""


@dataclass(slots=True)
class _Buffer:
    """The bounded queue between the reader and the iterator; a full one pauses the reader,
    which pushes back to the gateway (which closes it as a slow consumer; it then resumes)."""

    limit: int
    items: deque[tuple[str, p.NotificationFrame]] = field(default_factory=deque)
    readable: asyncio.Event = field(default_factory=asyncio.Event)
    writable: asyncio.Event = field(default_factory=asyncio.Event)


class Subscriber:
    """One logical subscription to a gateway cluster, across any number of connections.

    Create it with :func:`connect` (or construct, then ``await start()``); iterate it for
    :class:`~tidings.protocol.NotificationFrame` objects; read ``events()`` or pass
    ``on_event`` to follow the connection; ``await close()`` when done.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        token: str | None = None,
        get_token: GetToken | None = None,
        rooms: Iterable[str] = (),
        since: int | None = None,
        epoch: str | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        max_pending: int = 4096,
        max_events: int = 256,
        max_frame_bytes: int = 64 << 20,
        open_timeout: float = 10.0,
        ping_interval: float = 20.0,
        request_timeout: float = 10.0,
        refresh_lead: float = 30.0,
        max_auth_retries: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise InvalidField("give at least one gateway URL", field="url")
        for url in self.urls:
            try:
                parse_uri(url)
            except InvalidURI as exc:
                raise InvalidField(str(exc), field="url") from None
        if token is None and get_token is None:
            raise InvalidField("give a token or get_token", field="token")
        if (since is None) != (epoch is None):
            raise InvalidField("since and epoch go together", field="since")
        if max_pending < 1 or max_events < 1:
            raise InvalidField("queues need room for at least one item", field="max_pending")
        self.rooms: dict[str, None] = {p.check_named_room(r, field="rooms"): None for r in rooms}
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.stats = Stats()
        self.state = State.CLOSED
        self.welcome: p.Welcome | None = None
        self.epoch = epoch
        self.last_seq: int | None = None  # the last seq the iterator yielded (in _yielded_epoch)
        self._yielded_epoch: str | None = None
        self._received = since  # the last seq accepted: the resume point and the duplicate bar
        self._token = token
        self._get_token = get_token
        self._need_token = token is None
        self._expires_at: float | None = None
        self._on_event = on_event
        self._events: deque[Event] = deque(maxlen=max_events)
        self._events_ready = asyncio.Event()
        self._buffer = _Buffer(max_pending)
        self._buffer.writable.set()
        self._options = {
            "open_timeout": open_timeout,
            "ping_interval": ping_interval,
            "max_frame_bytes": max_frame_bytes,
        }
        self.request_timeout = request_timeout
        self.refresh_lead = refresh_lead
        self.max_auth_retries = max_auth_retries
        self._rng = rng
        self._ws: ClientConnection | None = None
        self._url = self.urls[0]
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()  # set while welcomed, and for good once finished
        self._pending: dict[int, asyncio.Future[p.ServerFrame]] = {}
        self._next_id = 0
        self._closing = False
        self._done = False
        self._failure: ClientError | None = None
        self._auth_failures = 0
        self._drop = _Drop(None, "")
        self._sent_since: int | None = None
        self._expect_reset = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> Subscriber:
        """Start connecting; with ``wait``, return once welcomed (retrying transient failures)
        or raise :class:`Refused` — wrap in ``asyncio.timeout`` to bound the wait."""
        if self._task is not None:
            raise ClientError("already started")
        self._task = asyncio.create_task(self._run(), name=f"tidings-subscriber {self._url}")
        if wait:
            try:
                await self.wait_connected()
            except BaseException:
                await self.close()
                raise
        return self

    async def wait_connected(self) -> p.Welcome:
        """The current welcome, waiting for one; raises once the subscriber is finished."""
        await self._connected.wait()
        if self._done:
            raise self._failure or Closed("the subscriber is closed")
        assert self.welcome is not None
        return self.welcome

    async def close(self) -> None:
        """Close the connection (1000) and stop; the iterator ends. Idempotent."""
        self._closing = True
        self._buffer.writable.set()  # a reader waiting for room drops the rest and reads the close
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._finish(None)

    async def __aenter__(self) -> Subscriber:
        if self._task is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def position(self) -> tuple[int, str] | None:
        """``(seq, epoch)`` to persist and pass back as ``since``/``epoch`` next time: the last
        yielded notification, or the stream position when everything received was yielded."""
        if not self._buffer.items and self._received is not None and self.epoch is not None:
            return self._received, self.epoch
        if self.last_seq is not None and self._yielded_epoch is not None:
            return self.last_seq, self._yielded_epoch
        return None

    # -- iteration ------------------------------------------------------------------------------

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> p.NotificationFrame:
        buf = self._buffer
        while not buf.items:
            if self._done:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            buf.readable.clear()
            await buf.readable.wait()
        epoch, frame = buf.items.popleft()
        buf.writable.set()
        self.last_seq, self._yielded_epoch = frame.seq, epoch
        return frame

    async def events(self) -> AsyncIterator[Event]:
        """Connection events as they happen (the oldest are dropped past ``max_events``)."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._done:
                return
            self._events_ready.clear()
            await self._events_ready.wait()

    # -- requests -------------------------------------------------------------------------------

    async def subscribe(self, room: str, *, timeout: float | None = None) -> None:
        """Join a named room (``room:<name>``) once the gateway acknowledges it; it is then
        rejoined on every reconnect. Raises :class:`RequestRefused` (e.g. ``forbidden``)."""
        room = p.check_named_room(room)
        await self._until_acked(lambda i: p.Subscribe(room=room, id=i), timeout)
        self.rooms[room] = None

    async def unsubscribe(self, room: str, *, timeout: float | None = None) -> None:
        """Leave a named room; it is forgotten at once, the ack confirms the live connection."""
        room = p.check_named_room(room)
        self.rooms.pop(room, None)
        await self._until_acked(lambda i: p.Unsubscribe(room=room, id=i), timeout)

    async def ping(self, *, timeout: float | None = None) -> float:
        """Round-trip time of an application-level ping, in seconds."""
        start = time.monotonic()
        await self._until_acked(lambda i: p.Ping(id=i), timeout)
        return time.monotonic() - start

    async def _until_acked(
        self, build: Callable[[int], p.ClientFrame], timeout: float | None
    ) -> p.ServerFrame:
        async with asyncio.timeout(self.request_timeout if timeout is None else timeout):
            while True:
                await self.wait_connected()
                try:
                    return await self._request(build)
                except ConnectionLost:
                    continue  # sent on a connection that dropped: send again on the next

    async def _request(self, build: Callable[[int], p.ClientFrame]) -> p.ServerFrame:
        ws = self._ws
        if ws is None or not self._connected.is_set():
            raise ConnectionLost("not connected")
        self._next_id = self._next_id % p.MAX_SAFE_INTEGER + 1
        request_id = self._next_id
        reply: asyncio.Future[p.ServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            try:
                await ws.send(p.encode_client_frame(build(request_id)))
            except ConnectionClosed:
                raise ConnectionLost("the connection dropped") from None
            return await reply
        finally:
            self._pending.pop(request_id, None)

    # -- the connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        failure: ClientError | None = None
        try:
            await self._loop()
        except ClientError as exc:
            failure = exc
        except Exception as exc:  # a bug here must end the iterator, not hang it
            log.exception("subscriber failed")
            failure = ClientError(f"the client failed: {exc!r}")
        finally:
            self._finish(failure)

    async def _loop(self) -> None:
        attempt = 0
        index = 0
        failures = 0  # attempts in a row that never reached welcome
        while not self._closing:
            url = self._url = self.urls[index % len(self.urls)]
            self._set_state(State.CONNECTING, attempt=attempt)
            drop = await self._session(url)
            if self._closing:
                return
            self._check_fatal(drop)
            now = time.monotonic()
            if drop.welcomed_at is not None:
                failures = 0
                if now - drop.welcomed_at >= self.backoff.healthy_after:
                    attempt = 0
            else:
                failures += 1
                if self.max_attempts is not None and failures >= self.max_attempts:
                    raise GaveUp(f"{failures} attempts in a row failed; last: {drop.reason}")
            if drop.reconnect_at is not None:  # a drain: the gateway already spread the delays
                delay = max(0.0, drop.reconnect_at - time.monotonic())
            else:
                delay = self.backoff.delay(attempt, self._rng)
                if drop.close_code == CloseCode.RATE_LIMITED:
                    delay = max(delay, RATE_LIMITED_DELAY)
                attempt += 1
            index += 1  # the next gateway: this one failed or is going away
            self.stats.reconnects += 1
            log.info(
                "reconnecting",
                extra={"url": url, "delay": round(delay, 3), "code": drop.close_code},
            )
            self._set_state(
                State.DISCONNECTED,
                attempt=attempt,
                delay=delay,
                close_code=drop.close_code,
                reason=drop.reason,
            )
            await asyncio.sleep(delay)

    def _check_fatal(self, drop: _Drop) -> None:
        """Raise :class:`Refused` when retrying unchanged cannot help; note a token is needed."""
        if drop.status is not None:
            if drop.status in _FATAL_HTTP:
                raise Refused(
                    drop.reason,
                    error=drop.http_error or f"http_{drop.status}",
                    status=drop.status,
                )
            return
        code = drop.close_code
        if code is None:
            return
        try:
            how = CloseCode(code).reconnect
        except ValueError:
            how = Reconnect.NEVER if 4000 <= code < 5000 else Reconnect.BACKOFF
        if how is Reconnect.BACKOFF:
            return
        if how is Reconnect.NEW_TOKEN and self._get_token is not None:
            self._auth_failures += 1
            if self._auth_failures <= self.max_auth_retries:
                self._need_token = True
                return
        error = drop.error
        raise Refused(
            drop.reason,
            error=error.code if error else drop.reason or "closed",
            close_code=code,
            number=error.number if error else None,
            field=error.field if error else None,
        )

    async def _session(self, url: str) -> _Drop:
        """One connection from handshake to close; says how it ended."""
        try:
            token = await self._hello_token()
        except _Transient as exc:
            return _Drop(None, str(exc))
        since = self._received if self.epoch is not None else None
        hello = p.Hello(
            token=token,
            since=since,
            epoch=self.epoch if since is not None else None,
            rooms=tuple(self.rooms),
        )
        opts = self._options
        try:
            ws = await ws_connect(
                url,
                subprotocols=[Subprotocol(p.SUBPROTOCOL)],
                open_timeout=opts["open_timeout"],
                ping_interval=opts["ping_interval"],
                ping_timeout=opts["ping_interval"],
                close_timeout=2,
                max_size=int(opts["max_frame_bytes"]),
                compression=None,  # the gateway sends pre-built uncompressed frames
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            http_error, reason = _http_refusal(bytes(exc.response.body or b""), status)
            return _Drop(None, reason, status=status, http_error=http_error)
        except (OSError, TimeoutError, WebSocketException) as exc:
            return _Drop(None, f"cannot connect to {url}: {exc or type(exc).__name__}")
        self._ws = ws
        self._drop = drop = _Drop(None, "")
        self._sent_since = since
        self._expect_reset = False
        try:
            await ws.send(p.encode_client_frame(hello))
            async for raw in ws:
                self.stats.frames += 1
                for frame in p.parse_server_frames(raw):
                    await self._on_frame(ws, frame)
        except ConnectionClosed:
            pass
        except Malformed as exc:
            log.warning("gateway sent a malformed frame", extra={"url": url, "error": exc.reason})
            drop.reason = f"malformed frame: {exc.reason}"
        finally:
            self._ws = None
            self._connected.clear()
            self._stop_refresher()
            if self._closer is not None:
                self._closer.cancel()
                self._closer = None
            for reply in self._pending.values():
                if not reply.done():
                    reply.set_exception(ConnectionLost("the connection dropped"))
            if self._closing:
                ws.transport.abort()  # close() already said goodbye or gave up on it
            else:
                with contextlib.suppress(Exception):
                    await ws.close()
        error = drop.error
        close_code = ws.close_code
        if close_code in (None, ABNORMAL_CLOSURE) and error is not None and error.close:
            close_code = error.close  # the close frame got lost; the error frame said what it was
        if close_code is None:
            close_code = ABNORMAL_CLOSURE
        drop.close_code = close_code
        if error is not None:
            drop.reason = error.reason
        elif not drop.reason:
            drop.reason = ws.close_reason or _close_meaning(close_code)
        return drop

    async def _hello_token(self) -> str:
        expiring = self._expires_at is not None and self._expires_at - time.time() < 1.0
        if self._get_token is not None and (self._need_token or expiring or self._token is None):
            try:
                token = await self._get_token()
            except asyncio.CancelledError:
                raise
            except TidingsError as exc:
                if exc.code in ("unauthorized", "forbidden"):
                    raise Refused(f"get_token: {exc.reason}", error=exc.code) from exc
                raise _Transient(f"get_token failed: {exc}") from exc
            except Exception as exc:
                raise _Transient(f"get_token failed: {exc!r}") from exc
            self._token, self._expires_at, self._need_token = token, None, False
        assert self._token is not None
        return self._token

    # -- frames ---------------------------------------------------------------------------------

    async def _on_frame(self, ws: ClientConnection, frame: p.ServerFrame) -> None:
        if isinstance(frame, p.NotificationFrame):
            await self._on_notification(frame)
        elif isinstance(frame, p.Welcome):
            self._on_welcome(frame)
        elif isinstance(frame, p.Synced):
            if self._expect_reset:  # a gateway that did not say reset: say it for it
                self._on_reset(p.Reset(seq=frame.seq, epoch=self.epoch or "", reason="unknown"))
            # Everything up to seq was sent: a quiet connection's resume point moves on too.
            self._received = max(self._received or 0, frame.seq)
            if self.state is not State.LIVE:
                self._set_state(State.LIVE)
        elif isinstance(frame, p.Reset):
            self._on_reset(frame)
        elif isinstance(frame, p.ErrorFrame):
            if not self._answer(frame.id, frame):
                if frame.close is not None:
                    self._drop.error = frame
                else:
                    self._emit(ServerError(frame))
        elif isinstance(frame, p.ReconnectFrame):
            # Keep reading until delay_ms has passed (or the gateway closes), then go again.
            delay = frame.delay_ms / 1000
            self._drop.reconnect_at = time.monotonic() + delay
            self._drop.reason = f"gateway asked to reconnect ({frame.reason})"
            if self._closer is None:
                self._closer = asyncio.create_task(_close_after(ws, delay))
        elif isinstance(frame, p.Refreshed):
            self._answer(frame.id, frame)
        elif isinstance(frame, p.Unsubscribed) and frame.id is None:
            self.rooms.pop(frame.room, None)
            self._emit(RoomRemoved(frame.room, frame.reason or "removed by the gateway"))
        elif isinstance(frame, p.Subscribed | p.Unsubscribed | p.Pong):
            self._answer(frame.id, frame)

    def _answer(self, request_id: int | None, frame: p.ServerFrame) -> bool:
        reply = self._pending.get(request_id) if request_id is not None else None
        if reply is None:
            return False
        if not reply.done():
            if isinstance(frame, p.ErrorFrame):
                reply.set_exception(RequestRefused(frame))
            else:
                reply.set_result(frame)
        return True

    async def _on_notification(self, frame: p.NotificationFrame) -> None:
        if self._received is not None and frame.seq <= self._received:
            self.stats.duplicates += 1
            return
        self._received = frame.seq
        self.stats.notifications += 1
        buf = self._buffer
        while len(buf.items) >= buf.limit and not (self._done or self._closing):
            buf.writable.clear()
            await buf.writable.wait()
        if self._done or self._closing:
            return
        buf.items.append((self.epoch or "", frame))
        buf.readable.set()

    def _on_welcome(self, welcome: p.Welcome) -> None:
        since = self._sent_since
        if welcome.epoch != self.epoch:
            self.epoch = welcome.epoch
            self._received = None  # another stream: old sequence numbers mean nothing in it
        if not welcome.recovered:
            # From here on every notification for our rooms arrives (a reset, if any, follows).
            self._received = max(self._received or 0, welcome.seq)
        self.welcome = welcome
        self._expires_at = welcome.expires_at
        self._auth_failures = 0
        self._drop.welcomed_at = time.monotonic()
        self.stats.connects += 1
        self._expect_reset = since is not None and not welcome.recovered
        self._connected.set()
        self._set_state(State.CONNECTED, welcome=welcome)
        if welcome.recovered and since is not None:
            self._emit(Recovered(since=since, epoch=welcome.epoch, welcome=welcome))
        if self._get_token is not None and welcome.expires_at is not None:
            self._refresher = asyncio.create_task(self._refresh_loop())

    def _on_reset(self, reset: p.Reset) -> None:
        self._expect_reset = False
        if reset.epoch and reset.epoch != self.epoch:
            self.epoch = reset.epoch
            self._received = reset.seq
        else:
            self._received = max(self._received or 0, reset.seq)
        self._emit(Reset(seq=reset.seq, epoch=reset.epoch, reason=reset.reason))

    # -- token refresh --------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        """Send ``refresh`` ahead of ``exp``: a third of the lifetime left, at most
        ``refresh_lead`` seconds early; failures retry until the token expires (then the
        gateway closes 4401 and the reconnect asks ``get_token`` again)."""
        assert self._get_token is not None
        while self._expires_at is not None:
            expires = self._expires_at
            remaining = expires - time.time()
            await asyncio.sleep(max(0.0, remaining - min(self.refresh_lead, remaining / 3)))
            try:
                token = await self._get_token()
                reply = await asyncio.wait_for(
                    self._request(functools.partial(_refresh_frame, token)), self.request_timeout
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                left = expires - time.time()
                log.warning("token refresh failed", extra={"error": repr(exc), "left": left})
                if left <= 0:
                    return
                await asyncio.sleep(min(1.0, left / 4))
                continue
            assert isinstance(reply, p.Refreshed)
            self._token = token
            self._expires_at = reply.expires_at

    def _stop_refresher(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    # -- state and events -----------------------------------------------------------------------

    def _set_state(
        self,
        state: State,
        *,
        attempt: int = 0,
        delay: float | None = None,
        close_code: int | None = None,
        reason: str | None = None,
        welcome: p.Welcome | None = None,
    ) -> None:
        self.state = state
        self._emit(StateChanged(state, self._url, attempt, delay, close_code, reason, welcome))

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        self._events_ready.set()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _finish(self, failure: ClientError | None) -> None:
        if self._done:
            return
        self._done = True
        self._failure = failure
        self._stop_refresher()
        if self._closing:
            self._buffer.items.clear()  # close() means: no more notifications
        self._buffer.readable.set()
        self._buffer.writable.set()
        self._connected.set()  # wakes waiters, who then see _done
        reason = None if failure is None else str(failure)
        code = failure.close_code if isinstance(failure, Refused) else None
        self._set_state(State.CLOSED, close_code=code, reason=reason)


async def _close_after(ws: ClientConnection, delay: float) -> None:
    await asyncio.sleep(delay)
    await ws.close()


def _refresh_frame(token: str, request_id: int) -> p.Refresh:
    return p.Refresh(token=token, id=request_id)


def _http_refusal(body: bytes, status: int) -> tuple[str | None, str]:
    """The gateway's ``{"error": {"code", "reason"}}`` from a refused handshake, if present."""
    try:
        error = orjson.loads(body or b"{}").get("error", {})
        return str(error["code"]), f"HTTP {status}: {error['reason']}"
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None, f"HTTP {status}"


def _close_meaning(code: int) -> str:
    try:
        return CloseCode(code).meaning
    except ValueError:
        return "connection lost" if code == ABNORMAL_CLOSURE else f"closed with {code}"


async def connect(
    url: str | Sequence[str],
    *,
    token: str | None = None,
    get_token: GetToken | None = None,
    rooms: Iterable[str] = (),
    since: int | None = None,
    epoch: str | None = None,
    **options: Any,
) -> Subscriber:
    """A started :class:`Subscriber`, once the first ``welcome`` arrived.

    ``get_token`` (async, returning a JWT) is called for the first token when ``token`` is not
    given, ahead of expiry, and after the gateway refused a token; ``options`` are the
    :class:`Subscriber` keyword arguments (``backoff``, ``on_event``, ``max_attempts``…).
    """
    sub = Subscriber(
        url, token=token, get_token=get_token, rooms=rooms, since=since, epoch=epoch, **options
    )
    return await sub.start()
