"""A publisher process of the benchmark: publishes at a fixed rate through a system's real path.

    python -m tidings.bench.publish '<json options>'      (JSON lines on stdin/stdout)

Backends: ``jetstream`` (Tidings: envelopes through :func:`tidings.publishing.publish_many`,
pipelined, acked), ``nats`` (core NATS publish, for nats-server's own WebSocket) and ``redis``
(``PUBLISH bench``, for the Socket.IO peers). For Tidings the default is the compiled
``jspub.c`` instead (same pacing, same envelopes, same JSON lines; :func:`c_argv`): the SDK's
path costs 100-300 µs of CPU per notification and saturates the generator core near 3,000/s;
for the peers too (core NATS, Redis), so every system is fed by the same program.
Every notification's data starts with ``{"k":STEP,"s":SLOT,"i":INDEX,"t":MONOTONIC_NS`` — what
the load client checks — and ``t`` is read just before the message is handed to the client
library (jspub: just before it is built), on the clock the receiver reads.

Pacing is self-clocking: whatever is due by now goes out as one pipelined batch, then the next
batch; a backend that cannot keep up shows as a publish rate below the offered one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tidings.bench.layout import TENANT_SLOT, USER_SLOT, Layout

if TYPE_CHECKING:
    from tidings.envelope import Notification
    from tidings.publishing import OutgoingMessage

Target = tuple[int, int]  # (slot, room or user index)
SendBatch = Callable[[list[tuple[Target, bytes]]], Awaitable[None]]

EVENT = "incident.created"
TITLE = "Spill in hall 3"
MESSAGE = "Cleanup under way, avoid the east entrance"
STREAM = "TIDINGS"
MAX_INFLIGHT = 1000  # jspub: unacknowledged publishes at most (it cannot run away)


def data_bytes(step: int, slot: int, index: int, pad: int) -> bytes:
    """The checked prefix, then padding so every system carries a similar line size."""
    head = b'{"k":%d,"s":%d,"i":%d,"t":%d' % (step, slot, index, time.monotonic_ns())
    return head + (b',"p":"' + b"x" * pad + b'"}' if pad else b"}")


def envelope(target: Target, rooms: int) -> OutgoingMessage:
    """The message every publish to ``target`` shares: built once through the SDK's
    validation (``prepare``); each publish adds only its own id and data."""
    from tidings.publishing import PublishPolicy, prepare

    slot, n = target
    body: dict[str, Any] = {
        "tenant": f"t{n}" if slot == TENANT_SLOT else f"t{n % rooms}",
        "event": EVENT,
        "title": TITLE,
        "message": MESSAGE,
        "severity": "warning",
    }
    if slot == USER_SLOT:
        body["audience"] = {"user": f"u{n}"}
    return prepare(body, PublishPolicy())


async def jetstream_backend(
    opts: dict[str, Any],
) -> tuple[SendBatch, Callable[[], Awaitable[None]]]:
    import nats

    from tidings.envelope import Notification, new_id
    from tidings.publishing import OutgoingMessage, publish_many

    nc = await nats.connect(opts["url"], pending_size=64 << 20)
    js = nc.jetstream()
    templates: dict[Target, tuple[Notification, str]] = {}

    def template(target: Target) -> tuple[Notification, str]:
        if target not in templates:
            msg = envelope(target, opts["rooms"])
            templates[target] = (Notification.from_bytes(msg.payload), msg.subject)
        return templates[target]

    async def send(batch: list[tuple[Target, bytes]]) -> None:
        msgs = []
        for target, data in batch:
            note, subject = template(target)
            nid = new_id()
            payload = dataclasses.replace(note, id=nid, data=data).to_bytes()
            msgs.append(OutgoingMessage(nid, subject, payload, {"Nats-Msg-Id": nid}))
        await publish_many(js, msgs, stream=opts.get("stream", STREAM), timeout=10.0)

    return send, nc.close


async def nats_backend(opts: dict[str, Any]) -> tuple[SendBatch, Callable[[], Awaitable[None]]]:
    import nats

    nc = await nats.connect(opts["url"], pending_size=64 << 20)

    async def send(batch: list[tuple[Target, bytes]]) -> None:
        for target, data in batch:
            await nc.publish(nats_subject(target), data)
        await nc.flush(10)

    return send, nc.close


async def redis_backend(opts: dict[str, Any]) -> tuple[SendBatch, Callable[[], Awaitable[None]]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(opts["port"]))
    channel = REDIS_CHANNEL.encode()

    async def send(batch: list[tuple[Target, bytes]]) -> None:
        out = bytearray()
        for target, data in batch:
            msg = b'{"r":"' + redis_room(target).encode() + b'","d":' + data + b"}"
            out += b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(channel),
                channel,
                len(msg),
                msg,
            )
        writer.write(out)
        await writer.drain()
        replies = 0
        while replies < len(batch):  # ":<receivers>\r\n" each
            chunk = await reader.readuntil(b"\r\n")
            replies += 1
            if not chunk.startswith(b":"):
                raise RuntimeError(f"redis said {chunk!r}")

    async def close() -> None:
        writer.close()

    return send, close


def redis_room(target: Target) -> str:
    """The Socket.IO room of a target (the ``redis`` peers: ``tN`` for a tenant, ``uN`` a user)."""
    slot, n = target
    return f"t{n}" if slot == TENANT_SLOT else f"u{n}"


REDIS_CHANNEL = "bench"  # what benchmarks/peers/sio_*.{js,py} subscribe to


def nats_subject(target: Target) -> str:
    """The core NATS subject of a target (the ``nats`` peer: one subject per room / user)."""
    slot, n = target
    return f"bench.t.{n}" if slot == TENANT_SLOT else f"bench.u.{n}"


def write_targets(
    path: Path, layout: Layout, worker: int, workers: int, backend: str = "jetstream"
) -> Path:
    """jspub's input: one line per target this worker owns, ``SLOT N SUBJECT ENVELOPE_HEX``,
    tenant rooms then users in the Pacer's order; the envelope has no id and no data (proto3
    omits them), so jspub appends both per message and the later fields win. For the
    ``nats`` backend (core NATS) the subject is the peer's and the envelope empty, for
    ``nats-js`` the stream's subject that republishes to it (``in.t.N`` to ``bench.t.N``);
    for ``redis`` the subject is the Socket.IO room."""
    from tidings.envelope import Notification

    rooms, users = layout.owned(worker, workers)
    lines = []
    for slot, owned in ((TENANT_SLOT, rooms), (USER_SLOT, users if layout.user_share else [])):
        for n in owned:
            if backend in ("nats", "nats-js", "redis"):
                if backend == "redis":
                    name = redis_room((slot, n))
                elif backend == "nats-js":  # stored under in., republished to the peer's
                    name = "in." + nats_subject((slot, n)).removeprefix("bench.")
                else:
                    name = nats_subject((slot, n))
                lines.append(f"{slot} {n} {name} \n")
                continue
            msg = envelope((slot, n), layout.rooms)
            bare = dataclasses.replace(Notification.from_bytes(msg.payload), id="", data=b"")
            subject = msg.subject
            lines.append(f"{slot} {n} {subject} {bare.to_bytes().hex()}\n")
    path.write_text("".join(lines))
    return path


def c_argv(
    binary: Path, opts: dict[str, Any], targets: Path, *, inflight: int = MAX_INFLIGHT
) -> list[str]:
    """The command line of one jspub process (``opts`` as for the Python backends): JetStream,
    or with the peers' padding core NATS (stream ``-``, the ``nats`` backend), JetStream with
    the core payload (``raw:STREAM``, ``nats-js``) or Redis (``redis:CHANNEL``, ``redis``)."""
    share = repr(float(opts.get("user_share", 0.0)))
    pad = str(int(opts.get("pad", 0)))
    if opts.get("backend") == "redis":
        port = str(int(opts["port"]))
        return [
            str(binary),
            port,
            f"redis:{REDIS_CHANNEL}",
            share,
            str(inflight),
            str(targets),
            pad,
        ]
    port_or_none = urlsplit(opts["url"]).port
    if port_or_none is None:
        raise ValueError(f"no port in {opts['url']}")
    port = str(port_or_none)
    if opts.get("backend") == "nats":
        return [str(binary), port, "-", share, str(inflight), str(targets), pad]
    if opts.get("backend") == "nats-js":
        return [str(binary), port, f"raw:{opts['stream']}", share, str(inflight), str(targets), pad]
    stream = opts.get("stream", STREAM)
    return [str(binary), port, stream, share, str(inflight), str(targets)]


BACKENDS = {"jetstream": jetstream_backend, "nats": nats_backend, "redis": redis_backend}


class Pacer:
    """Targets in round-robin order, a gap-free index per target, ``user_share`` to users."""

    def __init__(self, layout: Layout, worker: int, workers: int, pad: int) -> None:
        self.rooms, self.users = layout.owned(worker, workers)
        self.user_share = layout.user_share
        self.pad = pad
        self.index: dict[Target, int] = {}
        self._room_i = self._user_i = 0
        self._credit = 0.0

    def next(self, step: int) -> tuple[Target, bytes]:
        self._credit += self.user_share
        if self._credit >= 1.0 and self.users:
            self._credit -= 1.0
            target = (USER_SLOT, self.users[self._user_i % len(self.users)])
            self._user_i += 1
        else:
            target = (TENANT_SLOT, self.rooms[self._room_i % len(self.rooms)])
            self._room_i += 1
        i = self.index.get(target, 0)
        self.index[target] = i + 1
        return target, data_bytes(step, target[0], i, self.pad)


TICK = 0.002  # at most one batch per tick: per-batch costs (futures, acks, flush) stay bounded


async def run_step(
    send: SendBatch, pacer: Pacer, step: int, rate: float, seconds: float
) -> dict[str, Any]:
    tenant: dict[int, int] = {}
    users = 0
    sent = 0
    batches = 0
    max_batch = 0
    cpu0, start = time.process_time(), time.monotonic()
    total = int(rate * seconds)
    next_batch = start
    while sent < total:
        now = time.monotonic()
        due = min(total, int(rate * (now - start)) + 1) - sent
        if due <= 0:
            await asyncio.sleep(max(0.0005, (sent + 1) / rate - (now - start)))
            continue
        if now < next_batch and due < total - sent:
            await asyncio.sleep(next_batch - now)
            continue
        next_batch = now + TICK
        batch = [pacer.next(step) for _ in range(due)]
        for (slot, n), _ in batch:
            if slot == TENANT_SLOT:
                tenant[n] = tenant.get(n, 0) + 1
            else:
                users += 1
        await send(batch)
        sent += due
        batches += 1
        max_batch = max(max_batch, due)
    elapsed = time.monotonic() - start
    return {
        "event": "done",
        "step": step,
        "publisher": "python",
        "sent": sent,
        "tenant": {str(k): v for k, v in tenant.items()},
        "user": users,
        "elapsed_s": round(elapsed, 4),
        "publish_rate": round(sent / max(elapsed, 1e-9), 1),
        "cpu_pct": round(100 * (time.process_time() - cpu0) / max(elapsed, 1e-9), 1),
        "batches": batches,
        "max_batch": max_batch,
    }


async def main(opts: dict[str, Any]) -> None:
    layout = Layout(opts["clients"], opts["rooms"], opts.get("user_share", 0.0))
    pacer = Pacer(layout, opts["worker"], opts["workers"], opts.get("pad", 0))
    send, close = await BACKENDS[opts["backend"]](opts)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"event": "ready"}), flush=True)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                break
            try:
                result = await run_step(send, pacer, cmd["step"], cmd["rate"], cmd["seconds"])
            except Exception as exc:  # reported to the runner, which fails the step
                result = {"event": "error", "step": cmd.get("step"), "error": repr(exc)[:500]}
            print(json.dumps(result), flush=True)
    finally:
        await close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
