"""jspub, the bench's compiled JetStream publisher, writes what the SDK would have published.

``jspub --dump N`` prints the first N HPUB operations of step 0 exactly as it would write them
to nats-server; each one is parsed here as the server and the gateway would read it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from tidings.bench.layout import TENANT_SLOT, USER_SLOT, Layout
from tidings.bench.loadgen import JSPUB_SOURCE, build
from tidings.bench.publish import Pacer, envelope, write_targets
from tidings.envelope import Notification
from tidings.gateway.live import wire_line
from tidings.subjects import LIVE_PREFIX


@dataclass
class Hpub:
    subject: str
    reply: str
    headers: dict[str, str]
    payload: bytes


@pytest.fixture(scope="module")
def jspub() -> Path:
    return build(source=JSPUB_SOURCE)


def parse_hpubs(raw: bytes) -> list[Hpub]:
    """Split a byte stream of `HPUB subject reply hdr_len total_len` operations, checking sizes."""
    out: list[Hpub] = []
    pos = 0
    while pos < len(raw):
        eol = raw.index(b"\r\n", pos)
        op, subject, reply, hdr_len, total_len = raw[pos:eol].decode().split(" ")
        assert op == "HPUB"
        body = raw[eol + 2 : eol + 2 + int(total_len)]
        assert len(body) == int(total_len)
        pos = eol + 2 + int(total_len)
        assert raw[pos : pos + 2] == b"\r\n"
        pos += 2
        head = body[: int(hdr_len)].decode()
        assert head.startswith("NATS/1.0\r\n") and head.endswith("\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:-2])
        out.append(Hpub(subject, reply, headers, body[int(hdr_len) :]))
    return out


def dump(jspub: Path, tmp_path: Path, layout: Layout, n: int, worker: int = 0) -> list[Hpub]:
    targets = write_targets(tmp_path / "targets.txt", layout, worker, 2)
    argv = [str(jspub), "--dump", str(n), repr(layout.user_share), str(targets)]
    return parse_hpubs(subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout)


def test_dumped_messages_are_the_sdk_envelope_with_fresh_id_and_data(
    jspub: Path, tmp_path: Path
) -> None:
    layout = Layout(clients=20, rooms=4, user_share=0.25)
    before = time.monotonic_ns()
    msgs = dump(jspub, tmp_path, layout, 40, worker=1)
    after = time.monotonic_ns()
    assert len(msgs) == 40

    inbox = msgs[0].reply.rsplit(".", 1)[0]
    assert inbox.startswith("_INBOX.")
    assert [m.reply for m in msgs] == [f"{inbox}.{i}" for i in range(40)]
    ids = [m.headers["Nats-Msg-Id"] for m in msgs]
    assert len(set(ids)) == 40
    for m, pacer_target in zip(msgs, targets_of(msgs), strict=True):
        n = Notification.from_bytes(m.payload)
        assert m.headers == {"Nats-Msg-Id": n.id, "Nats-Expected-Stream": "TIDINGS"}
        assert len(n.id) == 36 and uuid.UUID(n.id).version == 7
        slot, number = pacer_target
        want_msg = envelope((slot, number), layout.rooms)
        want = Notification.from_bytes(want_msg.payload)
        assert m.subject == want_msg.subject
        assert (n.tenant, n.audience, n.event, n.title, n.message, n.severity) == (
            want.tenant,
            want.audience,
            want.event,
            want.title,
            want.message,
            want.severity,
        )
        assert abs(n.time - want.time) < timedelta(seconds=60)  # built once, before the dump
        data = orjson.loads(n.data)
        assert list(data) == ["k", "s", "i", "t"]
        assert (data["k"], data["s"]) == (0, slot)
        assert before < data["t"] < after  # CLOCK_MONOTONIC, the clock wsload reads
        # the gateway turns its republished copy into a wire line with this id and data
        tenant, room, decoded, line = wire_line(f"{LIVE_PREFIX}.{m.subject}", m.payload, 7)
        assert (tenant, decoded.id, decoded.data) == (n.tenant, n.id, n.data)
        assert room == ("tenant" if slot == TENANT_SLOT else f"user:u{number}")
        assert n.id.encode() in line and n.data in line


def targets_of(msgs: list[Hpub]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for m in msgs:
        n = Notification.from_bytes(m.payload)
        slot = USER_SLOT if n.audience.name else TENANT_SLOT
        out.append((slot, int((n.audience.name or n.tenant or "")[1:])))
    return out


def test_pacing_order_and_indexes_match_the_python_publisher(jspub: Path, tmp_path: Path) -> None:
    """Same targets in the same order with the same gap-free index: results stay comparable."""
    layout = Layout(clients=30, rooms=6, user_share=0.3)
    msgs = dump(jspub, tmp_path, layout, 200)
    pacer = Pacer(layout, 0, 2, pad=0)
    expected = []
    for _ in range(200):
        (slot, number), data = pacer.next(0)
        expected.append((slot, number, orjson.loads(data)["i"]))
    got = []
    for m, (slot, number) in zip(msgs, targets_of(msgs), strict=True):
        got.append((slot, number, orjson.loads(Notification.from_bytes(m.payload).data)["i"]))
    assert got == expected
    assert {s for s, _, _ in got} == {TENANT_SLOT, USER_SLOT}


def test_core_mode_publishes_the_python_publishers_payload_to_the_peers_subjects(
    jspub: Path, tmp_path: Path
) -> None:
    """jspub's core NATS mode (the ``nats`` peer): ``PUB`` of the padded data object to
    ``bench.t.N`` / ``bench.u.N``, in the Python publisher's order, with its indexes."""
    layout = Layout(clients=30, rooms=6, user_share=0.3)
    targets = write_targets(tmp_path / "targets.txt", layout, 0, 2, backend="nats")
    argv = [str(jspub), "--dump", "200", repr(layout.user_share), str(targets), "250"]
    before = time.monotonic_ns()
    raw = subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout
    after = time.monotonic_ns()
    pacer = Pacer(layout, 0, 2, pad=250)
    pos = 0
    for _ in range(200):
        (slot, number), want = pacer.next(0)
        eol = raw.index(b"\r\n", pos)
        op, subject, size = raw[pos:eol].decode().split(" ")
        payload = raw[eol + 2 : eol + 2 + int(size)]
        pos = eol + 2 + int(size)
        assert raw[pos : pos + 2] == b"\r\n"
        pos += 2
        assert op == "PUB"
        assert subject == (f"bench.t.{number}" if slot == TENANT_SLOT else f"bench.u.{number}")
        data, expected = orjson.loads(payload), orjson.loads(want)
        assert before < data.pop("t") < after
        expected.pop("t")
        assert data == expected and len(expected["p"]) == 250  # same padding as Python's
    assert pos == len(raw)


