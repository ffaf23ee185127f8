"""The subscriber's parts that need no gateway: refusals, retry decisions, resume rules, queue."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from tidings import protocol as p
from tidings.client.attempt import Drop, Retries
from tidings.client.backoff import Backoff
from tidings.client.buffer import Buffer
from tidings.client.cursor import Cursor
from tidings.client.errors import GaveUp, Refused, RequestRefused, gateway_error
from tidings.client.options import SubscriberOptions
from tidings.client.subscriber_events import Recovered, Reset
from tidings.codes import ErrorCode, Reconnect
from tidings.errors import BadRoom, InvalidField, error_body

FORBIDDEN = p.ErrorFrame(code="forbidden", number=211, reason="no room:hq", field="room", id=3)


def welcome(seq: int, epoch: str, *, recovered: bool) -> p.Welcome:
    return p.Welcome(
        connection="c",
        tenant="acme",
        user="alice",
        roles=(),
        rooms=("tenant",),
        seq=seq,
        epoch=epoch,
        recovered=recovered,
        expires_at=None,
    )


def note(seq: int) -> p.NotificationFrame:
    return p.NotificationFrame(
        seq=seq,
        id=f"n{seq}",
        event="incident.created",
        room="tenant",
        time="2026-01-01T00:00:00Z",
        title="t",
        message="m",
        severity="info",
        data={},
    )


# --- one reading of a gateway's refusal --------------------------------------------------------


def test_an_error_frame_answering_a_request_is_request_refused() -> None:
    error = gateway_error(FORBIDDEN)
    assert isinstance(error, RequestRefused)
    assert (error.frame, error.field) == (FORBIDDEN, "room")


def test_an_error_frame_before_a_close_is_refused_with_its_code_and_number() -> None:
    error = gateway_error(FORBIDDEN, close_code=4003)
    assert isinstance(error, Refused)
    assert (error.error, error.number, error.close_code, error.field) == (
        "forbidden",
        211,
        4003,
        "room",
    )
    assert error.error_code is ErrorCode.FORBIDDEN
    assert error.reason == "no room:hq"


def test_a_close_reason_names_the_error_when_no_frame_came() -> None:
    error = gateway_error("slow_consumer", close_code=1013)
    assert isinstance(error, Refused)
    assert (error.error, error.close_code) == ("slow_consumer", 1013)
    empty = gateway_error("", close_code=4000)
    assert isinstance(empty, Refused) and empty.error == "closed"


def test_the_http_error_body_of_a_refused_handshake_is_read_like_a_frame() -> None:
    body = error_body(ErrorCode.ORIGIN_FORBIDDEN, "origin https://evil.example")
    error = gateway_error(body, status=403)
    assert isinstance(error, Refused)
    assert (error.error, error.status, error.close_code) == ("origin_forbidden", 403, None)
    assert error.reason == "HTTP 403: origin https://evil.example"
    assert (
        str(error) == "tidings: origin_forbidden (HTTP 403): HTTP 403: origin https://evil.example"
    )
    for junk in (b"", b"not json", orjson.dumps({"error": "x"}), orjson.dumps([1])):
        plain = gateway_error(junk, status=404)
        assert isinstance(plain, Refused)
        assert (plain.error, plain.reason) == ("http_404", "HTTP 404")


# --- whether and when to retry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "how"),
    [
        (Drop(1006, "lost"), Reconnect.BACKOFF),
        (Drop(1013, "slow"), Reconnect.BACKOFF),
        (Drop(4001, "unauthorized"), Reconnect.NEW_TOKEN),
        (Drop(4003, "forbidden"), Reconnect.NEVER),
        (Drop(4999, "newer than this client"), Reconnect.NEVER),
        (Drop(None, "no route"), Reconnect.BACKOFF),
        (Drop(None, "HTTP 403", status=403), Reconnect.NEVER),
        (Drop(None, "HTTP 429", status=429), Reconnect.BACKOFF),
        (Drop(None, "HTTP 503", status=503), Reconnect.BACKOFF),
    ],
)
def test_a_drop_says_whether_retrying_can_help(drop: Drop, how: Reconnect) -> None:
    assert drop.reconnect() is how


def test_the_refusal_of_a_drop_prefers_the_error_frame() -> None:
    framed = Drop(4003, "no room:hq", error=FORBIDDEN)
    assert isinstance(framed.refusal(), Refused)
    assert framed.refusal().field == "room"
    bare = Drop(4000, "bad_request").refusal()
    assert isinstance(bare, Refused) and (bare.error, bare.close_code) == ("bad_request", 4000)


def test_retries_rotate_gateways_back_off_and_give_up() -> None:
    retries = Retries(["a", "b"], Backoff(base=1.0, max=4.0), max_attempts=3, rng=random.Random(3))
    assert retries.url == "a"
    assert 0 <= retries.after(Drop(1006, "lost")) <= 1.0
    assert (retries.url, retries.attempt, retries.failures) == ("b", 1, 1)
    assert retries.after(Drop(4029, "rate_limited")) >= 5.0  # protocol.md §12
    drained = Drop(1012, "draining", welcomed_at=0.0, reconnect_at=0.0)
    assert retries.after(drained) == 0.0  # the gateway spread it: no backoff
    assert (retries.attempt, retries.failures) == (0, 0)  # long healthy: counts start again
    retries.after(Drop(None, "down"))
    retries.after(Drop(None, "down"))
    with pytest.raises(GaveUp, match="3 attempts in a row failed; last: still down"):
        retries.after(Drop(None, "still down"))


# --- options -----------------------------------------------------------------------------------


def test_options_are_checked_and_normalised_once() -> None:
    assert SubscriberOptions(rooms=("room:a", "room:b", "room:a")).rooms == ("room:a", "room:b")
    with pytest.raises(InvalidField):
        SubscriberOptions(since=3)
    with pytest.raises(InvalidField):
        SubscriberOptions(max_pending=0)
    with pytest.raises(BadRoom):
        SubscriberOptions(rooms=("tenant",))


# --- resume rules ------------------------------------------------------------------------------


def test_a_complete_resume_is_recovered_and_duplicates_are_dropped() -> None:
    cursor = Cursor(since=10, epoch="e1")
    assert cursor.hello() == (10, "e1")
    recovered = cursor.welcomed(welcome(15, "e1", recovered=True))
    assert recovered == Recovered(since=10, epoch="e1", welcome=welcome(15, "e1", recovered=True))
    assert cursor.accept(11) and not cursor.accept(11) and not cursor.accept(5)
    assert cursor.synced(15) is None
    assert cursor.received == 15


def test_a_gateway_that_owes_a_reset_gets_one_said_for_it() -> None:
    cursor = Cursor(since=10, epoch="e1")
    cursor.hello()
    assert cursor.welcomed(welcome(40, "e1", recovered=False)) is None
    assert cursor.received == 40
    assert cursor.synced(40) == Reset(seq=40, epoch="e1", reason="unknown")
    assert cursor.synced(41) is None  # owed once


def test_another_epoch_starts_the_count_again() -> None:
    cursor = Cursor(since=900, epoch="old")
    cursor.hello()
    cursor.welcomed(welcome(3, "new", recovered=False))
    assert (cursor.epoch, cursor.received) == ("new", 3)
    reset = cursor.reset(p.Reset(seq=3, epoch="new", reason="epoch_changed"))
    assert reset == Reset(seq=3, epoch="new", reason="epoch_changed")
    assert cursor.synced(3) is None  # the reset came: nothing owed
    assert Cursor(None, None).hello() == (None, None)


# --- the queue between reader and iterator -----------------------------------------------------


async def test_a_full_buffer_pauses_the_reader_until_the_iterator_takes_one() -> None:
    buffer = Buffer(limit=2)
    await buffer.put(("e", note(1)))
    await buffer.put(("e", note(2)))
    third = asyncio.create_task(buffer.put(("e", note(3))))
    await asyncio.sleep(0.01)
    assert not third.done() and len(buffer) == 2
    item = await buffer.get()
    assert item is not None and item[1].seq == 1
    await asyncio.wait_for(third, 1)
    buffer.end(discard=False)
    assert [i[1].seq for i in [await buffer.get(), await buffer.get()] if i] == [2, 3]
    assert await buffer.get() is None


async def test_a_stopped_buffer_lets_a_waiting_reader_go() -> None:
    buffer = Buffer(limit=1)
    await buffer.put(("e", note(1)))
    waiting = asyncio.create_task(buffer.put(("e", note(2))))
    await asyncio.sleep(0.01)
    buffer.end(discard=True)
    await asyncio.wait_for(waiting, 1)
    assert len(buffer) == 0 and await buffer.get() is None
