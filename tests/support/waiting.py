"""Bounded polling waits: a test waits for the event it needs, never for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

T = TypeVar("T")


async def until(
    check: Callable[[], object | Awaitable[object]],
    *,
    what: str,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` (plain or async) without blocking the loop until it is true; else fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        await asyncio.sleep(interval)


async def at_server(nc: NATS) -> None:
    """Every SUB ``nc`` has queued is at the server. ``nc.flush()`` does not say so: nats-py
    writes its PING straight to the socket, ahead of what its pending buffer (where SUBs wait
    for the flusher) still holds, so the PONG can come before a SUB was sent (decision 62). A
    message ``nc`` sends itself leaves after them: once it comes back, the server has them all."""
    back = asyncio.get_running_loop().create_future()

    async def came(msg: Msg) -> None:
        if not back.done():
            back.set_result(None)

    probe = await nc.subscribe(nc.new_inbox(), cb=came)
    await nc.publish(probe.subject, b"")
    await asyncio.wait_for(back, 10)
    await probe.unsubscribe()


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Blocking form for synchronous tests (dev stack, browser): returns the first true value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s: {what}")
