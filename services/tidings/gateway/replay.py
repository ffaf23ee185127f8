"""Reading a tenant's recent notifications back from JetStream, for resumes and healing.

The read is a *direct get* (``$JS.API.DIRECT.GET.<stream>``, the stream has ``allow_direct``):
no consumer is created, so neither the meta leader nor the stream leader has to answer — any
replica that holds the stream does, normally the one the gateway is connected to. A consumer
needed the meta leader for its creation, and when that node froze or died every resume on a
cold window waited out a new meta election (issue 15).

What one read returns is the window's whole reach: the newest ``max_count`` messages on the
subject filter up to ``upto``, oldest first, and the sequence the read starts at. The window is
then complete from there, so every resume of the tenant in the same wave (a reconnect storm,
the heal after a NATS loss) is answered from memory: one read per tenant per gateway, whoever
asks and in whatever order.

Direct gets are answered by any replica, and a replica may not have applied the latest writes
yet (no read-after-write, ADR-31; this server has no ``min_last_seq``). So:

- a request unanswered after 0.3 s is sent again (hedged: on a reply subject of its own, the
  first answer to end wins), in one more copy each time, and for a while after such a loss
  every request starts with two (:class:`Doubt`). nats-server hands each request to one member
  of the direct-get group at random; every replica joins it (a follower about 2 s after it is
  current), and a frozen one keeps its share until its routes' pings time out: 40 % of single
  requests went unanswered with a follower frozen (measured). A lone resend is lost again one
  time in three; in CI four in a row were, and a heal's clients waited the read's deadline and
  retry pause (2.9 s);
- a replica's store is a prefix of the stream (applied in order), so what a direct get returns
  is right but may stop early. When the direct reads end, one ``$JS.API.STREAM.MSG.GET``
  (answered by the stream leader, which holds everything up to ``upto``) asks for the next
  message on the filter after the last one read: none up to ``upto`` means the range is
  complete; one means a replica was behind, and reading goes on from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from tidings.errors import Unavailable
from tidings.gateway.retry import until_answered

log = logging.getLogger(__name__)

BATCH = 500  # messages per direct-get request
DIRECT_TIMEOUT = 0.3  # one direct-get answer; normally milliseconds
DIRECT_SENDS = 12  # copies of one direct get sent at most (over 5 periods: 1, 2, 3, 3, 3)
DIRECT_PERIODS = 8  # a direct get unanswered this many DIRECT_TIMEOUTs fails the try
MAX_COPIES = 3  # copies sent at once (one more each time a request goes unanswered)
DOUBT_HOLD = 60.0  # seconds after a lost request during which requests start with two copies
BEHIND_TRIES = 4  # reads on after the stream leader named a message the replicas lacked


class Stored(NamedTuple):
    """One message as the stream holds it."""

    seq: int
    subject: str
    data: bytes
    stamp: str  # Nats-Time-Stamp, RFC 3339


class Reach(NamedTuple):
    """What a read returned: every message on the filter with ``start <= seq <= upto``."""

    start: int
    messages: list[Stored]


class Doubt:
    """Whether a direct get went unanswered lately, shared by a gateway's reads: a frozen
    replica keeps its share of the requests until its routes give up (minutes), so for
    DOUBT_HOLD seconds after a loss every request starts with two copies (one lost in nine
    instead of three), the reads of a heal's other tenants included."""

    def __init__(self) -> None:
        self._until = 0.0

    def copies(self) -> int:
        """How many copies a request starts with."""
        return 2 if time.monotonic() < self._until else 1

    def lost(self) -> None:
        self._until = time.monotonic() + DOUBT_HOLD


