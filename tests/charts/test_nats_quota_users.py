"""Publish quotas under the NATS users of charts/nats-values.yaml: `tidings nats init` (the admin
user) creates the quotas bucket, the gateway (its user) writes a tenant's limits, a sidecar and
an SDK publisher (the publisher and broadcaster users) follow them, count, and tell the tenant's
admins, with no permission refused on the way. A producer can neither write a limit nor drop
the bucket.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.charts.test_chart_processes import (
    PASSWORDS,
    SecuredNats,
    nats_user,
    secured,  # noqa: F401 (the fixture)
    violation,
)
from tests.support.publisher_process import metric, sidecar
from tests.support.waiting import until
from tidings.cli.stream import ensure_quota_bucket
from tidings.client import Publisher
from tidings.envelope import Notification
from tidings.gateway.service import Gateway
from tidings.nats import provision
from tidings.settings import (
    AuthSettings,
    GatewaySettings,
    NatsSettings,
    PublisherSettings,
    QuotaSettings,
    Settings,
)

KEY = "operator-key-for-chart-quota-tests-0123"


def as_user(url: str, user: str) -> NatsSettings:
    return NatsSettings(
        urls=[url], user=f"tidings-{user}", password=PASSWORDS[user], reconnect_wait=0.2
    )


def body(title: str, tenant: str = "acme") -> dict[str, str]:
    return {"tenant": tenant, "event": "incident.created", "title": title, "message": "m"}


async def test_quotas_work_under_the_chart_users_and_a_producer_cannot_change_them(
    secured: SecuredNats,  # noqa: F811
    tmp_path: Path,
) -> None:
    admin = Settings(nats=as_user(secured.url, "admin"))
    await provision(admin.nats, admin.stream)
    assert await ensure_quota_bucket(admin) is True
    assert await ensure_quota_bucket(admin) is False  # idempotent, as the hook runs each upgrade
    gateway = Gateway(
        Settings(
            nats=as_user(secured.url, "gateway"),
            auth=AuthSettings(jwt_secret="chart-quota-secret-0123456789abcdef"),
            gateway=GatewaySettings(
                host="127.0.0.1", port=0, api_port=0, metrics_port=0, admin_token=KEY
            ),
        )
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.api_port}",
            headers={"Authorization": f"Bearer {KEY}"},
        ) as api:
            answer = await api.put("/api/admin/quota", json={"tenant": "acme", "daily": 3})
            assert answer.status_code == 200, answer.text
            listed = await api.get("/api/admin/quotas")
            assert listed.status_code == 200, listed.text
            assert [q["tenant"] for q in listed.json()["quotas"]] == ["acme"]
            publisher = Settings(
                nats=as_user(secured.url, "publisher"),
                publisher=PublisherSettings(outbox_dir=tmp_path / "outbox"),
                quota=QuotaSettings(enabled=True),
            )
            async with sidecar(publisher) as (_app, client):

                async def following() -> bool:
                    page = (await client.get("/metrics")).text
                    return metric(page, "tidings_publisher_quota_following") == 1.0

                await until(following, timeout=10, what="the sidecar to follow the bucket")
                codes = [
                    (await client.post("/v1/notifications", json=body(f"n{i}"))).status_code
                    for i in range(4)
                ]
                assert codes == [202, 202, 202, 429]
                page = (await client.get("/metrics")).text
                assert metric(page, "tidings_publisher_quota_unavailable_total") == 0.0

                async def noticed() -> bool:
                    return (
                        metric(
                            (await client.get("/metrics")).text,
                            "tidings_publisher_quota_notices_total",
                            kind="daily-exceeded",
                        )
                        == 1.0
                    )

                await until(noticed, timeout=10, what="the exceeded notice")
            used = await api.get("/api/admin/quota", params={"tenant": "acme"})
            assert used.json()["used_today"] == 3, used.text
        # The SDK with the broadcaster's credentials (a publisher with the broadcast right).
        sdk = await Publisher.connect(
            as_user(secured.url, "broadcaster"), quota=QuotaSettings(enabled=True), within=5
        )
        try:
            await until(
                lambda: sdk.metrics.get_sample_value("tidings_publisher_quota_following") == 1,
                timeout=10,
                what="the SDK to follow the bucket",
            )
            with_sdk = await sdk.publish(body("sdk", "globex"))
            assert with_sdk.seq is not None
        finally:
            await sdk.close()
        js = gateway.link.js
        info = await js.stream_info("TIDINGS")
        stored = [
            Notification.from_bytes((await js.get_msg("TIDINGS", seq, direct=True)).data or b"")
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        assert sorted(n.event for n in stored if n.event.startswith("quota.")) == [
            "quota.exceeded",
            "quota.warning",
        ]
    finally:
        await gateway.stop()
    assert secured.violations() == []
    async with nats_user(secured.url, "publisher") as (pub, errors):
        for subject in (
            "$KV.TIDINGS_QUOTAS.limit.acme",  # raise its own quota
            "$JS.API.STREAM.PURGE.KV_TIDINGS_QUOTAS",
            "$JS.API.STREAM.DELETE.KV_TIDINGS_QUOTAS",
        ):
            await pub.publish(subject, b"{}")
            await violation(errors, subject)
