"""Batches from a durable pull consumer: one request per batch, the messages collected by a
subscription callback.

nats-py's ``PullSubscription.fetch`` awaits each message of a batch with its own timeout (a task
and a timer per message): at 5,000 notifications/s that was the largest part of the writer's
CPU. Here a batch is one ``CONSUMER.MSG.NEXT`` request with ``no_wait`` (what is waiting, up to
the batch size, then a status ends it); only when nothing waits does one long-poll request for
a single message wait up to ``timeout``, and the ``no_wait`` request follows for the rest.

Each request has its own reply subject, so a status ending an earlier request (a long poll
that expired late) never cuts a later one short; a message answering an earlier request is a
delivery like any other and goes into the next batch (it is acked with it).
"""

from __future__ import annotations

import asyncio
import itertools

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError

from tidings.errors import Unavailable

_MARGIN = 2.0  # seconds beyond a request's own expiry before the server is deemed gone
_ENDS = ("404", "408")  # no messages; the request expired (or was satisfied in part)


class Pull:
    """Fetch batches of a durable consumer of ``stream`` over ``nc``."""

    def __init__(self, nc: NATS, stream: str, durable: str, *, api_prefix: str = "$JS.API"):
        self.nc = nc
        self.subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._numbers = itertools.count(1)
        self._current = ""  # reply subject of the request being waited for
        self._want = 0
        self._msgs: list[Msg] = []
        self._done = asyncio.Event()
        self._failure: Exception | None = None

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._msgs.append(msg)
            if len(self._msgs) >= self._want:
                self._done.set()
            return
        if msg.subject != self._current:
            return  # the end of an earlier request
        if status in _ENDS:
            self._done.set()
        elif status != "100":  # 409 (consumer deleted, leadership change, …), 503
            described = (msg.headers.get("Description", "") if msg.headers else "").splitlines()
            why = described[0].strip() if described else ""
            if status == "503" and not why:
                why = "no responders: JetStream or the consumer is not there"
            self._failure = Unavailable(f"pull request refused: {status} {why}".strip())
            self._done.set()

    async def _request(self, body: dict[str, object], wait: float) -> None:
        self._current = f"{self._inbox}.{next(self._numbers)}"
        self._done.clear()
        self._failure = None
        await self.nc.publish(self.subject, orjson.dumps(body), reply=self._current)
        try:
            async with asyncio.timeout(wait):
                await self._done.wait()
        except TimeoutError:
            pass  # a server that does not answer: the caller sees what arrived, or nothing
        failure, self._failure = self._failure, None
        if failure is not None and not self._msgs:
            raise failure

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages: those waiting now, else the first to come within
        ``timeout`` and those waiting behind it; :class:`NatsTimeoutError` if none came."""
        if self._sub is None:
            raise Unavailable("the pull subscription is not started")
        self._want = batch
        if len(self._msgs) < batch:
            await self._request({"batch": batch - len(self._msgs), "no_wait": True}, _MARGIN)
        if not self._msgs:
            expires = int(timeout * 1_000_000_000)
            self._want = 1
            await self._request({"batch": 1, "expires": expires}, timeout + _MARGIN)
            if not self._msgs:
                raise NatsTimeoutError
            self._want = batch
            if len(self._msgs) < batch:
                await self._request({"batch": batch - len(self._msgs), "no_wait": True}, _MARGIN)
        msgs, self._msgs = self._msgs[:batch], self._msgs[batch:]
        return msgs
