"""The writer's pull of a durable consumer (``tidings.inbox.pull``) against a real nats-server:
what waits comes in one batch, nothing waiting is a timeout after the long poll, a deleted
consumer is a precise error (the writer binds again)."""

from __future__ import annotations

import time

import pytest
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from tests.support.inbox import publish_requests, request
from tidings.errors import Unavailable
from tidings.inbox.pull import Pull


async def test_a_batch_is_what_waits_then_a_long_poll_then_a_precise_error(
    nc: NATS, js: JetStreamContext
) -> None:
    config = ConsumerConfig(durable_name="pulled", ack_policy=AckPolicy.EXPLICIT)
    await js.add_consumer("TIDINGS", config)
    pull = Pull(nc, "TIDINGS", "pulled")
    await pull.start()
    try:
        await publish_requests(js, [request(i) for i in range(25)])
        first = await pull.fetch(10, 1.0)
        rest = await pull.fetch(100, 1.0)  # fewer waiting than asked: no wait for the rest
        assert [m.metadata.sequence.stream for m in first + rest] == list(range(1, 26))
        for msg in first + rest:
            await msg.ack()

        began = time.monotonic()
        with pytest.raises(NatsTimeoutError):
            await pull.fetch(10, 0.3)
        assert 0.25 <= time.monotonic() - began < 2.0

        await publish_requests(js, [request(25)])
        late = await pull.fetch(10, 2.0)  # the long poll's one, then what waits behind it
        assert [m.metadata.sequence.stream for m in late] == [26]
        await late[0].ack()

        await js.delete_consumer("TIDINGS", "pulled")
        with pytest.raises(Unavailable, match=r"pull request refused: (409|503) \w"):
            await pull.fetch(10, 0.5)
    finally:
        await pull.stop()
