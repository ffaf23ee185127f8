"""The one NATS-connection supervision (publisher and gateway) against a real nats-server:
steps after a loss and after every (re)connect run as a part of the lifecycle, in order, and a
failing step is retried instead of vanishing inside nats-py's callback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.waiting import until as wait_until
from tidings.dev.embedded import EmbeddedNats
from tidings.errors import Unavailable
from tidings.lifecycle import Supervisor
from tidings.nats_link import LinkState, NatsLink
from tidings.settings import NatsSettings


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    running = Supervisor()
    try:
        yield running
    finally:
        await running.stop()


async def test_steps_follow_every_loss_and_reconnect_in_order(
    nats_server: EmbeddedNats, nats_settings: NatsSettings, supervisor: Supervisor
) -> None:
    link = NatsLink(nats_settings)
    seen: list[str] = []

    async def up() -> None:
        seen.append("up")

    link.on_up(up)
    link.on_down(lambda: seen.append("down"))
    supervisor.start(link)
    await asyncio.wait_for(link.wait_connected(), 10)
    await wait_until(lambda: seen == ["up"], timeout=5, what="the step after the connect")
    assert link.state is LinkState.CONNECTED
    lost = link.lost()
    await asyncio.to_thread(nats_server.stop)
    await asyncio.wait_for(lost, 10)  # a publish in flight can give up at once
    await wait_until(lambda: seen == ["up", "down"], timeout=10, what="the step after the loss")
    assert link.state.value == "reconnecting"
    with pytest.raises(Unavailable):
        _ = link.js
    await asyncio.to_thread(nats_server.start)
    await wait_until(lambda: seen == ["up", "down", "up"], timeout=15, what="the heal")
    assert link.connected
    assert supervisor.failure is None


async def test_a_failing_step_is_retried_until_it_succeeds(
    nats_settings: NatsSettings, supervisor: Supervisor
) -> None:
    link = NatsLink(nats_settings)
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise RuntimeError("the re-arm failed")

    link.on_up(flaky)
    supervisor.start(link)
    await wait_until(lambda: len(attempts) == 3, timeout=10, what="three attempts")
    await asyncio.sleep(0.5)
    assert len(attempts) == 3  # done once it succeeded
    assert supervisor.failure is None  # a failing step is retried, not fatal


async def test_a_failing_loss_step_is_a_bug_that_stops_the_process(
    nats_server: EmbeddedNats, nats_settings: NatsSettings, supervisor: Supervisor
) -> None:
    link = NatsLink(nats_settings)

    def broken() -> None:
        raise RuntimeError("cannot disarm")

    link.on_down(broken)
    supervisor.start(link)
    await asyncio.wait_for(link.wait_connected(), 10)
    await asyncio.to_thread(nats_server.stop)
    failure = await asyncio.wait_for(supervisor.failed(), 10)
    assert "nats-link failed: RuntimeError: cannot disarm" in failure.reason


async def test_it_starts_while_nats_is_down_and_connects_when_it_comes(
    nats_server: EmbeddedNats, nats_settings: NatsSettings, supervisor: Supervisor
) -> None:
    await asyncio.to_thread(nats_server.stop)
    link = NatsLink(nats_settings)
    supervisor.start(link)
    await asyncio.sleep(0.5)
    assert link.state is LinkState.CONNECTING
    assert link.lost().done()  # down: nothing in flight should wait on it
    await asyncio.to_thread(nats_server.start)
    await asyncio.wait_for(link.wait_connected(), 15)
    assert (await link.client.request("$JS.API.INFO", b"", timeout=5)).data


async def test_stopping_closes_the_connection(
    nats_settings: NatsSettings, supervisor: Supervisor
) -> None:
    link = NatsLink(nats_settings)
    supervisor.start(link)
    await asyncio.wait_for(link.wait_connected(), 10)
    client = link.client
    await supervisor.stop()
    assert link.state is LinkState.CLOSED
    assert client.is_closed
    assert supervisor.failure is None
