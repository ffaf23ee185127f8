"""Revoke: a user, a token (``jti``) or a tenant refused on every gateway at once.

Two gateways (in this process) on one real nats-server share the revocation list in its KV
bucket. A revocation closes the matching connections on both (error ``token_revoked``, close
4003, which the clients treat as final), a reconnect with the same token is refused, a gateway
started later loads the list, and once the revocation's time is over the token is accepted
again. The admin API's refusals are precise (401, 403, 400 with their codes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from tests.support.waiting import until
from tests.support.wsclient import RawClient, ws_url
from tidings.client import Backoff, Publisher, SubscriberOptions, connect
from tidings.client.errors import Refused
from tidings.client.subscriber_events import Event, State, StateChanged
from tidings.codes import CloseCode, ErrorCode, Reconnect
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.registry import Registry
from tidings.gateway.retry import until_answered
from tidings.gateway.revoke import Revocation, RevocationBucket, RevocationList
from tidings.gateway.service import Gateway
from tidings.settings import Settings

Mint = Callable[..., str]
OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef"
pytestmark = pytest.mark.settings(gateway={"admin_token": OPERATOR_KEY})


def named(settings: Settings, name: str) -> Settings:
    return dataclasses.replace(settings, gateway=settings.gateway.model_copy(update={"id": name}))


@pytest.fixture
async def gateways(
    gateway_settings: Settings, js: JetStreamContext
) -> AsyncIterator[list[Gateway]]:
    """Two gateways; a test may append more (all stopped at the end)."""
    started: list[Gateway] = []
    try:
        for name in ("gw1", "gw2"):
            gw = Gateway(named(gateway_settings, name))
            await gw.start()
            started.append(gw)
        yield started
    finally:
        for gw in started:
            await gw.stop()


def api(gw: Gateway, key: str = OPERATOR_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gw.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


async def revoke(gw: Gateway, key: str = OPERATOR_KEY, **body: Any) -> dict[str, Any]:
    async with api(gw, key) as client:
        response = await client.post("/api/admin/revoke", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def connected(gw: Gateway, token: str) -> RawClient:
    client = RawClient(ws_url(gw))
    await client.__aenter__()
    await client.hello(token)
    await client.next("synced")
    return client


async def refused_at_hello(gw: Gateway, token: str) -> tuple[dict[str, Any], int | None]:
    """The error frame and close code a hello with ``token`` gets."""
    async with RawClient(ws_url(gw)) as client:
        await client.send({"type": "hello", "token": token})
        error = await client.next("error")
        code, _ = await client.closed()
    return error, code


async def accepted(gw: Gateway, token: str) -> bool:
    async with RawClient(ws_url(gw)) as client:
        await client.send({"type": "hello", "token": token})
        first = await client.next()
        return first["type"] == "welcome"


async def test_revoking_a_user_closes_it_on_every_gateway_and_refuses_its_tokens(
    gateways: list[Gateway], gateway_settings: Settings, js: JetStreamContext, token: Mint
) -> None:
    gw1, gw2 = gateways
    alice = token(tenant="acme", user="alice")
    clients = {
        "alice@gw1": await connected(gw1, alice),
        "alice@gw1b": await connected(gw1, token(tenant="acme", user="alice")),
        "alice@gw2": await connected(gw2, alice),
        "bob@gw2": await connected(gw2, token(tenant="acme", user="bob")),
        "globex-alice@gw1": await connected(gw1, token(tenant="globex", user="alice")),
    }
    try:
        answer = await revoke(gw1, tenant="acme", user="alice", reason="laptop stolen")
        assert (answer["closed"], answer["gateways"], answer["applied"]) == (3, 2, 2)
        revoked = answer["revoked"]
        assert (revoked["scope"], revoked["tenant"], revoked["user"]) == ("user", "acme", "alice")
        assert revoked["by"] == "operator" and revoked["reason"] == "laptop stolen"
        lifetime = gateway_settings.auth.max_token_lifetime
        assert revoked["until"] == pytest.approx(revoked["at"] + lifetime, abs=1)

        for name in ("alice@gw1", "alice@gw1b", "alice@gw2"):
            error = await clients[name].next("error")
            assert (error["code"], error["close"]) == ("token_revoked", 4003), name
            code, reason = await clients[name].closed()
            assert (code, reason) == (4003, "token_revoked"), name
        assert CloseCode(4003).reconnect is Reconnect.NEVER  # final for the Python client
        assert ErrorCode.TOKEN_REVOKED.close_code == 4003  # and for the JS one (REFUSING_CLOSES)

        # The others stay, and still receive.
        await Publisher(js).to_tenant("acme", "incident.created", title="still here", message="m")
        assert (await clients["bob@gw2"].notifications(1))[0]["title"] == "still here"
        assert await clients["globex-alice@gw1"].quiet(0.2) == []

        # A reconnect with the same token is refused on either gateway, and on one started later.
        for gw in (gw1, gw2):
            error, code = await refused_at_hello(gw, alice)
            assert (error["code"], code) == ("token_revoked", 4003)
        gw3 = Gateway(named(gateway_settings, "gw3"))
        await gw3.start()
        gateways.append(gw3)
        error, code = await refused_at_hello(gw3, alice)
        assert (error["code"], code) == ("token_revoked", 4003)
        assert await accepted(gw3, token(tenant="acme", user="bob"))

        # A token issued after the revocation is accepted (iat counts in whole seconds).
        await until(lambda: time.time() >= int(revoked["at"]) + 1, what="the next second")
        assert await accepted(gw2, token(tenant="acme", user="alice"))
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)


async def test_a_revoked_jti_is_refused_until_its_ttl_ends(
    gateways: list[Gateway], token: Mint
) -> None:
    gw1, gw2 = gateways
    stolen = token(tenant="acme", user="carol", claims={"jti": "tok-7/ä:any chars"})
    other = token(tenant="acme", user="carol", claims={"jti": "tok-8"})
    one, two, kept = (
        await connected(gw1, stolen),
        await connected(gw2, stolen),
        await connected(gw2, other),
    )
    try:
        answer = await revoke(gw2, tenant="acme", jti="tok-7/ä:any chars", ttl=2)
        assert (answer["closed"], answer["gateways"]) == (2, 2)
        assert answer["revoked"]["until"] - answer["revoked"]["at"] == pytest.approx(2)
        for client in (one, two):
            assert (await client.closed())[0] == 4003
        assert await kept.quiet(0.2) == []  # another token of the same user stays
        error, code = await refused_at_hello(gw1, stolen)
        assert (error["code"], code) == ("token_revoked", 4003)
        # Listed while in force (the operator sees what it revoked) ...
        async with api(gw1) as client:
            listed = (await client.get("/api/admin/revocations?tenant=acme")).json()
        assert [r["jti"] for r in listed["revocations"]] == ["tok-7/ä:any chars"]

        # ... and after its TTL the same token is accepted again, on both gateways.
        await until(lambda: accepted(gw1, stolen), timeout=8, what="the jti's TTL to end")
        assert await accepted(gw2, stolen)
    finally:
        for client in (one, two, kept):
            await client.__aexit__(None, None, None)


async def test_revoking_a_tenant_and_lifting_it(gateways: list[Gateway], token: Mint) -> None:
    gw1, gw2 = gateways
    users = [
        await connected(gw, token(tenant="acme", user=f"u{i}")) for i, gw in enumerate(gateways * 2)
    ]
    bystander = await connected(gw1, token(tenant="globex", user="u0"))
    try:
        answer = await revoke(gw1, tenant="acme")
        assert (answer["closed"], answer["revoked"]["scope"]) == (4, "tenant")
        for client in users:
            assert (await client.closed())[0] == 4003
        assert await bystander.quiet(0.2) == []
        error, _ = await refused_at_hello(
            gw2, token(tenant="acme", user="new", claims={"iat": int(time.time()) - 5})
        )
        assert error["code"] == "token_revoked"

        async with api(gw2) as client:
            lifted = await client.request("DELETE", "/api/admin/revoke", json={"tenant": "acme"})
        assert lifted.status_code == 200, lifted.text
        assert lifted.json()["gateways"] == 2
        assert lifted.json()["lifted"] == {"scope": "tenant", "tenant": "acme"}
        old = token(tenant="acme", user="new", claims={"iat": int(time.time()) - 5})
        await until(lambda: accepted(gw1, old), what="the lift to reach gw1")
        assert await accepted(gw2, old)
    finally:
        for client in (*users, bystander):
            await client.__aexit__(None, None, None)


async def test_the_python_client_treats_a_revocation_as_final(
    gateways: list[Gateway], token: Mint
) -> None:
    events: list[Event] = []
    options = SubscriberOptions(backoff=Backoff(base=0.05, max=0.2), on_event=events.append)
    sub = await connect(ws_url(gateways[0]), token=token(user="dave"), options=options)
    try:
        await revoke(gateways[1], tenant="acme", user="dave")
        with pytest.raises(Refused) as refused:
            async with asyncio.timeout(10):
                await anext(sub)
        assert (refused.value.error, refused.value.close_code) == ("token_revoked", 4003)
        assert sub.stats.reconnects == 0
        assert [e.state for e in events if isinstance(e, StateChanged)][-1] is State.CLOSED
    finally:
        await sub.close()


async def test_admin_api_refusals(gateways: list[Gateway], token: Mint) -> None:
    gw = gateways[0]
    admin = token(tenant="acme", user="root", roles=["admin"])
    cases: list[tuple[str, dict[str, Any] | bytes, int, str]] = [
        ("", {"tenant": "acme"}, 401, "token_missing"),
        ("garbage", {"tenant": "acme"}, 401, "token_malformed"),
        ("short-wrong-key", {"tenant": "acme"}, 401, "token_malformed"),
        (token(tenant="acme", user="eve"), {"tenant": "acme", "user": "x"}, 403, "forbidden"),
        (admin, {"tenant": "acme"}, 403, "forbidden"),  # a whole tenant: the operator only
        (admin, {"tenant": "globex", "user": "x"}, 403, "forbidden"),
        (OPERATOR_KEY, b"not json", 400, "malformed"),
        (OPERATOR_KEY, {"user": "x"}, 400, "missing_field"),
        (OPERATOR_KEY, {"tenant": "a.b"}, 400, "invalid_field"),
        (OPERATOR_KEY, {"tenant": "acme", "user": "x", "jti": "y"}, 400, "invalid_field"),
        (OPERATOR_KEY, {"tenant": "acme", "ttl": 0}, 400, "invalid_field"),
        (OPERATOR_KEY, {"tenant": "acme", "ttl": 10 * 86400}, 400, "invalid_field"),
        (OPERATOR_KEY, {"tenant": "acme", "reason": "x" * 201}, 400, "invalid_field"),
        (OPERATOR_KEY, b"x" * 5000, 413, "too_large"),
        # A field it does not take (a typo must not pass as a revocation of the whole tenant).
        (OPERATOR_KEY, {"tenant": "acme", "usr": "x"}, 400, "invalid_field"),
    ]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.api_port}") as client:
        for credential, body, status, code in cases:
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            if isinstance(body, bytes):
                response = await client.post("/api/admin/revoke", content=body, headers=headers)
            else:
                response = await client.post("/api/admin/revoke", json=body, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
                credential[:12],
                body,
            )
        # A query parameter a route does not take, or one given twice (schemathesis found
        # them answered as if absent: ?tenat=acme listed every tenant's revocations).
        operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        for method, path, query in [
            ("GET", "/api/admin/revocations", "tenat=acme"),
            ("GET", "/api/admin/revocations", "tenant=acme&tenant=globex"),
            ("GET", "/api/admin/presence", "tenant=acme&usr=x"),
            ("GET", "/api/admin/quotas", "x=1"),
            ("GET", "/api/admin/quota", "tenant=acme&x=1"),
            ("DELETE", "/api/admin/quota", "tenant=acme&x=1"),
            ("POST", "/api/admin/revoke", "tenant=acme"),
        ]:
            asked = await client.request(
                method, f"{path}?{query}", headers=operator, json={"tenant": "acme", "user": "x"}
            )
            assert (asked.status_code, asked.json()["error"]["code"]) == (400, "invalid_field"), (
                path,
                query,
            )
        status = await client.get(
            "/api/notifications/status?user=bob", headers={"Authorization": f"Bearer {admin}"}
        )
        assert (status.status_code, status.json()["error"]["code"]) == (400, "invalid_field")
        # A tenant's admin revokes its own users.
        ok = await client.post(
            "/api/admin/revoke",
            json={"tenant": "acme", "user": "x"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["revoked"]["by"] == "acme/root"
        # Nothing was stored by the refused ones: only acme/x is in force.
        listed = await client.get(
            "/api/admin/revocations", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}
        )
        assert [(r["scope"], r.get("user")) for r in listed.json()["revocations"]] == [
            ("user", "x")
        ]


async def test_revocations_survive_a_nats_restart_and_still_reach_every_gateway(
    gateways: list[Gateway], nats_server: EmbeddedNats, token: Mint
) -> None:
    gw1, gw2 = gateways
    erin = token(tenant="acme", user="erin", claims={"jti": "e-1"})
    await revoke(gw1, tenant="acme", jti="e-1")
    await asyncio.to_thread(nats_server.stop)
    # While NATS is away nothing can be revoked: a precise 503, never a 500.
    async with api(gw1) as client:
        refused = await client.post("/api/admin/revoke", json={"tenant": "acme", "user": "x"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "unavailable")
    await asyncio.to_thread(nats_server.start)
    await until(
        lambda: gw1.registry.healed and gw2.registry.healed,
        timeout=30,
        what="both gateways to heal after the restart",
    )
    # The list is still in force (a file-backed bucket) ...
    error, code = await refused_at_hello(gw2, erin)
    assert (error["code"], code) == ("token_revoked", 4003)
    # ... and each gateway follows it again: a new revocation closes on both.
    frank = [await connected(gw, token(tenant="acme", user="frank")) for gw in (gw1, gw2)]
    try:
        answer = await revoke(gw2, tenant="acme", user="frank")
        assert (answer["closed"], answer["gateways"], answer["applied"]) == (2, 2, 2)
        for client in frank:
            assert (await client.closed())[0] == 4003
    finally:
        for client in frank:
            await client.__aexit__(None, None, None)


async def test_a_refresh_with_a_revoked_token_closes_and_refusals_are_audited(
    gateways: list[Gateway], token: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    gw1, gw2 = gateways
    caplog.set_level(logging.INFO, logger="tidings.audit")
    await revoke(gw1, tenant="acme", jti="leaked")
    leaked = token(tenant="acme", user="gil", claims={"jti": "leaked"})
    client = await connected(gw2, token(tenant="acme", user="gil", claims={"jti": "fresh"}))
    try:
        await client.send({"type": "refresh", "token": leaked, "id": 1})
        error = await client.next("error")
        assert (error["code"], error["close"]) == ("token_revoked", 4003)
        assert (await client.closed())[0] == 4003
    finally:
        await client.__aexit__(None, None, None)
    forged = token(tenant="globex", user="x").rsplit(".", 1)[0] + "." + "A" * 43  # signed by no one
    await refused_at_hello(gw1, forged)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw1.api_port}") as http:
        status = await http.get(
            "/api/notifications/status", headers={"Authorization": f"Bearer {leaked}"}
        )
    assert (status.status_code, status.json()["error"]["code"]) == (403, "token_revoked")

    lines = [r.__dict__ for r in caplog.records if r.name == "tidings.audit"]
    refused = [
        (x["reason"], x["where"], x.get("tenant"), x.get("tenant_claimed"))
        for x in lines
        if x["msg"] == "authentication refused"
    ]
    assert ("token_revoked", "refresh", "acme", None) in refused
    assert ("token_invalid_signature", "hello", None, "globex") in refused
    admin = [x for x in lines if x["msg"] == "admin action"]
    assert [(x["action"], x["outcome"], x["actor"], x["scope"]) for x in admin] == [
        ("revoke", "ok", "operator", "jti")
    ]
    assert all(
        leaked not in r.getMessage() and leaked not in str(r.__dict__) for r in caplog.records
    )


LOADING = "revocations not loaded yet"


async def test_loading_the_list_at_start_waits_out_a_jetstream_that_does_not_answer(
    js: JetStreamContext, nc: NATS, nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    """What a gateway starting during a JetStream election does (``Gateway.start`` loads the
    list through ``until_answered``; its consumer needs the meta leader): the server is frozen
    (SIGSTOP) as the list is loaded; it is loaded once the
    server answers again within the bound, and past the bound the error rises (start fails,
    as before, rather than serving connections without the list)."""
    info = await js.stream_info("TIDINGS")
    writer = RevocationBucket(RevocationList(Registry(), max_lifetime=3600), stream="TIDINGS")
    await writer.ensure(js, like=info.config)
    await writer.put(js, Revocation(tenant="acme", user="mallory", at=time.time()))

    short = nc.jetstream(timeout=0.5)  # the gateway's requests time out at its request_timeout
    starting = RevocationBucket(RevocationList(Registry(), max_lifetime=3600), stream="TIDINGS")
    nats_server.send(signal.SIGSTOP)
    try:
        loading = asyncio.ensure_future(
            until_answered(lambda: starting.follow(short, 0.5), within=10.0, what=LOADING)
        )
        await asyncio.sleep(2.0)  # a try timed out; another is under way
        assert not loading.done()
    finally:
        nats_server.send(signal.SIGCONT)
    await asyncio.wait_for(loading, 10)
    assert [r.user for r in starting.revocations.active("acme")] == ["mallory"]
    assert f"{LOADING}; retrying" in caplog.messages
    await starting.stop()

    late = RevocationBucket(RevocationList(Registry(), max_lifetime=3600), stream="TIDINGS")
    nats_server.send(signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises((TimeoutError, NatsTimeoutError)):
            await until_answered(lambda: late.follow(short, 0.5), within=1.0, what=LOADING)
        assert time.monotonic() - began < 1.0 + 0.5 + 1.0  # the bound, one more try, slack
    finally:
        nats_server.send(signal.SIGCONT)
    await late.stop()
