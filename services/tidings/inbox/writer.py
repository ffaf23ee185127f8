"""The inbox writer: a durable JetStream pull consumer feeding the store, exactly once.

Each round fetches up to ``batch_size`` messages (as many as are waiting: under load batches
fill up, idle it long-polls for ``fetch_timeout``), turns them into rows or dead letters
(:mod:`tidings.inbox.rows`), commits them in one transaction and only then acks them. Whatever
dies where, nothing is lost or doubled:

* the writer dies before the commit: nothing was acked, JetStream redelivers after ``ack_wait``;
* it dies after the commit, before the acks: the redelivered messages hit the unique keys
  (id; epoch + sequence) and are ignored;
* the database is down: the batch is retried with backoff (kept "in progress" so JetStream does
  not hand it to another writer meanwhile), then acked; the consumer holds the rest;
* several writers share the durable consumer: JetStream hands each message to one of them, and
  the unique keys settle a redelivery that races.

Binding the consumer is an ``on_up`` step of the :class:`NatsLink`, so a writer whose NATS
connection was replaced binds again. The writer is a :class:`~tidings.lifecycle.Part`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.pull import Pull
from tidings.inbox.rows import Rejected, StreamMessage, dead_row, notification_row
from tidings.inbox.store import Progress, Store, WriteResult
from tidings.nats import stream_epoch
from tidings.nats_link import NatsLink
from tidings.settings import InboxSettings

log = logging.getLogger(__name__)

_RETRY_FIRST = 0.2  # seconds before the first retry of a batch the database refused
_RETRY_MAX = 5.0
_ISOLATE_AFTER = 3  # failures of one batch, the database answering, before row by row
PROGRESS_EVERY = 0.2  # seconds between two questions for the consumer's ack floor
PRUNE_AFTER = 3600.0  # seconds without an update before a gone writer's progress is dropped


def writer_name() -> str:
    """This writer's name in ``inbox_progress``: the host (a pod's name) and the process."""
    return f"{socket.gethostname()[:50]}-{os.getpid()}"[:64]


def position(msg: Msg) -> tuple[int, int]:
    """``(stream sequence, pending)`` of a JetStream message, read from its reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``, or with a
    domain and an account hash after ``ACK``) without building its whole metadata."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[10])
    meta = msg.metadata
    return meta.sequence.stream, meta.num_pending