class DirectReader:
    """The requests of one read, on reply subjects of its own.

    Request n replies to ``<reply>.<n>``: ``reply`` names the gateway (its first two tokens, one
    per live side) and the read, so the requests a fault causes can be counted from outside per
    gateway and per read (tests/support/jetstream_reads.py), and a late answer to a request sent
    again is told apart from the answer awaited."""

    _sent = 0  # requests so far, process-wide: every reply subject is new

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        reply: str,
        timeout: float,
        direct_timeout: float,
        doubt: Doubt | None = None,
    ) -> None:
        self.nc = nc
        self.direct = f"$JS.API.DIRECT.GET.{stream}"
        self.leader = f"$JS.API.STREAM.MSG.GET.{stream}"
        self.reply = reply
        self.timeout = timeout
        self.direct_timeout = direct_timeout
        self.requests = 0
        self.doubt = doubt if doubt is not None else Doubt()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def __aenter__(self) -> DirectReader:
        async def put(msg: Msg) -> None:
            self._queue.put_nowait(msg)

        self._sub = await self.nc.subscribe(f"{self.reply}.*", cb=put)
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception as exc:  # a dropped connection took the subscription with it
            log.debug("direct-get reply unsubscribe failed: %r", exc)

    async def _send(self, subject: str, body: dict[str, Any]) -> str:
        self.requests += 1
        DirectReader._sent += 1
        reply = f"{self.reply}.{DirectReader._sent}"
        await self.nc.publish(subject, orjson.dumps(body), reply=reply)
        return reply

    async def _next(self, reply: str, timeout: float) -> Msg:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            msg = await asyncio.wait_for(self._queue.get(), left)
            if msg.subject == reply:
                return msg  # anything else: a late answer to a request given up on

    async def batch(self, body: dict[str, Any]) -> tuple[list[Stored], int]:
        """The messages one direct get returned and how many more match after them (0 if
        none matched at all).

        Hedged: while no answer has ended, the request is sent again every ``direct_timeout``
        in one more copy than the last time (at most MAX_COPIES at once, DIRECT_SENDS in all),
        and whichever copy's answer ends first is taken — a copy routed to a frozen replica is
        never answered, and one answered late (a gateway busy with a storm) still counts."""
        answers: dict[str, list[Stored]] = {}
        now = time.monotonic()
        deadline = now + self.direct_timeout * DIRECT_PERIODS
        next_send, copies = now, self.doubt.copies()
        while True:
            now = time.monotonic()
            if len(answers) < DIRECT_SENDS and now >= next_send:
                if answers:
                    self.doubt.lost()
                    log.info("direct get unanswered; sent again", extra={"sends": len(answers)})
                for _ in range(min(copies, DIRECT_SENDS - len(answers))):
                    answers[await self._send(self.direct, body)] = []
                next_send, copies = now + self.direct_timeout, min(copies + 1, MAX_COPIES)
            until = min(deadline, next_send) if len(answers) < DIRECT_SENDS else deadline
            try:
                msg = await asyncio.wait_for(self._queue.get(), max(0.0, until - now))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise Unavailable("no replica answered a direct get in time") from None
                continue
            out = answers.get(msg.subject)
            if out is None:
                continue  # an answer to an earlier request of this read
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is None:
                out.append(_stored(headers, msg.data))
                if "Nats-Num-Pending" not in headers:  # one message asked, one answered
                    return out, 0
                continue
            if status == "204":  # end of batch
                return out, int(headers.get("Nats-Num-Pending", 0))
            if status == "404" and not out:
                return [], 0  # nothing matches from there on
            if status == "503":
                raise NoRespondersError
            description = headers.get("Description", "")
            raise Unavailable(f"direct get answered {status} {description}".strip())

    async def leader_next(self, seq: int, subject: str) -> int | None:
        """The stream leader's answer: the sequence of the first message on ``subject`` at or
        after ``seq``, None when there is none."""
        reply = await self._send(self.leader, {"seq": seq, "next_by_subj": subject})
        try:
            msg = await self._next(reply, self.timeout)
        except TimeoutError:
            raise Unavailable("the stream leader did not answer in time") from None
        answer = orjson.loads(msg.data)
        error = answer.get("error")
        if error is None:
            return int(answer["message"]["seq"])
        if error.get("code") == 404:
            return None  # no message (10037)
        raise Unavailable(f"the stream leader answered {error}")


def _stored(headers: dict[str, str], data: bytes) -> Stored:
    return Stored(
        int(headers["Nats-Sequence"]),
        headers["Nats-Subject"],
        data,
        headers.get("Nats-Time-Stamp", ""),
    )


async def _count_from(reader: DirectReader, seq: int, subject: str) -> int:
    """How many messages on ``subject`` the replica holds with a sequence ``>= seq``."""
    found, more = await reader.batch({"seq": seq, "next_by_subj": subject, "batch": 1})
    return len(found) + more


async def read_reach(reader: DirectReader, *, subject: str, upto: int, max_count: int) -> Reach:
    """The newest at most ``max_count`` messages on ``subject`` with ``seq <= upto`` (counted
    with the ones after ``upto``, which a live window holds already), and where they start."""
    if upto < 1:
        return Reach(1, [])
    first, more = await reader.batch({"seq": 1, "next_by_subj": subject, "batch": BATCH})
    start = 1
    if len(first) + more > max_count:
        # More than the bound: the smallest start from which at most max_count remain (the
        # count only falls as the start moves on), found in log2(upto) one-message requests.
        # A replica behind makes the start earlier, never later: nothing in reach is skipped.
        low, high = 2, upto + 1
        while low < high:
            mid = (low + high) // 2
            if await _count_from(reader, mid, subject) <= max_count:
                high = mid
            else:
                low = mid + 1
        start = low
        first, more = await reader.batch({"seq": start, "next_by_subj": subject, "batch": BATCH})
    out: list[Stored] = []
    batch, behind = first, 0
    while True:
        for m in batch:
            if m.seq > upto:
                return Reach(start, out)
            out.append(m)
        after = out[-1].seq + 1 if out else start
        if not (batch and more > 0 and batch[-1].seq < upto):
            # The replica that answered last had nothing more up to upto; it may be behind.
            missed = await reader.leader_next(after, subject)
            if missed is None or missed > upto:
                return Reach(start, out)
            behind += 1
            if behind > BEHIND_TRIES:
                raise Unavailable(f"the replicas answering are behind seq {missed}")
            after = missed
        batch, more = await reader.batch({"seq": after, "next_by_subj": subject, "batch": BATCH})


async def read_reach_retrying(
    open_reader: Callable[[int], DirectReader],
    *,
    subject: str,
    upto: int,
    max_count: int,
    retry_for: float,
) -> Reach:
    """:func:`read_reach`, tried again after a transient error (no replica answering, one that
    lags, a reconnect) until ``retry_for`` seconds have passed; then the last error is raised.
    ``open_reader(try)`` gives each try a reply subject of its own (a late answer to a try that
    gave up must not be read as the next one's)."""
    tries = 0

    async def one() -> Reach:
        nonlocal tries
        tries += 1
        async with open_reader(tries) as reader:
            return await read_reach(reader, subject=subject, upto=upto, max_count=max_count)

    return await until_answered(
        one,
        within=retry_for,
        what="replay read failed",
        about={"subject": subject},
    )
