"""The durable outbox end to end: NATS outages, a full outbox, sidecar restarts and crashes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from tests.support.publisher_process import (
    Chunked,
    PublisherProcess,
    make_settings,
    metric,
    sidecar,
    stored_messages,
    stream_count,
)
from tests.support.waiting import until as wait_until
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification
from tidings.nats import ensure_stream
from tidings.settings import NatsSettings, StreamSettings


def note(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "event": "audit_log.created",
        "title": f"entry {n}",
        "message": "an audit log entry",
        "data": {"n": n},
        **fields,
    }


def numbers(stored: list[RawStreamMsg]) -> list[int]:
    return [Notification.from_bytes(m.data or b"").data_object["n"] for m in stored]


async def readyz(http: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get("/readyz")).json()
    return body


async def wait_nats_down(http: httpx.AsyncClient) -> None:
    async def down() -> bool:
        return bool((await readyz(http))["nats"] != "connected")

    await wait_until(down, timeout=10, what="the sidecar to notice NATS is down")


async def wait_outbox_empty(http: httpx.AsyncClient) -> None:
    async def empty() -> bool:
        return bool((await readyz(http))["outbox"]["messages"] == 0)

    await wait_until(empty, timeout=10, what="the outbox to empty")


async def wait_stored(url: str, count: int, *, timeout: float = 20) -> None:
    async def enough() -> bool:
        try:
            return await stream_count(url) >= count
        except Exception:  # NATS still starting
            return False

    await wait_until(enough, timeout=timeout, what=f"{count} stored messages", interval=0.1)


async def test_an_outage_of_1000_notifications_is_drained_exactly_once_in_order(
    js: JetStreamContext, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with sidecar(make_settings(nats_settings, tmp_path / "outbox")) as (_, http):
        before = [await http.post("/v1/notifications", json=note(n)) for n in range(10)]
        assert [r.json()["seq"] for r in before] == list(range(1, 11))

        nats_server.stop()
        await wait_nats_down(http)
        during = [await http.post("/v1/notifications", json=note(n)) for n in range(10, 1010)]
        assert {r.status_code for r in during} == {202}
        assert all(r.json()["queued"] is True and r.json()["seq"] is None for r in during)
        assert (await readyz(http))["outbox"]["messages"] == 1000

        nats_server.start()
        # Sent at once, while the outbox is (likely still) draining: they must queue behind it.
        after = [await http.post("/v1/notifications", json=note(n)) for n in range(1010, 1020)]
        assert {r.status_code for r in after} == {202}

        await wait_stored(nats_server.url, 1020)

        await wait_outbox_empty(http)
        metrics = (await http.get("/metrics")).text

    stored = await stored_messages(nats_server.url)
    assert len(stored) == 1020
    assert numbers(stored) == list(range(1020))
    ids = [r.json()["id"] for r in before + during + after]
    assert [m.headers["Nats-Msg-Id"] for m in stored if m.headers] == [f"acme:{i}" for i in ids]
    drained = sum(1 for r in after if r.json().get("queued")) + 1000
    assert metric(metrics, "tidings_publisher_outbox_drained_total") == drained


async def test_a_queued_repeat_of_a_stored_id_collapses_in_the_duplicate_window(
    js: JetStreamContext, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with sidecar(make_settings(nats_settings, tmp_path / "outbox")) as (_, http):
        first = await http.post("/v1/notifications", json=note(1, id="audit-1"))
        assert first.json()["seq"] == 1
        nats_server.stop()
        await wait_nats_down(http)
        again = await http.post("/v1/notifications", json=note(1, id="audit-1"))
        other = await http.post("/v1/notifications", json=note(2, id="audit-2"))
        assert again.json()["queued"] and other.json()["queued"]
        nats_server.start()
        await wait_stored(nats_server.url, 2)

        await wait_outbox_empty(http)

    stored = await stored_messages(nats_server.url)
    keys = [m.headers["Nats-Msg-Id"] for m in stored if m.headers]
    assert keys == ["acme:audit-1", "acme:audit-2"]


async def test_readyz_fails_only_when_nats_is_down_and_the_outbox_is_full(
    js: JetStreamContext, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    settings = make_settings(
        nats_settings, tmp_path / "outbox", outbox_max_messages=3, retry_after=11
    )
    async with sidecar(settings) as (_, http):
        assert (await http.get("/readyz")).status_code == 200
        nats_server.stop()
        await wait_nats_down(http)
        for n in range(3):
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.post("/v1/notifications", json=note(n))).status_code == 202

        full = await http.post("/v1/notifications", json=note(3))
        ready = await http.get("/readyz")

        assert full.status_code == 503
        assert full.headers["Retry-After"] == "11"
        assert full.json()["error"]["code"] == "outbox_full"
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert ready.json()["nats"] == "reconnecting"
        assert ready.json()["outbox"]["messages"] == 3
        metrics = (await http.get("/metrics")).text
        assert metric(metrics, "tidings_publisher_outbox_full_rejections_total") == 1
        assert metric(metrics, "tidings_publisher_outbox_messages") == 3
        assert "\ntidings_publisher_nats_connected 0.0\n" in metrics

        nats_server.start()

        async def ready_again() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_until(ready_again, timeout=10, what="readiness after NATS returned")
        await wait_stored(nats_server.url, 3)
    assert numbers(await stored_messages(nats_server.url)) == [0, 1, 2]


async def test_a_batch_during_an_outage_is_queued_whole_and_drained_in_order(
    js: JetStreamContext, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with sidecar(make_settings(nats_settings, tmp_path / "outbox")) as (_, http):
        nats_server.stop()
        await wait_nats_down(http)
        r = await http.post(
            "/v1/notifications/batch", json={"notifications": [note(n) for n in range(50)]}
        )
        assert r.status_code == 202
        assert all(res["queued"] for res in r.json()["results"])
        nats_server.start()
        await wait_stored(nats_server.url, 50)
    assert numbers(await stored_messages(nats_server.url)) == list(range(50))


def process_env(nats_server: EmbeddedNats, outbox: Path, **extra: str) -> dict[str, str]:
    return {
        "TIDINGS_NATS_URLS": nats_server.url,
        "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
        "TIDINGS_NATS_REQUEST_TIMEOUT": "2",
        "TIDINGS_PUBLISHER_OUTBOX_DIR": str(outbox),
        "TIDINGS_LOG_LEVEL": "INFO",
        **extra,
    }


async def test_a_full_outbox_survives_a_sidecar_restart(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = process_env(
        nats_server,
        tmp_path / "outbox",
        TIDINGS_PUBLISHER_OUTBOX_MAX_MESSAGES="300",
        TIDINGS_PUBLISHER_RETRY_AFTER="7",
    )
    nats_server.stop()
    first = PublisherProcess(env, log_file=tmp_path / "publisher-1.log").start()
    try:
        await first.wait_healthy()  # it starts although NATS is down
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            assert (await http.get("/readyz")).status_code == 200
            accepted = []
            for n in range(300):
                r = await http.post("/v1/notifications", json=note(n))
                assert r.status_code == 202, r.text
                assert r.json()["queued"] is True
                accepted.append(r.json()["id"])
            refused = await http.post("/v1/notifications", json=note(300))
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "7"
            assert refused.json()["error"]["code"] == "outbox_full"
            assert (await http.get("/readyz")).status_code == 503
        started = time.monotonic()
        assert first.stop(signal.SIGTERM) == 0, first.log()
        assert time.monotonic() - started < 8, "shutdown with NATS down took too long"
    finally:
        first.stop(signal.SIGKILL)

    second = PublisherProcess(env, log_file=tmp_path / "publisher-2.log").start()
    try:
        await second.wait_healthy()
        # A second sidecar on the same outbox would break the order: it is refused at start-up.
        rival = PublisherProcess(env, log_file=tmp_path / "rival.log").start()
        assert rival.process is not None
        assert rival.process.wait(30) == 2
        assert "TIDINGS_PUBLISHER_OUTBOX_DIR" in rival.log()
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            ready = await http.get("/readyz")
            assert ready.json()["outbox"]["messages"] == 300
            nats_server.start()
            await wait_stored(nats_server.url, 300)

            await wait_outbox_empty(http)
            late = await http.post("/v1/notifications", json=note(301))
            assert late.json()["seq"] == 301
        assert second.stop(signal.SIGTERM) == 0, second.log()
    finally:
        second.stop(signal.SIGKILL)

    stored = await stored_messages(nats_server.url)
    keys = [m.headers["Nats-Msg-Id"] for m in stored if m.headers]
    assert keys[:300] == [f"acme:{i}" for i in accepted]
    assert numbers(stored) == [*range(300), 301]


async def test_accepted_notifications_survive_a_sidecar_crash(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = process_env(nats_server, tmp_path / "outbox")
    nats_server.stop()
    crashed = PublisherProcess(env, log_file=tmp_path / "publisher-1.log").start()
    try:
        await crashed.wait_healthy()
        async with httpx.AsyncClient(base_url=crashed.url, timeout=10) as http:
            rs = await asyncio.gather(
                *(http.post("/v1/notifications", json=note(n)) for n in range(5))
            )
            assert {r.status_code for r in rs} == {202}
            for n in range(5, 50):
                assert (await http.post("/v1/notifications", json=note(n))).status_code == 202
    finally:
        assert crashed.stop(signal.SIGKILL) == -signal.SIGKILL

    restarted = PublisherProcess(env, log_file=tmp_path / "publisher-2.log").start()
    try:
        await restarted.wait_healthy()
        async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as http:
            # Through the real HTTP server, a streamed body is cut off at the limit too.
            big = Chunked(200_000)
            r = await http.post(
                "/v1/notifications", content=big, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 413
            assert (await readyz(http))["outbox"]["messages"] == 50
        nats_server.start()
        await wait_stored(nats_server.url, 50)
    finally:
        restarted.stop(signal.SIGTERM)
    stored = numbers(await stored_messages(nats_server.url))
    assert sorted(stored[:5]) == list(range(5))  # sent concurrently: any order among them
    assert stored[5:] == list(range(5, 50))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_process_exits_cleanly_on_signals_while_nats_is_down(
    nats_server: EmbeddedNats, tmp_path: Path, sig: signal.Signals
) -> None:
    nats_server.stop()
    proc = PublisherProcess(
        process_env(nats_server, tmp_path / "outbox"), log_file=tmp_path / "publisher.log"
    ).start()
    try:
        await proc.wait_healthy()
        started = time.monotonic()
        code = proc.stop(sig)
    finally:
        proc.stop(signal.SIGKILL)
    assert code == 0, proc.log()
    assert time.monotonic() - started < 8


async def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    proc = PublisherProcess(
        {"TIDINGS_NATS_URLS": "nats://127.0.0.1:1", "TIDINGS_PUBLISHER_PORT": "99999"},
        log_file=tmp_path / "publisher.log",
    ).start()
    assert proc.process is not None
    code = proc.process.wait(30)
    assert code == 2
    assert "TIDINGS_PUBLISHER_PORT" in proc.log()


async def test_a_message_the_stream_refuses_for_good_is_set_aside(
    nc: NATS, nats_settings: NatsSettings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """One poison message must not block the queue behind it (here: over the stream's size)."""
    await ensure_stream(nc.jetstream(), StreamSettings(max_msg_size=1024))
    async with sidecar(make_settings(nats_settings, tmp_path / "outbox")) as (_, http):
        refused = await http.post("/v1/notifications", json=note(0, data={"blob": "x" * 2000}))
        assert refused.status_code == 500
        assert "JetStream refused" in refused.json()["error"]["reason"]

        nats_server.stop()
        await wait_nats_down(http)
        for n, data in ((1, {"n": 1}), (2, {"n": 2, "blob": "x" * 2000}), (3, {"n": 3})):
            r = await http.post("/v1/notifications", json=note(n, data=data))
            assert r.json()["queued"] is True
        nats_server.start()
        await wait_outbox_empty(http)
        metrics = (await http.get("/metrics")).text

    assert numbers(await stored_messages(nats_server.url)) == [1, 3]
    assert metric(metrics, "tidings_publisher_outbox_dead_total") == 1
    assert metric(metrics, "tidings_publisher_outbox_drained_total") == 2
