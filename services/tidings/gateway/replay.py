"""Reading a range of the stream back from JetStream, bounded, for resumes and healing.

One ephemeral, in-memory pull consumer per range, filtered to the subjects asked for. The number
of matching messages is known before anything is read, so a range beyond the bound is refused
without reading it (the client gets ``recovered: false`` / ``reset`` instead of a partial replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from tidings.errors import ReplayTooLarge, Unavailable

log = logging.getLogger(__name__)

BATCH = 500
RETRY_PAUSE = 0.5  # between tries of a read that failed transiently

# What a stream leader election (or a reconnect) answers for a while: worth another try.
TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    Unavailable,
)


async def fetch_range_retrying(
    js: JetStreamContext,
    *,
    stream: str,
    subjects: list[str],
    start: int,
    upto: int,
    max_count: int,
    timeout: float,
    retry_for: float,
) -> list[Msg]:
    """:func:`fetch_range`, tried again after a transient error (a leader election, a JetStream
    answer that did not come in time) until ``retry_for`` seconds have passed; then the last
    error is raised. :class:`ReplayTooLarge` is final at once."""
    deadline = time.monotonic() + retry_for
    tries = 0
    while True:
        tries += 1
        try:
            return await fetch_range(
                js,
                stream=stream,
                subjects=subjects,
                start=start,
                upto=upto,
                max_count=max_count,
                timeout=timeout,
            )
        except TRANSIENT as exc:
            if time.monotonic() + RETRY_PAUSE >= deadline:
                raise
            log.warning(
                "replay read failed, retrying",
                extra={"subjects": subjects, "try": tries, "error": repr(exc)},
            )
        await asyncio.sleep(RETRY_PAUSE)


async def fetch_range(
    js: JetStreamContext,
    *,
    stream: str,
    subjects: list[str],
    start: int,
    upto: int,
    max_count: int,
    timeout: float,
) -> list[Msg]:
    """Messages on ``subjects`` with ``start <= seq <= upto``, oldest first.

    Raises :class:`ReplayTooLarge` when more than ``max_count`` messages match from ``start`` on.
    """
    if upto < start:
        return []
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        filter_subjects=subjects,
        inactive_threshold=30.0,
        mem_storage=True,
        num_replicas=1,
        max_ack_pending=-1,
    )
    sub = await js.pull_subscribe("", stream=stream, config=config)
    try:
        info = await sub.consumer_info()
        pending = info.num_pending or 0
        if pending > max_count:
            raise ReplayTooLarge(f"{pending} notifications to replay; the bound is {max_count}")
        out: list[Msg] = []
        while pending > 0:
            try:
                batch = await sub.fetch(min(BATCH, pending), timeout=timeout)
            except (TimeoutError, NatsTimeoutError):
                raise Unavailable("JetStream did not return the replay in time") from None
            for msg in batch:
                meta = msg.metadata
                if meta.sequence.stream > upto:
                    return out
                out.append(msg)
                pending = meta.num_pending
                if meta.sequence.stream == upto:
                    return out
        return out
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
