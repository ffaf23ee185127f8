"""Publish quotas per tenant against a real nats-server: the sidecar's 429 with ``Retry-After``,
the daily volume summed over two publishers (a sidecar process and the SDK), the tenant's
admins told once per day, a change through `tidings quota` applied by a running sidecar within
a second (logged and counted), and publishing going on when the bucket or NATS is away.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tests.support.publisher_process import PublisherProcess, metric, stored_messages
from tests.support.waiting import until
from tests.support.wsclient import RawClient, ws_url
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification
from tidings.errors import DailyQuotaExceeded
from tidings.gateway.service import Gateway
from tidings.quotas.bucket import QuotaBucket
from tidings.quotas.limits import Limits, TenantLimits, day_of, seconds_to_midnight
from tidings.settings import NatsSettings, QuotaSettings

Mint = Callable[..., str]
OPERATOR_KEY = "operator-key-for-quota-tests-0123456789"
pytestmark = pytest.mark.settings(gateway={"admin_token": OPERATOR_KEY})


def body(title: str, tenant: str = "acme") -> dict[str, Any]:
    return {"tenant": tenant, "event": "incident.created", "title": title, "message": "m"}


@pytest.fixture
async def bucket(js: JetStreamContext) -> QuotaBucket:
    """The quotas bucket as `tidings nats init` creates it."""
    quotas = QuotaBucket(stream="TIDINGS")
    await quotas.ensure(js)
    return quotas


def sidecar_process(nats: EmbeddedNats, root: Path, name: str, **quota: str) -> PublisherProcess:
    env = {
        "TIDINGS_NATS_URLS": nats.url,
        "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
        "TIDINGS_PUBLISHER_OUTBOX_DIR": str(root / f"outbox-{name}"),
        "TIDINGS_QUOTA_ENABLED": "true",
        **{f"TIDINGS_QUOTA_{k.upper()}": v for k, v in quota.items()},
    }
    return PublisherProcess(env, log_file=root / f"{name}.log")


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[list[PublisherProcess]]:
    """Sidecar processes a test starts (each stopped by its PID at the end)."""
    procs: list[PublisherProcess] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


async def running(procs: list[PublisherProcess], proc: PublisherProcess) -> PublisherProcess:
    procs.append(proc.start())
    await proc.wait_healthy()

    async def following() -> bool:
        async with httpx.AsyncClient(base_url=proc.url) as client:
            page = (await client.get("/metrics")).text
        return metric(page, "tidings_publisher_quota_following") == 1.0

    await until(following, timeout=15, what=f"the sidecar to follow the bucket\n{proc.log()}")
    return proc


async def stored_notifications(url: str) -> list[Notification]:
    return [Notification.from_bytes(m.data or b"") for m in await stored_messages(url)]


async def notices(url: str, tenant: str = "acme") -> list[Notification]:
    found = await stored_notifications(url)
    return [n for n in found if n.tenant == tenant and n.event.startswith("quota.")]


async def test_the_sidecar_answers_429_with_retry_after_beyond_the_rate(
    nats_server: EmbeddedNats, bucket: QuotaBucket, started: list[PublisherProcess], tmp_path: Path
) -> None:
    proc = await running(
        started, sidecar_process(nats_server, tmp_path, "one", rate="0.5", burst="3")
    )
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        answers = [await client.post("/v1/notifications", json=body(f"n{i}")) for i in range(4)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429], answers[-1].text
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "publish_rate_limited"
        assert refused.json()["error"]["field"] == "tenant"
        # 0.5 per second: the next token is at most 2 s away.
        assert refused.headers["Retry-After"] in ("1", "2")
        # Another tenant has its own bucket.
        other = await client.post("/v1/notifications", json=body("other", "globex"))
        assert other.status_code == 202, other.text
        page = (await client.get("/metrics")).text
    assert metric(page, "tidings_publisher_quota_refused_total", reason="rate") == 1.0
    stored = await stored_notifications(nats_server.url)
    assert sorted(n.title for n in stored if n.event == "incident.created") == [
        "n0",
        "n1",
        "n2",
        "other",
    ]

    async def told() -> bool:
        return len(await notices(nats_server.url)) == 1

    await until(told, timeout=10, what="the rate notice")
    (notice,) = await notices(nats_server.url)
    assert (notice.event, notice.audience.room) == ("quota.exceeded", "role:admin")
    assert notice.data_object["quota"] == "rate"


async def test_the_daily_volume_is_summed_over_a_sidecar_and_the_sdk_and_admins_told_once(
    nats_server: EmbeddedNats,
    nats_settings: NatsSettings,
    bucket: QuotaBucket,
    gateway: Gateway,
    token: Mint,
    started: list[PublisherProcess],
    tmp_path: Path,
) -> None:
    daily = 20
    proc = await running(started, sidecar_process(nats_server, tmp_path, "one", daily=str(daily)))
    sdk = await Publisher.connect(
        nats_settings, quota=QuotaSettings(enabled=True, daily=daily), within=5
    )
    admin_ws = RawClient(ws_url(gateway))
    member_ws = RawClient(ws_url(gateway))
    async with admin_ws, member_ws:
        await admin_ws.hello(token(tenant="acme", user="root", roles=["admin"]))
        await admin_ws.next("synced")
        await member_ws.hello(token(tenant="acme", user="bob"))
        await member_ws.next("synced")
        http_refusals: list[httpx.Response] = []
        sdk_refusals: list[DailyQuotaExceeded] = []
        accepted: list[str] = []

        async def through_sidecar() -> None:
            async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
                for i in range(daily):
                    answer = await client.post("/v1/notifications", json=body(f"http-{i}"))
                    if answer.status_code == 202:
                        accepted.append(f"http-{i}")
                    else:
                        http_refusals.append(answer)

        async def through_sdk() -> None:
            for i in range(daily):
                try:
                    await sdk.publish(body(f"sdk-{i}"))
                    accepted.append(f"sdk-{i}")
                except DailyQuotaExceeded as exc:
                    sdk_refusals.append(exc)

        try:
            await asyncio.gather(through_sidecar(), through_sdk())  # racing each other
        finally:
            await sdk.close()
        # Exactly the limit went through, over both publishers; every other one was refused.
        assert len(accepted) == daily, (len(accepted), len(http_refusals), len(sdk_refusals))
        assert len(http_refusals) + len(sdk_refusals) == daily
        midnight = seconds_to_midnight(time.time())
        for answer in http_refusals:
            assert answer.status_code == 429
            assert answer.json()["error"]["code"] == "daily_quota_exceeded"
            assert abs(int(answer.headers["Retry-After"]) - midnight) <= 30
        for exc in sdk_refusals:
            assert exc.code.value == "daily_quota_exceeded"
            assert abs(exc.retry_after - midnight) <= 30
        stored = await stored_notifications(nats_server.url)
        assert sorted(n.title for n in stored if n.event == "incident.created") == sorted(accepted)
        assert await bucket.count(gateway.link.js, day_of(time.time()), "acme") == daily

        # The tenant's admins hear once of each crossing, though both publishers crossed.
        seen = [n["event"] for n in await admin_ws.notifications(daily + 2, timeout=15)]
        assert sorted(e for e in seen if e.startswith("quota.")) == [
            "quota.exceeded",
            "quota.warning",
        ]
        assert sorted(n.event for n in await notices(nats_server.url)) == [
            "quota.exceeded",
            "quota.warning",
        ]
        # A member without the role hears of none.
        got = [n["event"] for n in await member_ws.notifications(daily, timeout=15)]
        assert got == ["incident.created"] * daily
        assert [f for f in await member_ws.quiet(0.5) if f.get("type") == "notification"] == []


async def test_two_publishers_far_from_the_limit_merge_their_counts(
    nats_settings: NatsSettings, bucket: QuotaBucket, js: JetStreamContext
) -> None:
    quota = QuotaSettings(enabled=True, daily=100_000, merge_interval=0.2)
    first = await Publisher.connect(nats_settings, quota=quota, within=5)
    second = await Publisher.connect(nats_settings, quota=quota, within=5)
    try:
        await asyncio.gather(
            *(
                p.publish(body(f"{n}-{i}"))
                for n, p in (("a", first), ("b", second))
                for i in range(60)
            )
        )

        async def summed() -> bool:
            return await bucket.count(js, day_of(time.time()), "acme") == 120

        await until(summed, timeout=10, what="both publishers' counts in the bucket")
    finally:
        await first.close()
        await second.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", "quota", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_quota_set_with_the_cli_applies_within_a_second_and_is_logged_and_counted(
    nats_server: EmbeddedNats,
    bucket: QuotaBucket,
    gateway: Gateway,
    token: Mint,
    started: list[PublisherProcess],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = await running(started, sidecar_process(nats_server, tmp_path, "one"))
    url, key = f"http://127.0.0.1:{gateway.api_port}", ("--url", "--key")
    target = [key[0], url, key[1], OPERATOR_KEY]
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        for i in range(5):  # no limits yet (the defaults are unlimited)
            assert (
                await client.post("/v1/notifications", json=body(f"free-{i}"))
            ).status_code == 202
        with caplog.at_level(logging.INFO, logger="tidings.audit"):
            done = await asyncio.to_thread(
                cli, "set", "acme", "--rate", "1", "--burst", "1", *target
            )
        set_at = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert "set acme: rate 1/s (burst 1), volume unlimited (own)" in done.stdout

        async def limited() -> bool:
            answer = await client.post("/v1/notifications", json=body("probe"))
            return answer.status_code == 429

        await until(limited, timeout=5, what="the new limit in the sidecar")
        assert time.monotonic() - set_at < 1.0
    lines = [r for r in caplog.records if r.getMessage() == "admin action"]
    assert [(r.action, r.outcome, r.actor, r.tenant) for r in lines] == [  # type: ignore[attr-defined]
        ("quota_set", "ok", "operator", "acme")
    ]
    samples = gateway.metrics.registry.get_sample_value
    assert (
        samples("tidings_gateway_admin_actions_total", {"action": "quota_set", "outcome": "ok"})
        == 1
    )

    done = await asyncio.to_thread(cli, "list", *target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "defaults: rate unlimited, volume unlimited (defaults)",
        "  acme: rate 1/s (burst 1), volume unlimited (own)",
    ]
    done = await asyncio.to_thread(cli, "get", "acme", "--json", *target)
    assert done.returncode == 0, done.stderr
    assert '"rate":1.0' in done.stdout and '"own":true' in done.stdout
    # A tenant's admin may read its quota but not change it.
    admin = token(tenant="acme", user="root", roles=["admin"])
    done = await asyncio.to_thread(cli, "set", "acme", "--daily", "9", "--url", url, "--key", admin)
    assert done.returncode == 1 and "forbidden" in done.stderr, done.stderr
    assert (
        samples(
            "tidings_gateway_admin_actions_total", {"action": "quota_set", "outcome": "refused"}
        )
        == 1
    )
    done = await asyncio.to_thread(cli, "reset", "acme", *target)
    assert done.returncode == 0, done.stderr
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:

        async def free_again() -> bool:
            answers = [await client.post("/v1/notifications", json=body("again")) for _ in range(3)]
            return all(a.status_code == 202 for a in answers)

        await until(free_again, timeout=5, what="the reset in the sidecar")


async def test_publishing_goes_on_without_the_bucket_and_without_nats(
    nats_server: EmbeddedNats, js: JetStreamContext, started: list[PublisherProcess], tmp_path: Path
) -> None:
    proc = sidecar_process(nats_server, tmp_path, "one", daily="1000")
    started.append(proc.start())
    await proc.wait_healthy()
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:

        async def unavailable_counted() -> bool:
            page = (await client.get("/metrics")).text
            return metric(page, "tidings_publisher_quota_unavailable_total") >= 1

        await until(unavailable_counted, timeout=15, what=f"the missing bucket\n{proc.log()}")
        for i in range(5):  # no bucket: counted here, never refused for it
            answer = await client.post("/v1/notifications", json=body(f"open-{i}"))
            assert answer.status_code == 202 and answer.json()["seq"] is not None, answer.text
        page = (await client.get("/metrics")).text
        assert metric(page, "tidings_publisher_quota_following") == 0.0
        nats_server.stop()

        async def down() -> bool:
            return (await client.get("/readyz")).json()["nats"] != "connected"

        await until(down, timeout=10, what="the sidecar to see NATS gone")
        answer = await client.post("/v1/notifications", json=body("while-down"))
        assert answer.status_code == 202 and answer.json()["queued"] is True, answer.text
    assert "quotas bucket unavailable" in proc.log()


async def test_the_quota_api_refuses_precisely(gateway: Gateway, token: Mint) -> None:
    base = f"http://127.0.0.1:{gateway.api_port}"
    operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    member = {"Authorization": f"Bearer {token(tenant='acme', user='bob')}"}
    admin = {"Authorization": f"Bearer {token(tenant='acme', user='root', roles=['admin'])}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        cases: list[tuple[str, str, dict[str, str], Any, int, str]] = [
            ("PUT", "", operator, {"tenant": "acme", "rate": "fast"}, 400, "invalid_field"),
            ("PUT", "", operator, {"tenant": "acme", "daily": -1}, 400, "invalid_field"),
            ("PUT", "", operator, {"tenant": "acme", "daily": 10**13}, 400, "invalid_field"),
            ("PUT", "", operator, {"tenant": "acme", "rate": 1, "x": 1}, 400, "invalid_field"),
            ("PUT", "", operator, {"tenant": "a b", "rate": 1}, 400, "invalid_field"),
            ("PUT", "", operator, {"rate": 1}, 400, "missing_field"),
            ("PUT", "", operator, {"tenant": "acme"}, 400, "missing_field"),
            ("PUT", "", operator, [1], 400, "malformed"),
            ("PUT", "", admin, {"tenant": "acme", "rate": 1}, 403, "forbidden"),
            ("PUT", "", member, {"tenant": "acme", "rate": 1}, 403, "forbidden"),
            ("PUT", "", {}, {"tenant": "acme", "rate": 1}, 401, "token_missing"),
            ("DELETE", "", operator, None, 400, "missing_field"),
            ("GET", "?tenant=globex", admin, None, 403, "forbidden"),
            ("GET", "", operator, None, 400, "missing_field"),
        ]
        for method, query, headers, payload, status, code in cases:
            answer = await api.request(
                method, f"/api/admin/quota{query}", json=payload, headers=headers
            )
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (
                method,
                payload,
                answer.text,
            )
        own = await api.get("/api/admin/quota", params={"tenant": "acme"}, headers=admin)
        assert own.status_code == 200, own.text
        assert own.json() == {
            "tenant": "acme",
            "limits": {"rate": 0.0, "burst": 0, "daily": 0},
            "own": False,
            "used_today": 0,
        }


async def test_nats_init_creates_the_quotas_bucket_once(
    nats_server: EmbeddedNats, nc: NATS
) -> None:
    def init() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tidings", "nats", "init", "--url", nats_server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = await asyncio.to_thread(init)
    assert first.returncode == 0, first.stderr
    assert "created the quotas bucket TIDINGS_QUOTAS" in first.stdout
    info = await nc.jetstream().stream_info("KV_TIDINGS_QUOTAS")
    assert info.config.allow_direct and info.config.max_msgs_per_subject == 1
    again = await asyncio.to_thread(init)
    assert again.returncode == 0, again.stderr
    assert "quotas bucket" not in again.stdout + again.stderr


async def test_a_sidecar_follows_the_limits_again_after_nats_restarts(
    nats_server: EmbeddedNats, bucket: QuotaBucket, started: list[PublisherProcess], tmp_path: Path
) -> None:
    proc = await running(started, sidecar_process(nats_server, tmp_path, "one"))
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
        nats_server.stop()

        async def down() -> bool:
            return (await client.get("/readyz")).json()["nats"] != "connected"

        await until(down, timeout=10, what="the sidecar to see NATS gone")
        nats_server.start()
        nc = await nats.connect(nats_server.url)
        try:
            limits = TenantLimits("acme", Limits(rate=1.0, burst=1), by="test")
            await bucket.put_limits(nc.jetstream(), limits)  # while the sidecar reconnects
        finally:
            await nc.close()

        async def limited() -> bool:
            answers = [await client.post("/v1/notifications", json=body("probe")) for _ in range(2)]
            return answers[-1].status_code == 429

        await until(limited, timeout=15, what=f"the limit after the restart\n{proc.log()}")


async def test_two_sidecars_racing_store_exactly_the_daily_volume(
    nats_server: EmbeddedNats, bucket: QuotaBucket, started: list[PublisherProcess], tmp_path: Path
) -> None:
    daily = 15
    one, two = [
        await running(started, sidecar_process(nats_server, tmp_path, name, daily=str(daily)))
        for name in ("one", "two")
    ]

    async def flood(proc: PublisherProcess) -> list[int]:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
            return [
                (await client.post("/v1/notifications", json=body(f"{proc.port}-{i}"))).status_code
                for i in range(daily)
            ]

    codes = [c for answers in await asyncio.gather(flood(one), flood(two)) for c in answers]
    assert (codes.count(202), codes.count(429)) == (daily, daily)
    stored = await stored_notifications(nats_server.url)
    assert len([n for n in stored if n.event == "incident.created"]) == daily

    async def told() -> bool:
        return sorted(n.event for n in await notices(nats_server.url)) == [
            "quota.exceeded",
            "quota.warning",
        ]

    await until(told, timeout=10, what="one warning and one exceeded from two sidecars")


async def test_a_publisher_adds_its_last_count_when_it_closes(
    nats_settings: NatsSettings, bucket: QuotaBucket, js: JetStreamContext
) -> None:
    quota = QuotaSettings(enabled=True, daily=100_000, merge_interval=60)  # no merge meanwhile
    sdk = await Publisher.connect(nats_settings, quota=quota, within=5)
    await until(
        lambda: sdk.metrics.get_sample_value("tidings_publisher_quota_following") == 1,
        timeout=10,
        what="the SDK to follow the bucket",
    )
    for i in range(5):
        await sdk.publish(body(f"last-{i}"))
    await sdk.close()
    assert await bucket.count(js, day_of(time.time()), "acme") == 5
