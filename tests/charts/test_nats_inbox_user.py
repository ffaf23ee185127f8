"""The inbox's NATS user (issue 11): ``tidings-inbox`` in charts/nats-values.yaml lets the
writer and the API do their work and nothing else. The chart's rendered containers (the
migration hook, the writer, the API, a gateway with the inbox on) run against a nats-server
configured from the values file, each with the credentials the chart gives it: the writer binds
its durable consumer, stores and acks; the API answers the gateway's session question and
publishes changes (one user's, a tenant's); no permission is refused on the way. Then the
inbox user tries what it must not do, and is refused each time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.charts.pods import LocalContainer
from tests.charts.rendering import Rendered, merge, pod_spec, render
from tests.charts.test_chart_processes import (
    JWT_SECRET,
    SECRETS,
    GatewayPod,
    SecuredNats,
    init_job,
    nats_user,
    secured,  # noqa: F401 (the fixture)
    values,
    violation,
)
from tests.support.waiting import until
from tests.support.wsclient import RawClient
from tidings.auth import mint_token
from tidings.client import Publisher
from tidings.ports import free_port


def _container(rendered: Rendered, kind: str, name: str, root: Path, **kw: Any) -> LocalContainer:
    workload = rendered.get(kind, name)
    return LocalContainer(rendered, workload, pod_spec(workload)["containers"][0]["name"],
                          root=root, **kw)  # fmt: skip


@contextlib.contextmanager
def running(*containers: LocalContainer) -> Iterator[None]:
    try:
        for c in containers:
            c.start()
        yield
    finally:
        for c in reversed(containers):
            c.stop()


async def answers(url: str, what: str, container: LocalContainer) -> None:
    async def ready() -> bool:
        assert container.process is not None and container.process.poll() is None, container.log()
        async with httpx.AsyncClient(timeout=2) as client:
            try:
                return (await client.get(url)).status_code == 200
            except httpx.TransportError:
                return False

    await until(ready, timeout=60, what=f"{what}\n{container.log()}")


def bearer(user: str, **claims: Any) -> dict[str, str]:
    token = mint_token(JWT_SECRET, tenant="acme", user=user, **claims)
    return {"Authorization": f"Bearer {token}"}


async def test_the_inbox_user_lets_writer_and_api_work_and_nothing_more(
    secured: SecuredNats,  # noqa: F811
    tmp_path: Path,
) -> None:
    credentials = {
        component: {"method": "password", "user": f"tidings-{user}",
                    "existingSecret": f"tidings-nats-{user}"}
        for component, user in (("gateway", "gateway"), ("init", "admin"), ("inbox", "inbox"))
    }  # fmt: skip
    rendered = render(
        merge(
            values(
                nats={"urls": [secured.url], "credentials": credentials},
                auth={"existingSecret": "tidings-jwt"},
            ),
            {"inbox": {"enabled": True, "database": {"existingSecret": "inbox-db"}}},
        )
    )
    secrets = {**SECRETS, "inbox-db": {"database-url": f"sqlite:///{tmp_path / 'inbox.db'}"}}
    for job in (
        init_job(rendered, tmp_path / "init", secrets=secrets),
        _container(rendered, "Job", "inbox-migrate", tmp_path / "migrate", secrets=secrets),
    ):
        done = await asyncio.to_thread(job.run, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    writer_port, api_port = free_port(), free_port()
    writer = _container(
        rendered, "Deployment", "inbox-writer", tmp_path / "writer", secrets=secrets,
        env={"TIDINGS_INBOX_HOST": "127.0.0.1", "TIDINGS_INBOX_PORT": str(writer_port)},
    )  # fmt: skip
    api = _container(
        rendered, "Deployment", "inbox-api", tmp_path / "api", secrets=secrets,
        env={"TIDINGS_INBOX_API_HOST": "127.0.0.1", "TIDINGS_INBOX_API_PORT": str(api_port),
             "TIDINGS_INBOX_PORT": str(free_port())},
    )  # fmt: skip
    for c in (writer, api):
        assert c.env["TIDINGS_NATS_USER"] == "tidings-inbox"  # the chart gives it that user
    gateway = GatewayPod(rendered, tmp_path / "gateway", secrets=secrets)
    assert gateway.c.env["TIDINGS_GATEWAY_INBOX"] == "true"
    inbox_api = f"http://127.0.0.1:{api_port}/v1/inbox"

    with running(writer, api, gateway.c):
        await answers(f"http://127.0.0.1:{writer_port}/readyz", "the writer's readiness", writer)
        await answers(f"http://127.0.0.1:{api_port}/readyz", "the API's readiness", api)
        await gateway.wait_ready()
        async with (
            nats_user(secured.url, "publisher") as (pub_nc, _),
            httpx.AsyncClient(base_url=inbox_api, timeout=5) as http,
        ):
            publisher = Publisher(pub_nc.jetstream())
            for title in ("one", "two"):
                await publisher.publish(
                    {"tenant": "acme", "event": "incident.created", "title": title,
                     "message": "m"}
                )  # fmt: skip

            async def stored() -> bool:
                got = await http.get("/counts", headers=bearer("alice"))
                return bool(got.status_code == 200 and got.json()["unread"] == 2)

            await until(stored, timeout=30, what=f"the writer stored both\n{writer.log()}")
            async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as alice:
                welcome = await alice.hello(mint_token(JWT_SECRET, tenant="acme", user="alice"))
                assert welcome["inbox"]["unread"] == 2, welcome  # the session question answered
                items = (await http.get("/notifications", headers=bearer("alice"))).json()
                marked = await http.post(
                    "/state", json={"ids": [items["items"][0]["id"]], "read": True},
                    headers=bearer("alice"),
                )  # fmt: skip
                assert marked.status_code == 200, marked.text
                assert (await alice.next("inbox"))["counts"]["unread"] == 1  # a user's change
                mute = {"domains": {"incident": {"in_app": False}}}
                admin = bearer("root", roles=["admin"])
                answer = await http.put("/preferences/defaults", json=mute, headers=admin)
                assert answer.status_code == 200, answer.text
                assert (await alice.next("inbox"))["muted"] == ["incident"]  # the tenant's

    # The writer acked everything it stored: nothing waits on its durable consumer.
    async with nats_user(secured.url, "inbox") as (nc, errors):
        info = await nc.jetstream().consumer_info("TIDINGS", "tidings-inbox")
        assert info.num_pending == 0 and info.num_ack_pending == 0
        assert [v for v in secured.violations() if "tidings-inbox" in v] == []

        # ... and nothing more is allowed.
        refused_publish = (
            "tenant.acme.incident.created",
            "live.tenant.acme.incident.created",
            "$JS.API.STREAM.DELETE.TIDINGS",
            "$JS.API.CONSUMER.DURABLE.CREATE.TIDINGS.other",
            "$JS.API.CONSUMER.CREATE.TIDINGS",
            "$JS.ACK.TIDINGS.gateway-replay.1.1.1.1.0",
            "tidings.inbox.session",
            "tidings.gateway.status",
        )
        for subject in refused_publish:
            await nc.publish(subject, b"{}")
            await violation(errors, subject)
        for subject in ("live.>", "_INBOX_gateway.>", "_INBOX.>", "tidings.inbox.changed.>", ">"):
            await nc.subscribe(subject)
            await violation(errors, subject)
