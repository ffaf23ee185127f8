"""The sidecar's NATS connection, kept alive in the background.

The sidecar must start and accept notifications while NATS is down (they go to the outbox), so
the first connect runs in a task that retries until a server answers, instead of failing
start-up. nats-py reconnects on its own afterwards; the link only tracks the state and tells the
relay when the connection is (again) usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import StrEnum

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tidings.errors import Unavailable
from tidings.nats import connect_options
from tidings.settings import NatsSettings

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    CONNECTING = "connecting"  # never connected yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost, nats-py is reconnecting
    CLOSED = "closed"


class NatsLink:
    """One supervised NATS connection; ``on_connect`` runs on every (re)connect."""

    def __init__(
        self,
        settings: NatsSettings,
        *,
        on_connect: Callable[[], None] | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.on_connect = on_connect
        self.close_timeout = close_timeout
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._stopping = False
        self._state = LinkState.CONNECTING
        self._last_error = ""
        self._lost: asyncio.Future[None] | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        nc = self._nc
        return self._state is LinkState.CONNECTED and nc is not None and nc.is_connected

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context; :class:`Unavailable` while not connected."""
        if self._js is None or not self.connected:
            raise Unavailable(f"NATS is {self._state.value}")
        return self._js

    def lost(self) -> asyncio.Future[None]:
        """Resolves when the current connection drops (already resolved while down).

        A publish in flight races it: nats-py would hold the message and wait the whole PubAck
        timeout, while the outbox can take it at once.
        """
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
            if not self.connected:
                self._lost.set_result(None)
        return self._lost

    def _mark_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.set_result(None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tidings-nats-link")

    async def close(self) -> None:
        """Stop connecting and close the connection; bounded even when NATS is unreachable."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_client()
        self._state = LinkState.CLOSED
        self._mark_lost()

    async def _run(self) -> None:
        while not self._stopping:
            self._closed.clear()
            nc = NATS()
            self._nc = nc
            try:
                await nc.connect(
                    **connect_options(self.settings),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A finite reconnect budget (or an auth failure) ends the attempt: retry anew.
                log.warning("nats connect failed, retrying: %s", exc)
                await self._close_client()
                await asyncio.sleep(self.settings.reconnect_wait)
                continue
            self._js = nc.jetstream(timeout=self.settings.request_timeout)
            self._set_connected(reconnect=False)
            await self._closed.wait()  # nats-py gave up: start over with a fresh client
            self._js = None
            if not self._stopping:
                log.warning("nats connection closed; connecting again")
                await asyncio.sleep(self.settings.reconnect_wait)

    async def _close_client(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.close(), self.close_timeout)
        except (TimeoutError, OSError) as exc:
            log.warning("nats close did not finish cleanly: %r", exc)

    def _set_connected(self, *, reconnect: bool) -> None:
        self._mark_lost()  # a future resolved while down must not outlive the outage
        self._state = LinkState.CONNECTED
        self._last_error = ""
        nc = self._nc
        url = nc.connected_url.netloc if nc is not None and nc.connected_url else "?"
        log.info("nats %s", "reconnected" if reconnect else "connected", extra={"server": url})
        if self.on_connect is not None:
            self.on_connect()

    async def _on_error(self, exc: Exception) -> None:
        # While NATS is down nats-py reports every failed attempt: log each distinct error once.
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            self._last_error = text
            log.warning("nats error: %s", text)

    async def _on_disconnected(self) -> None:
        if self._state is LinkState.CONNECTED and not self._stopping:
            self._state = LinkState.RECONNECTING
            log.warning("nats disconnected; new notifications go to the outbox")
        self._mark_lost()

    async def _on_reconnected(self) -> None:
        self._set_connected(reconnect=True)

    async def _on_closed(self) -> None:
        if not self._stopping:
            self._state = LinkState.RECONNECTING
        self._mark_lost()
        self._closed.set()
