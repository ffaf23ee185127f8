"""Issue 11 items 4 and 5, end to end with every process real: nats-server, the inbox writer, the
inbox API, a gateway with the inbox on, and two "devices" of one user on WebSockets.

The welcome carries the counts the API computes; a mark read over REST on one device reaches the
other within a second as an ``inbox`` frame; a muted domain set over REST stops reaching the
user's connections live at once (not another user's, never a critical one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from nats.js import JetStreamContext

from tests.support.gateway_process import gateway_processes
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until
from tests.support.wsclient import RawClient
from tidings.auth import mint_token
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port

Mint = Callable[..., str]


class Child:
    """``python -m tidings <args>`` configured by TIDINGS_* only, stopped by its PID."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.args, self.env, self.log, self.port = args, env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> Child:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tidings", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:

            async def ready() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await until(ready, what=f"tidings {' '.join(self.args)} ready", timeout=30)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@asynccontextmanager
async def inbox_processes(nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """The writer (it migrates the database first) and the API on it; the API's base URL."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env = {
        **base,
        "TIDINGS_NATS_URLS": nats_url,
        "TIDINGS_INBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
        "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
        "TIDINGS_LOG_FORMAT": "json",
    }
    writer_port, api_port = free_port(), free_port()
    writer = Child(
        ["inbox", "writer"],
        {**env, "TIDINGS_INBOX_MIGRATE": "true", "TIDINGS_INBOX_PORT": str(writer_port)},
        tmp_path / "writer.log",
        writer_port,
    )
    api = Child(
        ["inbox", "api"],
        {**env, "TIDINGS_INBOX_API_PORT": str(api_port), "TIDINGS_INBOX_PORT": str(free_port())},
        tmp_path / "api.log",
        api_port,
    )
    try:
        await writer.start()
        await api.start()
        yield f"http://127.0.0.1:{api_port}"
    finally:
        api.stop()
        writer.stop()


def bearer(tenant: str = "acme", user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(JWT_SECRET, tenant=tenant, user=user)}"}


def unread(frame: dict[str, Any]) -> int:
    return int(frame["counts"]["unread"])


async def test_read_on_one_device_reaches_the_other_and_muting_stops_live_delivery(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    pub = Publisher(js)
    env = {"TIDINGS_GATEWAY_INBOX": "true", "TIDINGS_GATEWAY_INBOX_TIMEOUT": "1"}
    async with (
        inbox_processes(nats_server.url, tmp_path / "inbox") as api_url,
        gateway_processes(1, nats_server.url, tmp_path, env=env) as (gw,),
        httpx.AsyncClient(base_url=api_url, timeout=5) as http,
    ):
        for i in range(3):
            await pub.publish(
                {"tenant": "acme", "event": "incident.created", "title": f"n{i}", "message": "m"}
            )

        async def stored() -> bool:
            got = await http.get("/v1/inbox/counts", headers=bearer())
            return bool(got.status_code == 200 and got.json()["total"] == 3)

        await until(stored, what="the writer stored the three notifications", timeout=15)
        async with (
            RawClient(gw.ws_url) as phone,
            RawClient(gw.ws_url) as laptop,
            RawClient(gw.ws_url) as bob,
        ):
            welcome = await phone.hello(token())
            assert welcome["inbox"]["unread"] == 3
            assert welcome["inbox"]["unread_by_severity"]["info"] == 3
            assert (await laptop.hello(token()))["inbox"]["unread"] == 3
            assert (await bob.hello(token(user="bob")))["inbox"]["unread"] == 3

            # The phone marks one read over REST; the laptop hears it within a second.
            items = (await http.get("/v1/inbox/notifications", headers=bearer())).json()["items"]
            first = items[0]["id"]
            started = time.monotonic()
            answer = await http.post(
                "/v1/inbox/state", headers=bearer(), json={"ids": [first], "read": True}
            )
            assert answer.status_code == 200, answer.text
            frame = await laptop.next("inbox", timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert frame["ids"] == [first]
            assert frame["set"] == {"read": True}
            assert unread(frame) == 2
            assert frame["counts"] == answer.json()["counts"]
            assert unread(await phone.next("inbox")) == 2  # the device that acted, too
            assert [f for f in await bob.quiet(0.3) if f["type"] == "inbox"] == []

            # Mark all read from the laptop: the phone follows.
            await http.post("/v1/inbox/mark-all", headers=bearer(), json={"read": True})
            frame = await phone.next("inbox", timeout=1.0)
            assert frame.get("all") is True
            assert unread(frame) == 0
            await laptop.next("inbox")

            # Mute incidents in-app: both devices are told, and live incidents stop (for alice).
            prefs = await http.put(
                "/v1/inbox/preferences",
                headers=bearer(),
                json={"domains": {"incident": {"in_app": False}}},
            )
            assert prefs.status_code == 200, prefs.text
            for device in (phone, laptop):
                assert (await device.next("inbox", timeout=1.0))["muted"] == ["incident"]
            await pub.publish(
                {"tenant": "acme", "event": "incident.updated", "title": "quiet", "message": "m"}
            )
            await pub.publish(
                {"tenant": "acme", "event": "incident.created", "title": "loud", "message": "m"}
                | {"severity": "critical"}
            )
            got = await phone.next("notification")
            assert got["title"] == "loud"  # critical cannot be muted; "quiet" never came
            assert (await laptop.next("notification"))["title"] == "loud"
            titles = [n["title"] for n in await bob.notifications(2)]
            assert titles == ["quiet", "loud"]  # bob muted nothing

        # A new connection learns the muted set at hello: incidents stay away.
        async with RawClient(gw.ws_url) as tablet:
            welcome = await tablet.hello(token())
            assert "inbox" in welcome
            await tablet.next("synced")
            await pub.publish(
                {"tenant": "acme", "event": "incident.updated", "title": "q2", "message": "m"}
            )
            await pub.publish(
                {"tenant": "acme", "event": "audit.created", "title": "a1", "message": "m"}
            )
            assert (await tablet.next("notification"))["title"] == "a1"


async def test_a_tenant_default_reaches_every_user_of_the_tenant_with_their_own_bell(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    """An admin mutes a domain for the tenant: every connected user of it is told at once,
    each with their own counts and muted set (an override of their own wins); another tenant's
    users hear nothing; live delivery follows."""
    pub = Publisher(js)
    env = {"TIDINGS_GATEWAY_INBOX": "true", "TIDINGS_GATEWAY_INBOX_TIMEOUT": "1"}
    admin = {
        "Authorization": "Bearer "
        + mint_token(JWT_SECRET, tenant="acme", user="root", roles=["admin"])
    }
    async with (
        inbox_processes(nats_server.url, tmp_path / "inbox") as api_url,
        gateway_processes(1, nats_server.url, tmp_path, env=env) as (gw,),
        httpx.AsyncClient(base_url=api_url, timeout=5) as http,
    ):
        for tenant in ("acme", "acme", "acme", "globex"):
            await pub.publish(
                {"tenant": tenant, "event": "incident.created", "title": "i", "message": "m"}
            )

        async def stored() -> bool:
            got = await http.get("/v1/inbox/counts", headers=bearer())
            return bool(got.status_code == 200 and got.json()["total"] == 3)

        await until(stored, what="the writer stored the notifications", timeout=15)
        # Bob keeps incidents in-app whatever the tenant says.
        keep = {"domains": {"incident": {"in_app": True}}}
        assert (
            await http.put("/v1/inbox/preferences", headers=bearer(user="bob"), json=keep)
        ).is_success
        async with (
            RawClient(gw.ws_url) as alice,
            RawClient(gw.ws_url) as bob,
            RawClient(gw.ws_url) as carol,
        ):
            assert (await alice.hello(token()))["inbox"]["unread"] == 3
            assert (await bob.hello(token(user="bob")))["inbox"]["unread"] == 3
            assert (await carol.hello(token(tenant="globex", user="carol")))["inbox"]["unread"] == 1
            for ws in (alice, bob, carol):
                await ws.next("synced")

            started = time.monotonic()
            mute = {"domains": {"incident": {"in_app": False}}}
            answer = await http.put("/v1/inbox/preferences/defaults", headers=admin, json=mute)
            assert answer.status_code == 200, answer.text
            frame = await alice.next("inbox", timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert frame["muted"] == ["incident"]
            assert frame["counts"]["total"] == 0 and unread(frame) == 0
            frame = await bob.next("inbox", timeout=1.0)
            assert frame["muted"] == [] and unread(frame) == 3  # his own override wins
            assert [f for f in await carol.quiet(0.3) if f["type"] == "inbox"] == []

            await pub.publish(
                {"tenant": "acme", "event": "incident.updated", "title": "quiet", "message": "m"}
            )
            await pub.publish(
                {"tenant": "acme", "event": "audit.created", "title": "a1", "message": "m"}
            )
            assert (await alice.next("notification"))["title"] == "a1"  # "quiet" never came
            assert [n["title"] for n in await bob.notifications(2)] == ["quiet", "a1"]
