"""The supervisor: parts start together, stop together (newest first), and the first one that
dies is logged and reported at once instead of vanishing with its task."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tidings.errors import PartFailed
from tidings.lifecycle import Supervisor, spawn


class Forever:
    """A part that runs until cancelled, and says when it was."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name = name
        self.stopped = stopped

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped.append(self.name)


class Crashes:
    name = "crasher"

    async def run(self) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")


class Returns:
    name = "quitter"

    async def run(self) -> None:
        await asyncio.sleep(0.01)


async def test_parts_stop_newest_first_and_a_stop_is_no_failure() -> None:
    stopped: list[str] = []
    supervisor = Supervisor()
    for name in ("link", "expiry", "api"):
        supervisor.start(Forever(name, stopped))
    await asyncio.sleep(0)
    assert supervisor.names == ["link", "expiry", "api"]
    await supervisor.stop()
    assert stopped == ["api", "expiry", "link"]
    assert supervisor.failure is None
    assert not supervisor.failed().done()


async def test_a_part_that_raises_is_logged_and_reported_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[PartFailed] = []
    stopped: list[str] = []
    supervisor = Supervisor(on_failure=reported.append)
    supervisor.start(Forever("keepalive", stopped))
    supervisor.start(Crashes())
    with caplog.at_level(logging.ERROR, logger="tidings.lifecycle"):
        failure = await asyncio.wait_for(supervisor.failed(), 5)
    assert isinstance(failure, PartFailed)
    assert "crasher failed: RuntimeError: boom" in failure.reason
    assert reported == [failure]
    assert supervisor.failure is failure
    (record,) = [r for r in caplog.records if r.message == "part failed"]
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])
    assert supervisor.names == ["keepalive"]  # the others run until stopped
    await supervisor.stop()
    assert stopped == ["keepalive"]


async def test_a_part_that_returns_is_a_failure_too(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()
    supervisor.start(Returns())
    with caplog.at_level(logging.ERROR, logger="tidings.lifecycle"):
        failure = await asyncio.wait_for(supervisor.failed(), 5)
    assert failure.reason == "quitter stopped unexpectedly"
    assert any(r.message == "part stopped unexpectedly" for r in caplog.records)
    await supervisor.stop()


async def test_watch_gives_up_a_wait_when_a_part_dies() -> None:
    supervisor = Supervisor()
    supervisor.start(Crashes())
    with pytest.raises(PartFailed, match="boom"):
        await supervisor.watch(asyncio.Event().wait())
    await supervisor.stop()


async def test_watch_returns_what_the_wait_returns() -> None:
    supervisor = Supervisor()
    supervisor.start(Forever("link", []))
    assert await supervisor.watch(asyncio.sleep(0.01, result=7)) == 7
    await supervisor.stop()


async def test_a_background_step_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def step() -> None:
        raise ValueError("lost resume")

    with caplog.at_level(logging.ERROR, logger="tidings.lifecycle"):
        task = spawn(step())
        with pytest.raises(ValueError, match="lost resume"):
            await task
        await asyncio.sleep(0)
    assert any(r.message == "background step failed" for r in caplog.records)


class SwallowsOneCancel:
    """A part whose library loses the first cancellation (nats-py's first connect to a dead
    server did, on Python 3.11) and goes on waiting."""

    name = "stubborn"

    def __init__(self) -> None:
        self.cancels = 0

    async def run(self) -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancels += 1
                if self.cancels > 1:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_a_part_that_swallows_a_cancel_is_cancelled_again() -> None:
    supervisor = Supervisor()
    part = SwallowsOneCancel()
    supervisor.start(part)
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(), timeout=10)
    assert part.cancels == 2
    assert supervisor.names == []
