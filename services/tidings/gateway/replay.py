"""Reading a range of the stream back from JetStream, bounded, for resumes and healing.

One ephemeral, in-memory pull consumer per range, filtered to the subjects asked for. The number
of matching messages is known before anything is read, so a range beyond the bound is refused
without reading it (the client gets ``recovered: false`` / ``reset`` instead of a partial replay).
"""

from __future__ import annotations

import contextlib

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tidings.errors import ReplayTooLarge, TidingsError

BATCH = 500


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
                raise TidingsError("JetStream did not return the replay in time") from None
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
