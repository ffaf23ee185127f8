"""`tidings bench` run as a user runs it: a tiny sweep against the real stack and nats-server.

Publisher processes (the compiled jspub and the SDK's Python path, side by side) → JetStream →
a real `tidings gateway` process → 20 WebSocket clients held by the C load client; nats-server's
own WebSocket listener beside it. The result file must
account for every delivery the stream owed (none lost, duplicated or reordered) and carry the
fields a reader of RESULTS.md relies on.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.js import JetStreamContext

from tidings.bench.layout import Layout
from tidings.bench.loadgen import JSPUB_SOURCE, build
from tidings.bench.procs import Child
from tidings.bench.publish import c_argv, write_targets
from tidings.dev.embedded import EmbeddedNats, wait_for_port
from tidings.envelope import Notification
from tidings.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_accounts_for_every_delivery(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "tidings", "bench", "--scenario", "smoke",
            "--systems", "tidings@c,tidings,nats", "--publisher", "python",
            "--clients", "20", "--rooms", "2",
            "--rates", "50,100", "--seconds", "1", "--user-share", "0.2",
            "--publishers", "2", "--nice", "0", "--max-minutes", "2", "--out", str(tmp_path),
        ],
        cwd=ROOT, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result_file,) = tmp_path.glob("bench-smoke-*.json")
    result = orjson.loads(result_file.read_bytes())
    assert (tmp_path / result_file.with_suffix(".png").name).stat().st_size > 10_000

    assert result["config"]["clients"] == 20
    cpus = result["machine"]["cpus"]
    assert cpus == os.cpu_count()
    publishers = {
        "tidings@c": "C jspub (HPUB",
        "tidings": "Python publish_many",
        "nats": "C jspub (core NATS",
    }
    for name, publisher in publishers.items():
        (sweep,) = [s for s in result["sweeps"] if s["system"] == name]
        assert "error" not in sweep, sweep.get("error")
        assert sweep["connect"]["ready"] == 20
        assert sweep["kb_per_conn"] > 0
        assert [r["rate"] for r in sweep["steps"]] == [50, 100]
        for row in sweep["steps"]:
            # 2 rooms of 10: a tenant publish owes 10 deliveries, a user publish 1
            assert row["published"] == row["rate"]
            assert row["expected"] > row["published"]
            assert row["received"] == row["expected"], row
            assert (row["lost"], row["duplicated"], row["out_of_order"]) == (0, 0, 0)
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"] + 0.02
            assert row["server_rss_mb"] > 0
            assert 0 <= row["server_cpu_pct"] <= 100 * cpus  # a percentage of one core
            assert row["publisher_behind"] is False
            assert row["publish_errors"] == []
            assert row["acked"] == row["published"]
            for cost in ("publishers_us_per_n", "broker_us_per_n"):  # CPU µs per notification
                assert math.isfinite(row[cost]) and 0 <= row[cost] < 1e6, (cost, row[cost])
        summary = result["summary"][name]
        assert [r["rate"] for r in summary["rates"]] == [50, 100]
        assert summary["errors"] == []
        assert sweep["publisher"].startswith(publisher)
        assert summary["publisher"] == sweep["publisher"]
    assert "tidings@c — 20 clients / 2 rooms" in done.stdout
    assert "tidings — 20 clients / 2 rooms" in done.stdout


# --- jspub, the compiled JetStream publisher, against a real nats-server ---------------------


def start_jspub(server: EmbeddedNats, tmp_path: Path, *, stream: str, inflight: int) -> Child:
    layout = Layout(clients=10, rooms=2, user_share=0.2)
    targets = write_targets(tmp_path / "targets.txt", layout, 0, 1)
    opts = {"url": server.url, "user_share": layout.user_share, "stream": stream}
    argv = c_argv(build(source=JSPUB_SOURCE), opts, targets, inflight=inflight)
    pub = Child(argv, core=None, log=tmp_path / "jspub.log")
    assert pub.read(timeout=15) == {"event": "ready", "publisher": "c"}
    return pub


def step(pub: Child, k: int, rate: float, seconds: float) -> dict[str, Any]:
    return pub.ask({"cmd": "step", "step": k, "rate": rate, "seconds": seconds}, timeout=30)


async def test_jspub_owes_exactly_what_jetstream_acknowledged(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    pub = start_jspub(nats_server, tmp_path, stream="TIDINGS", inflight=8)
    try:
        first = step(pub, 0, 400, 0.5)
        second = step(pub, 1, 4000, 0.25)
    finally:
        pub.stop('{"cmd":"quit"}')
    for done, k, sent in ((first, 0, 200), (second, 1, 1000)):
        assert done["event"] == "done" and done["step"] == k
        assert (done["sent"], done["acked"]) == (sent, sent)
        assert (done["failed"], done["duplicates"], done["unacked"]) == (0, 0, 0)
        assert "error" not in done
        assert sum(done["tenant"].values()) + done["user"] == sent
        assert done["user"] == sent // 5  # user_share 0.2
        assert 1 <= done["max_inflight"] <= 8  # the window bounds what is unacknowledged
        assert done["publish_rate"] > 0.5 * sent / (0.5 if k == 0 else 0.25)
    assert (await js.stream_info("TIDINGS")).state.messages == 1200
    # what the stream holds: unique ids, and per room a gap-free index across both steps
    stored = [await js.get_msg("TIDINGS", seq) for seq in range(1, 1201)]
    ids: set[str] = set()
    indexes: dict[str, list[int]] = {}
    per_step: dict[int, dict[str, int]] = {0: {}, 1: {}}
    for m in stored:
        assert m.data is not None and m.headers is not None
        note = Notification.from_bytes(m.data)
        assert m.headers["Nats-Msg-Id"] == note.id
        ids.add(note.id)
        data = orjson.loads(note.data)
        room = note.audience.name or note.tenant or ""
        indexes.setdefault(room, []).append(data["i"])
        if not note.audience.name:
            per_step[data["k"]][room[1:]] = per_step[data["k"]].get(room[1:], 0) + 1
    assert len(ids) == 1200
    assert all(got == list(range(len(got))) for got in indexes.values()), indexes
    assert (per_step[0], per_step[1]) == (first["tenant"], second["tenant"])


async def test_jspub_refused_publishes_are_reported_not_owed(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    # a stream name JetStream does not match: every publish gets an error PubAck
    pub = start_jspub(nats_server, tmp_path, stream="ELSEWHERE", inflight=50)
    try:
        done = step(pub, 0, 200, 0.25)
    finally:
        pub.stop('{"cmd":"quit"}')
    assert (done["sent"], done["acked"], done["failed"]) == (50, 0, 50)
    assert done["tenant"] == {} and done["user"] == 0
    assert done["publish_rate"] == 0
    assert "JetStream refused a publish" in done["error"]
    assert (await js.stream_info("TIDINGS")).state.messages == 0


def test_jspub_without_a_stream_reports_no_responders(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    pub = start_jspub(nats_server, tmp_path, stream="TIDINGS", inflight=50)
    try:
        done = step(pub, 0, 100, 0.2)
    finally:
        pub.stop('{"cmd":"quit"}')
    assert (done["sent"], done["acked"], done["failed"]) == (20, 0, 20)
    assert "no responders" in done["error"]


def test_bench_users_scenario_owes_one_delivery_per_notification(tmp_path: Path) -> None:
    # the single-user scenario, small: 20 users over 2 tenants, every notification to one user;
    # nats-js: the nats peer fed through a republishing stream (HMSG deliveries, PubAcks owed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "tidings", "bench", "--scenario", "users-smoke",
            "--systems", "tidings,nats,nats-js", "--seconds", "1", "--nice", "0",
            "--max-minutes", "2", "--out", str(tmp_path),
        ],
        cwd=ROOT, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result_file,) = tmp_path.glob("bench-users-smoke-*.json")
    result = orjson.loads(result_file.read_bytes())
    assert (result["config"]["clients"], result["config"]["rooms"]) == (20, 2)
    assert result["config"]["user_share"] == 1.0
    for name in ("tidings", "nats", "nats-js"):
        (sweep,) = [s for s in result["sweeps"] if s["system"] == name]
        assert "error" not in sweep, sweep.get("error")
        assert sweep["receiver"].startswith("C wsload")
        for row in sweep["steps"]:
            assert row["published"] == row["expected"] == row["received"] == row["rate"], row
            assert row["acked"] == row["published"] and row["publish_errors"] == []
            assert (row["lost"], row["duplicated"], row["out_of_order"]) == (0, 0, 0)
            # the server's CPU per notification (psutil's 10 ms ticks: may round to 0 here)
            cost = row["server_cpu_pct"] * 1e4 / max(row["publish_rate"], 1.0)
            assert row["server_us_per_n"] == round(cost, 1) >= 0
            assert row["deliveries_per_read"] is not None and row["deliveries_per_read"] > 0
        summary = result["summary"][name]
        assert summary["max_rate"] == 100 and summary["failed_below"] == []
    md = result_file.with_suffix(".md").read_text()
    assert "receiver: C wsload" in md and "server µs/n" in md


# --- jspub's Redis mode (the Socket.IO peers' publisher) against a real redis-server -----------


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (Debian's package; scripts/test installs it)"
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        str(tmp_path),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=10)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def start_redis_jspub(port: int, tmp_path: Path) -> Child:
    layout = Layout(clients=10, rooms=2, user_share=0.2)
    targets = write_targets(tmp_path / "targets.txt", layout, 0, 1, backend="redis")
    opts = {"backend": "redis", "port": port, "user_share": layout.user_share, "pad": 40}
    pub = Child(
        c_argv(build(source=JSPUB_SOURCE), opts, targets), core=None, log=tmp_path / "p.log"
    )
    assert pub.read(timeout=15) == {"event": "ready", "publisher": "c"}
    return pub


def read_published(sub: socket.socket, count: int) -> list[dict[str, Any]]:
    """``count`` messages of a RESP subscription (after its confirmation), in order."""
    buf = b""
    out: list[dict[str, Any]] = []
    sub.settimeout(10)
    while len(out) < count:
        chunk = sub.recv(1 << 16)
        assert chunk, "redis-server closed the subscription"
        buf += chunk
        while True:  # *3 $7 message $5 bench $N payload
            parts = buf.split(b"\r\n", 6)
            if len(parts) < 7 or len(parts[6]) < int(parts[5][1:]) + 2:
                break
            assert parts[:5] == [b"*3", b"$7", b"message", b"$5", b"bench"], parts[:5]
            size = int(parts[5][1:])
            out.append(orjson.loads(parts[6][:size]))
            buf = parts[6][size + 2 :]
    assert buf == b""
    return out


def test_jspub_redis_mode_delivers_every_message_to_the_channel(
    redis_port: int, tmp_path: Path
) -> None:
    sub = socket.create_connection(("127.0.0.1", redis_port), timeout=10)
    sub.sendall(b"SUBSCRIBE bench\r\n")
    confirm = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n"
    got = b""
    while len(got) < len(confirm):
        got += sub.recv(len(confirm) - len(got))
    assert got == confirm
    pub = start_redis_jspub(redis_port, tmp_path)
    try:
        done = step(pub, 0, 400, 0.5)
    finally:
        pub.stop('{"cmd":"quit"}')
    sub_messages = read_published(sub, 200)
    sub.close()
    assert done["event"] == "done" and "error" not in done, done
    assert (done["sent"], done["acked"], done["failed"]) == (200, 200, 0)
    assert done["user"] == 40  # user_share 0.2
    rooms: dict[str, list[int]] = {}
    for m in sub_messages:
        assert m["d"]["k"] == 0 and len(m["d"]["p"]) == 40
        rooms.setdefault(m["r"], []).append(m["d"]["i"])
    assert all(idx == list(range(len(idx))) for idx in rooms.values()), rooms
    assert {r for r in rooms if r.startswith("t")} == {"t0", "t1"}
    assert sum(len(v) for k, v in rooms.items() if k.startswith("u")) == 40


def test_jspub_redis_mode_reports_a_channel_nobody_listens_to(
    redis_port: int, tmp_path: Path
) -> None:
    pub = start_redis_jspub(redis_port, tmp_path)
    try:
        done = step(pub, 0, 100, 0.2)
    finally:
        pub.stop('{"cmd":"quit"}')
    assert (done["sent"], done["failed"]) == (20, 20)
    assert "no subscriber on the Redis channel" in done["error"]
