"""Ask every gateway one question over NATS and collect their answers (the status endpoint and
the admin API).

No gateway knows how many there are, so the asker collects answers until a quiet interval passes
without a new one (the longer of ``QUIET`` and the time the last answer took), never beyond
``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

QUIET = 0.05  # seconds without a new answer after which every gateway is taken to have answered

Answer = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def gather(nc: NATS, subject: str, question: dict[str, Any], timeout: float) -> list[Any]:
    """Every answer (a JSON object) to ``question`` published on ``subject`` within ``timeout``."""
    inbox = nc.new_inbox()
    replies: list[Any] = []
    answered = asyncio.Event()
    began = time.monotonic()
    last = 0.0  # seconds from the question to the latest answer

    async def on_reply(msg: Msg) -> None:
        nonlocal last
        with contextlib.suppress(Exception):
            reply = orjson.loads(msg.data)
            if isinstance(reply, dict):
                replies.append(reply)
                last = time.monotonic() - began
                answered.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subject, orjson.dumps(question), reply=inbox)
        deadline = began + timeout
        while (left := deadline - time.monotonic()) > 0:
            wait = left if not replies else min(left, max(QUIET, last))
            answered.clear()
            try:
                await asyncio.wait_for(answered.wait(), wait)
            except TimeoutError:
                if replies:
                    break  # quiet since the last answer: every gateway has answered
    finally:
        await sub.unsubscribe()
    return replies


async def answer_on(nc: NATS, subject: str, gateway_id: str, answer: Answer) -> None:
    """Answer every question on ``subject`` with ``answer(question)`` plus this gateway's id;
    a question that is not a JSON object, or that ``answer`` refuses (None), gets no answer."""

    async def on_request(msg: Msg) -> None:
        try:
            question = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(question, dict) or not msg.reply:
            return
        reply = await answer(question)
        if reply is not None:
            await msg.respond(orjson.dumps({"gateway": gateway_id, **reply}))

    await nc.subscribe(subject, cb=on_request)
