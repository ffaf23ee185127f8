"""The Python WebSocket client: notifications as an async iterator that survives reconnects.

A :class:`Subscriber` keeps one connection to a gateway (of several it may be given), sends
``hello`` first (the token never travels in the URL), and yields each notification once, in
stream order. It remembers the last ``seq`` and the stream ``epoch``, so after any drop
(network, gateway crash or drain, slow-consumer close) it reconnects with exponential backoff
and full jitter and resumes where it stopped; ``Recovered`` and ``Reset`` events tell the
application whether its view is complete. Closes that retrying cannot fix end the iterator with
:class:`~tidings.client.errors.Refused`, carrying the gateway's error code::

    async with await connect("ws://127.0.0.1:8080/ws", token=jwt) as sub:
        async for n in sub:
            print(n.seq, n.event, n.title)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidURI
from websockets.uri import parse_uri

from tidings import protocol as p
from tidings.client.attempt import Drop, Retries, open_socket, settle
from tidings.client.buffer import Buffer
from tidings.client.credentials import Credentials, Unavailable
from tidings.client.cursor import Cursor
from tidings.client.errors import ClientError, Closed, ConnectionLost, Refused
from tidings.client.options import GetToken, SubscriberOptions
from tidings.client.requests import Requests
from tidings.client.subscriber_events import (
    Event,
    EventLog,
    InboxChanged,
    RoomRemoved,
    ServerError,
    State,
    StateChanged,
    Stats,
)
from tidings.codes import Reconnect
from tidings.errors import InvalidField, Malformed

log = logging.getLogger(__name__)


class Subscriber:
    """One logical subscription to a gateway cluster, across any number of connections.

    Create it with :func:`connect` (or construct, then ``await start()``); iterate it for
    :class:`~tidings.protocol.NotificationFrame` objects; read ``events()`` or pass
    ``on_event`` in the options to follow the connection; ``await close()`` when done.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        options: SubscriberOptions | None = None,
        *,
        token: str | None = None,
        get_token: GetToken | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise InvalidField("give at least one gateway URL", field="url")
        for url in self.urls:
            try:
                parse_uri(url)
            except InvalidURI as exc:
                raise InvalidField(str(exc), field="url") from None
        self.options = options = options or SubscriberOptions()
        self._credentials = Credentials(token, get_token, options.max_auth_retries)
        self.rooms: dict[str, None] = dict.fromkeys(options.rooms)
        self.stats = Stats()
        self.state = State.CLOSED
        self.welcome: p.Welcome | None = None
        self.last_seq: int | None = None  # the last seq the iterator yielded (in _yielded_epoch)
        self._yielded_epoch: str | None = None
        self._cursor = Cursor(options.since, options.epoch)
        self._retries = Retries(self.urls, options.backoff, options.max_attempts, options.rng)
        self._events = EventLog(options.max_events, options.on_event)
        self._buffer = Buffer(options.max_pending)
        self._ws: ClientConnection | None = None
        self._url = self.urls[0]
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()  # set while welcomed, and for good once finished
        self._requests = Requests()
        self._closing = False
        self._done = False
        self._failure: ClientError | None = None
        self._drop = Drop(None, "")

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
        self._buffer.stop()  # a reader waiting for room drops the rest and reads the close
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
    def epoch(self) -> str | None:
        """The stream epoch of the resume point (the gateway's, once welcomed)."""
        return self._cursor.epoch

    @property
    def position(self) -> tuple[int, str] | None:
        """``(seq, epoch)`` to persist and pass back as ``since``/``epoch`` next time: the last
        yielded notification, or the stream position when everything received was yielded."""
        received, epoch = self._cursor.received, self._cursor.epoch
        if not self._buffer and received is not None and epoch is not None:
            return received, epoch
        if self.last_seq is not None and self._yielded_epoch is not None:
            return self.last_seq, self._yielded_epoch
        return None

    # -- iteration ------------------------------------------------------------------------------

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> p.NotificationFrame:
        item = await self._buffer.get()
        if item is None:
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        epoch, frame = item
        self.last_seq, self._yielded_epoch = frame.seq, epoch
        return frame

    async def events(self) -> AsyncIterator[Event]:
        """Connection events as they happen (the oldest are dropped past ``max_events``)."""
        async for event in self._events.follow():
            yield event

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
        async with asyncio.timeout(self.options.request_timeout if timeout is None else timeout):
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
        return await self._requests.send(ws, build)

    async def _refresh(self, token: str) -> p.ServerFrame:
        request = self._request(lambda i: p.Refresh(token=token, id=i))
        return await asyncio.wait_for(request, self.options.request_timeout)

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
        retries = self._retries
        while not self._closing:
            url = self._url = retries.url
            self._set_state(StateChanged(State.CONNECTING, url, retries.attempt))
            drop = await self._session(url)
            if self._closing:
                return
            how = drop.reconnect()
            if how is Reconnect.NEW_TOKEN and not self._credentials.refused():
                how = Reconnect.NEVER
            if how is Reconnect.NEVER:
                raise drop.refusal()
            delay = retries.after(drop)
            self.stats.reconnects += 1
            log.info(
                "reconnecting",
                extra={"url": url, "delay": round(delay, 3), "code": drop.close_code},
            )
            self._set_state(
                StateChanged(
                    State.DISCONNECTED, url, retries.attempt, delay, drop.close_code, drop.reason
                )
            )
            await asyncio.sleep(delay)

    async def _session(self, url: str) -> Drop:
        """One connection from handshake to close; says how it ended."""
        try:
            token = await self._credentials.for_hello()
        except Unavailable as exc:
            return Drop(None, str(exc))
        ws = await open_socket(url, self.options)
        if isinstance(ws, Drop):
            return ws
        since, epoch = self._cursor.hello()
        hello = p.Hello(token=token, since=since, epoch=epoch, rooms=tuple(self.rooms))
        self._ws = ws
        self._drop = drop = Drop(None, "")
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
            self._credentials.stop_refresh()
            if self._closer is not None:
                self._closer.cancel()
                self._closer = None
            self._requests.lost()
            if self._closing:
                ws.transport.abort()  # close() already said goodbye or gave up on it
            else:
                with contextlib.suppress(Exception):
                    await ws.close()
        return settle(drop, ws)

    # -- frames ---------------------------------------------------------------------------------

    async def _on_frame(self, ws: ClientConnection, frame: p.ServerFrame) -> None:
        if isinstance(frame, p.NotificationFrame):
            await self._on_notification(frame)
        elif isinstance(frame, p.Welcome):
            self._on_welcome(frame)
        elif isinstance(frame, p.Synced):
            owed = self._cursor.synced(frame.seq)  # a gateway that did not say reset: say it
            if owed is not None:
                self._events.emit(owed)
            if self.state is not State.LIVE:
                self._set_state(StateChanged(State.LIVE, self._url))
        elif isinstance(frame, p.Reset):
            self._events.emit(self._cursor.reset(frame))
        elif isinstance(frame, p.ErrorFrame):
            if not self._requests.answer(frame.id, frame):
                if frame.close is not None:
                    self._drop.error = frame
                else:
                    self._events.emit(ServerError(frame))
        elif isinstance(frame, p.ReconnectFrame):
            # Keep reading until delay_ms has passed (or the gateway closes), then go again.
            delay = frame.delay_ms / 1000
            self._drop.reconnect_at = time.monotonic() + delay
            self._drop.reason = f"gateway asked to reconnect ({frame.reason})"
            if self._closer is None:
                self._closer = asyncio.create_task(_close_after(ws, delay))
        elif isinstance(frame, p.Refreshed):
            self._requests.answer(frame.id, frame)
        elif isinstance(frame, p.Unsubscribed) and frame.id is None:
            self.rooms.pop(frame.room, None)
            self._events.emit(RoomRemoved(frame.room, frame.reason or "removed by the gateway"))
        elif isinstance(frame, p.Subscribed | p.Unsubscribed | p.Pong):
            self._requests.answer(frame.id, frame)
        elif isinstance(frame, p.InboxFrame):
            self._events.emit(InboxChanged(frame))

    async def _on_notification(self, frame: p.NotificationFrame) -> None:
        if not self._cursor.accept(frame.seq):
            self.stats.duplicates += 1
            return
        self.stats.notifications += 1
        await self._buffer.put((self._cursor.epoch or "", frame))

    def _on_welcome(self, welcome: p.Welcome) -> None:
        recovered = self._cursor.welcomed(welcome)
        self.welcome = welcome
        self._credentials.welcomed(welcome.expires_at)
        self._drop.welcomed_at = time.monotonic()
        self.stats.connects += 1
        self._connected.set()
        self._set_state(StateChanged(State.CONNECTED, self._url, welcome=welcome))
        if recovered is not None:
            self._events.emit(recovered)
        self._credentials.refresh_ahead(self._refresh, lead=self.options.refresh_lead)

    # -- state and events -----------------------------------------------------------------------

    def _set_state(self, changed: StateChanged) -> None:
        self.state = changed.state
        self._events.emit(changed)

    def _finish(self, failure: ClientError | None) -> None:
        if self._done:
            return
        self._done = True
        self._failure = failure
        self._credentials.stop_refresh()
        self._buffer.end(discard=self._closing)  # close() means: no more notifications
        self._connected.set()  # wakes waiters, who then see _done
        reason = None if failure is None else str(failure)
        code = failure.close_code if isinstance(failure, Refused) else None
        self._set_state(StateChanged(State.CLOSED, self._url, close_code=code, reason=reason))
        self._events.end()


async def _close_after(ws: ClientConnection, delay: float) -> None:
    await asyncio.sleep(delay)
    await ws.close()


async def connect(
    urls: str | Sequence[str],
    *,
    token: str | None = None,
    get_token: GetToken | None = None,
    options: SubscriberOptions | None = None,
) -> Subscriber:
    """A started :class:`Subscriber`, once the first ``welcome`` arrived.

    ``get_token`` (async, returning a JWT) is called for the first token when ``token`` is not
    given, ahead of expiry, and after the gateway refused a token.
    """
    return await Subscriber(urls, options, token=token, get_token=get_token).start()