def test_redis_mode_publishes_the_python_publishers_message_to_the_socketio_rooms(
    jspub: Path, tmp_path: Path
) -> None:
    """jspub's Redis mode (the Socket.IO peers): RESP ``PUBLISH bench {"r":ROOM,"d":DATA}``
    with the Python publisher's rooms, order, indexes and padding."""
    layout = Layout(clients=30, rooms=6, user_share=0.3)
    targets = write_targets(tmp_path / "targets.txt", layout, 1, 2, backend="redis")
    argv = [str(jspub), "--dump", "200", repr(layout.user_share), str(targets), "250"]
    before = time.monotonic_ns()
    raw = subprocess.run([*argv, "redis:bench"], capture_output=True, check=True, timeout=30)
    after = time.monotonic_ns()
    pacer = Pacer(layout, 1, 2, pad=250)
    pos = 0

    def bulk() -> bytes:
        nonlocal pos
        eol = raw.stdout.index(b"\r\n", pos)
        assert raw.stdout[pos : pos + 1] == b"$"
        size = int(raw.stdout[pos + 1 : eol])
        value = raw.stdout[eol + 2 : eol + 2 + size]
        assert len(value) == size and raw.stdout[eol + 2 + size : eol + 4 + size] == b"\r\n"
        pos = eol + 4 + size
        return value

    for _ in range(200):
        (slot, number), want = pacer.next(0)
        assert raw.stdout[pos : pos + 4] == b"*3\r\n"
        pos += 4
        assert (bulk(), bulk()) == (b"PUBLISH", b"bench")
        message = orjson.loads(bulk())
        assert message["r"] == (f"t{number}" if slot == TENANT_SLOT else f"u{number}")
        data, expected = message["d"], orjson.loads(want)
        assert before < data.pop("t") < after
        expected.pop("t")
        assert data == expected and len(expected["p"]) == 250
    assert pos == len(raw.stdout)
