"""The durable outbox on its own: order, bounds, durability across reopen, exclusive use."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.errors import ConfigError, OutboxFull
from tidings.publisher.outbox import Outbox, message_size
from tidings.publishing import OutgoingMessage


def msg(n: int, *, payload: bytes = b"payload") -> OutgoingMessage:
    ident = f"id-{n:05d}"
    return OutgoingMessage(
        ident,
        f"tenant.acme.incident.created.{n}",
        payload,
        {"Nats-Msg-Id": ident, "traceparent": "00-abc-def-01"},
    )


def make(directory: Path, *, max_messages: int = 1000, max_bytes: int = 1 << 20) -> Outbox:
    return Outbox(directory, max_messages=max_messages, max_bytes=max_bytes, retry_after=9)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await make(tmp_path / "outbox").open()
    try:
        yield box
    finally:
        await box.close()


async def test_messages_come_back_verbatim_in_insertion_order(outbox: Outbox) -> None:
    sent = [msg(i) for i in range(10)]
    await outbox.append(sent[:3])
    for m in sent[3:]:
        await outbox.append([m])

    entries = await outbox.peek(100)

    assert [e.message for e in entries] == sent
    assert [e.pos for e in entries] == sorted(e.pos for e in entries)
    assert outbox.depth == 10
    assert outbox.size == sum(message_size(m) for m in sent)


async def test_concurrent_appends_keep_the_order_they_were_called_in(outbox: Outbox) -> None:
    sent = [msg(i) for i in range(200)]

    await asyncio.gather(*(outbox.append([m]) for m in sent))

    assert [e.message.id for e in await outbox.peek(500)] == [m.id for m in sent]


async def test_remove_deletes_exactly_the_acknowledged_prefix(outbox: Outbox) -> None:
    await outbox.append([msg(i) for i in range(5)])
    head = await outbox.peek(2)
    await outbox.append([msg(5)])  # arrives while the head is being published

    await outbox.remove(head)

    assert [e.message.id for e in await outbox.peek(10)] == [f"id-{i:05d}" for i in (2, 3, 4, 5)]
    assert outbox.depth == 4


async def test_full_by_count_refuses_with_retry_after_and_keeps_nothing(tmp_path: Path) -> None:
    box = await make(tmp_path, max_messages=3).open()
    try:
        await box.append([msg(0), msg(1)])
        with pytest.raises(OutboxFull) as err:
            await box.append([msg(2), msg(3)])  # all or nothing: 2 do not fit in 1 slot
        assert err.value.retry_after == 9
        assert err.value.http_status == 503
        assert box.has_room
        await box.append([msg(2)])
        assert not box.has_room
        with pytest.raises(OutboxFull):
            await box.append([msg(3)])
        assert [e.message.id for e in await box.peek(10)] == ["id-00000", "id-00001", "id-00002"]
    finally:
        await box.close()


async def test_full_by_bytes(tmp_path: Path) -> None:
    one = message_size(msg(0, payload=b"x" * 500))
    box = await make(tmp_path, max_bytes=2 * one + 10).open()
    try:
        await box.append([msg(0, payload=b"x" * 500), msg(1, payload=b"x" * 500)])
        with pytest.raises(OutboxFull):
            await box.append([msg(2, payload=b"x" * 500)])
        assert box.depth == 2
    finally:
        await box.close()


async def test_pending_messages_survive_close_and_reopen(tmp_path: Path) -> None:
    box = await make(tmp_path).open()
    await box.append([msg(i) for i in range(4)])
    await box.remove(await box.peek(1))
    await box.close()

    again = await make(tmp_path).open()
    try:
        assert again.depth == 3
        assert again.size == sum(message_size(msg(i)) for i in (1, 2, 3))
        assert [e.message for e in await again.peek(10)] == [msg(1), msg(2), msg(3)]
    finally:
        await again.close()


async def test_rows_are_on_disk_when_append_returns(tmp_path: Path) -> None:
    """Another process reads the rows while this one still holds the outbox open."""
    box = await make(tmp_path).open()
    try:
        await box.append([msg(0), msg(1)])
        script = (
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
            "print(db.execute('select count(*) from messages').fetchone()[0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "outbox.sqlite3")],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert out.stdout.strip() == "2"
    finally:
        await box.close()


async def test_a_second_outbox_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    box = await make(tmp_path).open()
    try:
        with pytest.raises(ConfigError) as err:
            await make(tmp_path).open()
        assert err.value.field == "TIDINGS_PUBLISHER_OUTBOX_DIR"
        assert "in use" in err.value.reason
        with pytest.raises(ConfigError):
            Outbox.check_directory(tmp_path)
    finally:
        await box.close()
    Outbox.check_directory(tmp_path)  # released on close


async def test_an_unusable_directory_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as err:
        await make(blocker / "outbox").open()
    assert err.value.field == "TIDINGS_PUBLISHER_OUTBOX_DIR"


async def test_bury_moves_a_refused_message_out_of_the_queue(outbox: Outbox) -> None:
    await outbox.append([msg(0), msg(1), msg(2)])
    poison = (await outbox.peek(2))[1]

    await outbox.bury(poison, "maximum payload exceeded")

    assert [e.message.id for e in await outbox.peek(10)] == ["id-00000", "id-00002"]
    assert outbox.depth == 2
    assert await outbox.dead_count() == 1


async def test_a_cancelled_append_or_remove_keeps_the_count_true(outbox: Outbox) -> None:
    """A client that disconnects mid-write must not make the count drift from the table."""
    task = asyncio.create_task(outbox.append([msg(0), msg(1)]))
    await asyncio.sleep(0)  # the insert is now running on the worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outbox.depth == len(await outbox.peek(10)) == 2

    task = asyncio.create_task(outbox.remove(await outbox.peek(1)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outbox.depth == len(await outbox.peek(10)) == 1
    assert outbox.size == message_size(msg(1))


async def test_using_a_closed_outbox_fails_loudly(tmp_path: Path) -> None:
    box = make(tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        await box.peek(1)
    await box.close()  # closing what never opened is harmless
