"""Publish now if NATS takes it, else keep it in the outbox; drain the outbox in order.

The ordering rule lives here and only here: while the outbox holds anything, every new message
joins it (a sequential client's order is kept across an outage), the drainer publishes the
outbox oldest first, and a row is deleted only after its PubAck. A replay reuses the message's
``Nats-Msg-Id``, so a message stored before an ack was lost collapses in the duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from nats.errors import MaxPayloadError
from nats.js import JetStreamContext

from tidings.errors import TidingsError, TooLarge, Unavailable
from tidings.nats_link import NatsLink
from tidings.publisher.metrics import PublisherMetrics
from tidings.publisher.outbox import Entry, Outbox
from tidings.publishing import (
    TRANSIENT_ERRORS,
    OutgoingMessage,
    PublishResult,
    publish,
    publish_many,
)

log = logging.getLogger(__name__)

# "NATS did not take it now": keep the message and try again later.
RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, Unavailable)
# JetStream will never take this message: set it aside so the queue moves on.
POISON: tuple[type[BaseException], ...] = (TidingsError, MaxPayloadError)


class Relay:
    """The sidecar's way to JetStream: direct when possible, through the outbox otherwise.

    A supervised part (:meth:`run` drains the outbox); it follows the link itself: a
    reconnect wakes the drainer.
    """

    name = "outbox-relay"

    def __init__(
        self,
        link: NatsLink,
        outbox: Outbox,
        *,
        stream: str,
        timeout: float,
        metrics: PublisherMetrics,
        chunk: int = 256,
        idle_poll: float = 1.0,
    ) -> None:
        self.link = link
        self.outbox = outbox
        self.stream = stream
        self.timeout = timeout
        self.metrics = metrics
        self.chunk = chunk
        self.idle_poll = idle_poll
        self.retry_wait = link.settings.reconnect_wait or 0.5
        # One try's wait for a PubAck; tries repeat (same Nats-Msg-Id) within ``timeout``, so
        # a publish during an election lands about this long after the new leader exists.
        self.attempt = min(link.settings.publish_try, timeout)
        self._wake = asyncio.Event()
        self._paused = ""
        link.on_up(self._nats_back)
        link.on_down(self._nats_lost)

    # -- accepting ----------------------------------------------------------------------------

    async def submit(self, msgs: Sequence[OutgoingMessage]) -> list[PublishResult]:
        """Store ``msgs`` in JetStream (PubAck) or durably in the outbox; raise if neither."""
        if self.outbox.depth == 0 and self.link.connected:
            try:
                return await self._publish(msgs, mode="single" if len(msgs) == 1 else "batch")
            except RETRYABLE as exc:
                log.info("publish failed, queueing in the outbox: %r", exc)
            except MaxPayloadError:
                raise TooLarge("larger than the NATS server's max_payload") from None
        was_empty = self.outbox.depth == 0
        await self.outbox.append(msgs)  # raises OutboxFull
        if was_empty:
            log.warning("NATS is not taking messages; queueing in the outbox")
        self.wake()
        return [PublishResult(m.id, None, queued=True) for m in msgs]

    async def _publish(self, msgs: Sequence[OutgoingMessage], *, mode: str) -> list[PublishResult]:
        """Publish and wait for the PubAcks; :class:`Unavailable` as soon as the link drops."""
        js, lost = self.link.js, self.link.lost()
        started = time.perf_counter()
        sent = asyncio.ensure_future(self._send(js, msgs))
        try:
            await asyncio.wait((sent, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sent.done():
                sent.cancel()
        if not sent.done() or sent.cancelled():
            # Whatever nats-py still sends after the reconnect collapses by Nats-Msg-Id.
            raise Unavailable("the NATS connection was lost before the PubAck")
        results = sent.result()
        self.metrics.publish_seconds.labels(mode).observe(time.perf_counter() - started)
        return results

    async def _send(
        self, js: JetStreamContext, msgs: Sequence[OutgoingMessage]
    ) -> list[PublishResult]:
        if len(msgs) == 1:
            return [
                await publish(
                    js, msgs[0], stream=self.stream, timeout=self.timeout, attempt=self.attempt
                )
            ]
        return await publish_many(
            js, msgs, stream=self.stream, timeout=self.timeout, attempt=self.attempt
        )

    # -- draining -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the drainer to look again (a message was queued, or NATS came back)."""
        self._wake.set()

    async def _nats_back(self) -> None:
        self.wake()

    def _nats_lost(self) -> None:
        log.warning("nats disconnected; new notifications go to the outbox")

    async def run(self) -> None:
        """Drain the outbox whenever it holds something and NATS is up, until cancelled."""
        while True:
            self._wake.clear()  # before the check, so a wake() during the check is not lost
            if self.outbox.depth == 0 or not self.link.connected:
                with contextlib.suppress(TimeoutError):
                    # The poll is a safety net; wake() normally ends the wait at once.
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll)
                continue
            try:
                await self.drain_once()
                self._paused = ""
            except RETRYABLE as exc:
                # e.g. the stream is not provisioned yet: say so once, not every retry.
                reason = repr(exc)
                if reason != self._paused:
                    self._paused = reason
                    log.warning("outbox drain paused, retrying: %s", reason)
                await asyncio.sleep(self.retry_wait)
            except Exception:
                log.exception("outbox drain failed; retrying")
                await asyncio.sleep(self.retry_wait)

    async def drain_once(self) -> int:
        """Publish the oldest chunk and delete what JetStream acknowledged; return that count."""
        entries = await self.outbox.peek(self.chunk)
        if not entries:
            return 0
        try:
            await self._publish([e.message for e in entries], mode="drain")
        except TimeoutError:
            if not self.link.connected:
                raise
            # Connected but no PubAcks: nats-py leaves a pipelined publish that JetStream
            # refused pending forever (nats-io/nats.py#985), so look one message at a time.
            return await self._drain_singly(entries)
        except RETRYABLE:
            raise
        except POISON:
            # Something in the chunk is refused for good: find it one message at a time.
            return await self._drain_singly(entries)
        await self._acked(entries)
        if self.outbox.depth == 0:
            log.info("outbox drained; publishing directly again")
        return len(entries)

    async def _drain_singly(self, entries: Sequence[Entry]) -> int:
        done = 0
        for entry in entries:
            try:
                await self._publish([entry.message], mode="drain")
            except RETRYABLE:
                raise
            except POISON as exc:
                reason = str(exc) or type(exc).__name__
                log.error(
                    "JetStream refuses an outbox message; moved to the dead table: %s",
                    reason,
                    extra={"notification": entry.message.id, "subject": entry.message.subject},
                )
                await self.outbox.bury(entry, reason)
                self.metrics.dead.inc()
                continue
            await self._acked([entry])
            done += 1
        return done

    async def _acked(self, entries: Sequence[Entry]) -> None:
        await self.outbox.remove(entries)
        self.metrics.drained.inc(len(entries))