class InboxWriter:
    """Moves notifications from the stream into the store; runs until cancelled."""

    name = "inbox-writer"

    def __init__(
        self,
        link: NatsLink,
        store: Store,
        metrics: InboxMetrics,
        settings: InboxSettings,
        *,
        stream: str,
    ) -> None:
        self.link = link
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.stream = stream
        self.epoch = ""
        self._sub: Pull | None = None
        self._bound = asyncio.Event()
        self.batches = 0  # committed batches
        self.last_sequence = 0  # highest stream sequence committed and acked
        self.writer = writer_name()
        self.recorded = 0  # the ack floor last recorded in inbox_progress
        self._recorded_epoch = ""  # the epoch of this writer's inbox_progress row, if any
        self._asked = -PROGRESS_EVERY  # when the ack floor was last asked for
        self._pruned = False
        link.on_up(self.bind)
        link.on_down(self.unbind)

    @property
    def ready(self) -> bool:
        """Bound to its consumer on a live connection."""
        return self._bound.is_set() and self.link.connected

    async def bind(self) -> None:
        """Create (or update) the durable consumer and bind a pull subscription to it."""
        js = self.link.js
        info = await js.stream_info(self.stream)
        epoch = stream_epoch(info)
        if epoch != self.epoch:
            self.recorded = 0  # a new stream: its sequences start again
        self.epoch = epoch
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.settings.durable,
                description="Tidings inbox writers",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait,
                max_deliver=-1,  # never give up on a message: the database comes back
                max_ack_pending=max(1000, 4 * self.settings.batch_size),
            ),
        )
        old, self._sub = self._sub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        pull = Pull(self.link.client, self.stream, self.settings.durable)
        await pull.start()
        self._sub = pull
        self._bound.set()
        log.info("inbox writer bound", extra={"consumer": self.settings.durable})

    def unbind(self) -> None:
        self._bound.clear()

    async def run(self) -> None:
        """Fetch and decode the next batch while the previous one is being committed (the
        database's wait overlaps this process's work); a batch's commit starts only after the
        previous one is committed and acked, so at most two batches are unacked at once."""
        storing: asyncio.Future[WriteResult] | None = None
        try:
            while True:
                msgs = await self.fetch()
                if not msgs:
                    if storing is not None:
                        await storing
                        storing = None
                    await self.settle()
                    continue
                batch = self.decode(msgs)
                if storing is not None:
                    await storing
                storing = asyncio.ensure_future(self.commit(msgs, batch))
        finally:
            if storing is not None and not storing.done():
                storing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await storing

    async def fetch(self) -> list[Msg]:
        """The next batch (up to ``batch_size``; empty after ``fetch_timeout`` idle)."""
        await self._bound.wait()
        sub = self._sub
        if sub is None:
            self._bound.clear()
            return []
        try:
            msgs = await sub.fetch(self.settings.batch_size, self.settings.fetch_timeout)
        except NatsTimeoutError:
            return []  # nothing waiting
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The connection dropped mid-fetch, or the consumer is gone (stream recreated):
            # wait for the link and bind again.
            log.warning("inbox fetch failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.link.settings.reconnect_wait or 0.5)
            if self.link.connected:
                with contextlib.suppress(Exception):
                    await self.bind()
            return []
        return msgs

    async def handle(self, msgs: list[Msg]) -> WriteResult:
        """Store one fetched batch (retrying until the database takes it), then ack it."""
        return await self.commit(msgs, self.decode(msgs))

    def decode(self, msgs: list[Msg]) -> Batch:
        """The batch's rows and dead letters (nothing written yet)."""
        batch = Batch()
        for msg in msgs:
            seq, batch.pending = position(msg)
            item = StreamMessage(self.epoch, seq, msg.subject, msg.data)
            batch.last_seq = max(batch.last_seq, item.seq)
            try:
                batch.rows.append(notification_row(item))
                batch.kept.append(item)
            except Rejected as why:
                batch.reject(item, why)
        return batch

    async def commit(self, msgs: list[Msg], batch: Batch) -> WriteResult:
        """Commit a decoded batch (retrying until the database takes it), then ack it."""
        progress = await self._progress()
        result, reasons = await self._commit(msgs, batch, progress)
        if progress is not None:
            self.recorded = max(self.recorded, progress.upto)
            self._recorded_epoch = progress.epoch
        for msg in msgs:
            try:
                await msg.ack()
            except Exception as exc:  # lost with the connection: redelivered, then ignored
                log.warning("ack failed (the message will be redelivered): %s", exc)
                break
        m = self.metrics
        m.stored.inc(result.stored)
        m.duplicates.inc(result.duplicates)
        for reason in reasons:
            m.dead.labels(reason).inc()
        m.batch_size.observe(len(msgs))
        self.last_sequence = max(self.last_sequence, batch.last_seq)  # redeliveries come late
        m.last_sequence.set(self.last_sequence)
        m.pending.set(batch.pending)
        self.batches += 1
        return result

    async def _ack_floor(self) -> int | None:
        """The consumer's ack floor: every message up to it was acked, so committed first."""
        try:
            info = await self.link.js.consumer_info(self.stream, self.settings.durable)
        except Exception as exc:
            log.debug("consumer info failed: %s", exc)
            return None
        return int(info.ack_floor.stream_seq) if info.ack_floor else 0

    async def _progress(self) -> Progress | None:
        """What to record with the next batch: the ack floor, asked at most every
        ``PROGRESS_EVERY`` (counts include up to the recorded bound; docs/inbox.md). The first
        batch of an epoch always records one (0 if NATS does not say): rows a writer stored
        are then never taken for rows without a writer's bound (``queries.counted_upto``)."""
        first = self._recorded_epoch != self.epoch
        now = time.monotonic()
        if not first and now - self._asked < PROGRESS_EVERY:
            return None
        self._asked = now
        floor = await self._ack_floor()
        if first:
            return Progress(self.writer, self.epoch, max(floor or 0, self.recorded))
        if floor is None or floor <= self.recorded:
            return None
        return Progress(self.writer, self.epoch, floor)

    async def settle(self) -> None:
        """Nothing waiting: record the ack floor once it covers what this writer stored (the
        last batch's acks were still on their way when it was committed), and drop the
        progress of writers gone for ``PRUNE_AFTER``."""
        settled = self._recorded_epoch == self.epoch and self.recorded >= self.last_sequence
        if (settled and self._pruned) or not self.epoch:
            return
        with contextlib.suppress(Exception):
            await self.link.client.flush()  # our acks reach the server before the question
        floor = await self._ack_floor()
        if floor is None:
            return
        try:
            if floor > self.recorded or not settled:
                upto = max(floor, self.recorded)
                await self.store.record(Progress(self.writer, self.epoch, upto))
                self.recorded, self._recorded_epoch = upto, self.epoch
            if not self._pruned:
                await self.store.prune_progress(self.writer, PRUNE_AFTER)
                self._pruned = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the next idle round tries again
            log.debug("inbox progress not recorded: %s", exc)

    async def refresh_lag(self) -> None:
        """Ask JetStream how far behind the consumer is (while no batch reports it)."""
        try:
            info = await self.link.js.consumer_info(self.stream, self.settings.durable)
        except Exception as exc:
            log.debug("consumer info failed: %s", exc)
            return
        self.metrics.pending.set(info.num_pending or 0)

    async def _commit(
        self, msgs: list[Msg], batch: Batch, progress: Progress | None = None
    ) -> tuple[WriteResult, list[str]]:
        """Write the batch, retrying with backoff while the database fails. A batch that keeps
        failing while the database answers holds a row it refuses: then write row by row and
        keep the refused one as a dead letter, so one bad row never stalls the consumer."""
        delay = _RETRY_FIRST
        failures = 0
        while True:
            started = time.perf_counter()
            try:
                if failures >= _ISOLATE_AFTER and await self.store.reachable():
                    result, refused = await self._row_by_row(batch, progress)
                    return result, batch.reasons + refused
                result = await self.store.write(batch.rows, batch.dead, progress)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.metrics.store_errors.inc()
                log.warning(
                    "the inbox database did not take a batch; retrying in %.1fs: %s: %s",
                    delay,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                await self.refresh_lag()  # the stream keeps growing meanwhile: show it
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                for msg in msgs:  # keep them ours: no redelivery to another writer meanwhile
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                continue
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            return result, batch.reasons

    async def _row_by_row(
        self, batch: Batch, progress: Progress | None
    ) -> tuple[WriteResult, list[str]]:
        """Each row alone; a row the (answering) database refuses becomes a dead letter.
        Interrupted, it is simply run again: rows already written are ignored the second time."""
        stored = duplicates = 0
        dead = list(batch.dead)
        refused: list[str] = []
        for row, item in zip(batch.rows, batch.kept, strict=True):
            try:
                done = await self.store.write([row])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not await self.store.reachable():
                    raise  # the database went away meanwhile: back to retrying the batch
                why = Rejected("refused", f"{type(exc).__name__}: {exc}".splitlines()[0])
                log.error(
                    "the inbox database refused a notification; kept in dead_letters",
                    extra={"seq": item.seq, "subject": item.subject, "reason": str(why)},
                )
                dead.append(dead_row(item, why))
                refused.append(why.reason)
                continue
            stored += done.stored
            duplicates += done.duplicates
        kept = await self.store.write([], dead, progress)
        return WriteResult(stored, duplicates, kept.dead), refused


@dataclass(slots=True)
class Batch:
    """One fetch, decoded: rows with their messages, and the dead letters with their reasons."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    kept: list[StreamMessage] = field(default_factory=list)  # the message of each row
    dead: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    last_seq: int = 0
    pending: int = 0  # messages the consumer still held when the last one was delivered

    def reject(self, item: StreamMessage, why: Rejected) -> None:
        log.warning(
            "not a notification; kept in dead_letters",
            extra={"seq": item.seq, "subject": item.subject, "reason": str(why)},
        )
        self.dead.append(dead_row(item, why))
        self.reasons.append(why.reason)
