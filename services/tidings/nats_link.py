"""One supervised NATS connection, for the publisher sidecar and the gateway alike.

The first connect retries until a server answers instead of failing start-up (the sidecar
accepts notifications into its outbox while NATS is down; a gateway waits for it). nats-py
reconnects on its own afterwards; when it gives up (a server ``-ERR`` closes the client for
good) the link starts over with a fresh client.

nats-py's callbacks only record what happened. What must follow a loss or a reconnect runs in
:meth:`NatsLink.run`, a supervised part: the ``on_down`` steps at once and in order, then the
``on_up`` steps (re-arming subscriptions, healing connections), retried until they succeed or
the connection drops again, so that a failing step is logged and retried, never lost inside a
client library's callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.client import Server
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from tidings.errors import Unavailable
from tidings.nats import connect_options
from tidings.settings import NatsSettings

log = logging.getLogger(__name__)

RETRYING = "a step after the NATS (re)connect failed; retrying"

UpStep = Callable[[], Awaitable[None]]
DownStep = Callable[[], None]


class LinkState(StrEnum):
    CONNECTING = "connecting"  # never connected yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost, nats-py is reconnecting
    CLOSED = "closed"


class ServerChoice:
    """Which server each reconnect attempt goes to (nats-py's ``reconnect_to_server_handler``).

    nats-py shuffles its pool on a loss and may try the server it just lost first. A frozen
    server (SIGSTOP, a hung host) still completes TCP handshakes in its kernel, so that attempt
    waits the whole connect timeout (2 s) for an INFO that never comes: measured on a 3-node
    cluster (test_cluster_freeze, 10 runs, load average < 0.5), a gateway whose node froze
    reconnected 2.0 s after noticing in 7 of 20 runs instead of at once, and its clients' wait
    reached 4.98 s of the 5 s bound. Here the other servers come first, least recently tried
    first, and no server is tried twice within ``wait`` seconds (nats-py's own pause).
    """

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.current: str | None = None  # host:port of the server of the live connection
        self._tried: dict[str, float] = {}  # host:port -> when an attempt was last started

    def connected(self, netloc: str | None) -> None:
        """A (re)connect succeeded: a later loss starts afresh, away from this server."""
        self.current = netloc
        self._tried.clear()

    def __call__(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        if not servers:
            return None, 0.0
        now = time.monotonic()

        def rank(server: Server) -> tuple[float, bool]:
            netloc = server.uri.netloc
            return self._tried.get(netloc, float("-inf")), netloc == self.current

        chosen = min(servers, key=rank)
        last = self._tried.get(chosen.uri.netloc)
        delay = 0.0 if last is None else max(0.0, last + self.wait - now)
        self._tried[chosen.uri.netloc] = now + delay
        return chosen, delay


class NatsLink:
    """A NATS connection kept alive by its own part; steps run on every loss and (re)connect."""

    name = "nats-link"

    def __init__(
        self, settings: NatsSettings, *, service: str | None = None, close_timeout: float = 5.0
    ) -> None:
        self.settings = settings
        self.service = service  # names the reply prefix (tidings.nats.inbox_prefix)
        self.close_timeout = close_timeout
        self._up: list[UpStep] = []
        self._down: list[DownStep] = []
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._closed = asyncio.Event()  # nats-py gave up on the current client
        self._changed = asyncio.Event()  # a loss or a (re)connect to act on
        self._stopping = False
        self._state = LinkState.CONNECTING
        self._last_error = ""
        self._lost: asyncio.Future[None] | None = None
        self._up_event = asyncio.Event()
        self._connects = 0  # (re)connects seen so far
        self._healed = 0  # the connect the on_up steps last completed for
        self._losses = 0
        self._handled_losses = 0
        self._choice = ServerChoice(settings.reconnect_wait)

    # -- what the users of the connection see --------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        nc = self._nc
        return self._state is LinkState.CONNECTED and nc is not None and nc.is_connected

    @property
    def client(self) -> NATS:
        """The current client (it changes when nats-py gave up and the link started over)."""
        if self._nc is None:
            raise Unavailable(f"NATS is {self._state.value}")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context; :class:`Unavailable` while not connected."""
        if self._js is None or not self.connected:
            raise Unavailable(f"NATS is {self._state.value}")
        return self._js

    def on_up(self, step: UpStep) -> None:
        """Run ``step`` after every (re)connect, retried until it succeeds or NATS drops."""
        self._up.append(step)

    def on_down(self, step: DownStep) -> None:
        """Run ``step`` once for every loss of the connection, before the next ``on_up``."""
        self._down.append(step)

    async def wait_connected(self) -> None:
        """Return once a connection is up (at once if it is)."""
        while not self.connected:
            self._up_event.clear()
            await self._up_event.wait()

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

    # -- the part ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, follow the connection, start over when nats-py gives up; close on cancel."""
        try:
            while True:
                await self._open()
                await self._follow()
                self._js = None
                log.warning("nats connection closed; connecting again")
                await asyncio.sleep(self.settings.reconnect_wait)
        finally:
            self._stopping = True
            await self._close_client()
            self._state = LinkState.CLOSED
            self._mark_lost()

    async def _open(self) -> None:
        while True:
            self._closed.clear()
            nc = NATS()
            self._nc = nc
            try:
                await nc.connect(
                    **connect_options(self.settings, service=self.service),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                    reconnect_to_server_handler=self._choice,
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
            return

    async def _follow(self) -> None:
        """Act on losses and reconnects of the current client until nats-py closes it."""
        while True:
            if self._handled_losses != self._losses:
                self._handled_losses = self._losses
                for down in self._down:
                    down()  # a bug here ends the part: the supervisor stops the process
            if self.connected and self._healed != self._connects:
                await self._heal()
            if self._closed.is_set():
                return
            if self._healed == self._connects or not self.connected:
                self._changed.clear()
                await self._changed.wait()

    async def _heal(self) -> None:
        target = self._connects
        loop = asyncio.get_running_loop()
        began = loop.time()
        took: dict[str, float] = {}
        for step in self._up:
            if not self.connected or target != self._connects:
                return  # lost again meanwhile: the steps run anew after the next reconnect
            try:
                at = loop.time()
                await step()
                took[getattr(step, "__qualname__", repr(step))] = round(loop.time() - at, 3)
            except (TimeoutError, NatsError) as exc:
                # Expected while JetStream elects a leader (~5 s): one line each, no traceback.
                log.warning(RETRYING, extra={"error": repr(exc)})
                await asyncio.sleep(self.settings.reconnect_wait or 0.5)
                return
            except Exception:
                log.exception(RETRYING)
                await asyncio.sleep(self.settings.reconnect_wait or 0.5)
                return
        self._healed = target
        log.info(
            "nats steps after the (re)connect done",
            extra={"seconds": round(loop.time() - began, 3), "steps": took},
        )

    async def _close_client(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.close(), self.close_timeout)
        except (TimeoutError, OSError) as exc:
            log.warning("nats close did not finish cleanly: %r", exc)

    def _mark_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.set_result(None)

    def _set_connected(self, *, reconnect: bool) -> None:
        self._mark_lost()  # a future resolved while down must not outlive the outage
        self._state = LinkState.CONNECTED
        self._last_error = ""
        self._connects += 1
        nc = self._nc
        url = nc.connected_url.netloc if nc is not None and nc.connected_url else "?"
        self._choice.connected(url)
        log.info("nats %s", "reconnected" if reconnect else "connected", extra={"server": url})
        self._up_event.set()
        self._changed.set()

    # -- nats-py's callbacks: record, never act ------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        # While NATS is down nats-py reports every failed attempt: log each distinct error once.
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            self._last_error = text
            log.warning("nats error: %s", text)

    async def _on_disconnected(self) -> None:
        if self._stopping:
            return
        if self._state is LinkState.CONNECTED:
            self._state = LinkState.RECONNECTING
            log.warning("nats disconnected")
            self._losses += 1
            self._changed.set()
        self._mark_lost()

    async def _on_reconnected(self) -> None:
        if not self._stopping:
            self._set_connected(reconnect=True)

    async def _on_closed(self) -> None:
        if not self._stopping:
            if self._state is LinkState.CONNECTED:
                self._losses += 1  # closed without a disconnect first
            self._state = LinkState.RECONNECTING
        self._mark_lost()
        self._closed.set()
        self._changed.set()
