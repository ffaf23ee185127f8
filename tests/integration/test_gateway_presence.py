"""Presence: who is connected, per tenant and per user, summed over every gateway.

Two gateway processes on a real nats-server, configured only through ``TIDINGS_*`` variables,
and the ``tidings presence`` / ``tidings revoke`` commands run as an operator runs them. The
counts come from each gateway's registry (no scan per question) and follow connections that
come and go; a tenant's admin sees its own tenant only.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tests.support.wsclient import RawClient
from tidings.dev.embedded import EmbeddedNats

Mint = Callable[..., str]
KEY = "operator-key-for-tests-0123456789abcdef"
ENV = {"TIDINGS_GATEWAY_ADMIN_TOKEN": KEY, "TIDINGS_GATEWAY_STATUS_TIMEOUT": "0.5"}


async def presence(gw: GatewayProcess, credential: str = KEY, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.api_port}", timeout=10) as c:
        return await c.get(
            "/api/admin/presence",
            params=params,
            headers={"Authorization": f"Bearer {credential}"},
        )


async def answer(gw: GatewayProcess, **params: str) -> dict[str, Any]:
    response = await presence(gw, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def tidings(*args: str) -> tuple[int, str, str]:
    """Run the CLI as a child process (no TIDINGS_* of this process leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_presence_sums_both_gateways_and_the_cli_revokes(
    nats_server: EmbeddedNats, js: JetStreamContext, token: Mint, tmp_path: Path
) -> None:
    async with gateway_processes(2, nats_server.url, tmp_path, env=ENV) as (gw1, gw2):
        placement = [
            (gw1, "acme", "alice"),
            (gw1, "acme", "alice"),
            (gw2, "acme", "alice"),
            (gw2, "acme", "bob"),
            (gw1, "globex", "alice"),
        ]
        clients = [RawClient(gw.ws_url) for gw, _, _ in placement]
        try:
            for c, (_, tenant, user) in zip(clients, placement, strict=True):
                await c.__aenter__()
                await c.hello(token(tenant=tenant, user=user))
                await c.next("synced")

            acme = await answer(gw2, tenant="acme")
            assert acme == {
                "tenant": "acme",
                "connections": 4,
                "gateways": 2,
                "users": [
                    {"user": "alice", "connections": 3},
                    {"user": "bob", "connections": 1},
                ],
                "truncated": False,
            }
            alice = await answer(gw1, tenant="acme", user="alice")
            assert alice == {"tenant": "acme", "user": "alice", "connections": 3, "gateways": 2}
            every = await answer(gw1)
            assert every["tenants"] == [
                {"tenant": "acme", "connections": 4},
                {"tenant": "globex", "connections": 1},
            ]
            assert (every["connections"], every["gateways"]) == (5, 2)
            nobody = await answer(gw1, tenant="quiet")
            assert (nobody["connections"], nobody["users"]) == (0, [])

            # A tenant's admin: its own tenant by default, never another one.
            admin = token(tenant="globex", user="root", roles=["admin"])
            own = await presence(gw1, admin)
            assert own.status_code == 200
            assert own.json()["users"] == [{"user": "alice", "connections": 1}]
            for params, status, code in (
                ({"tenant": "acme"}, 403, "forbidden"),
                ({"tenant": "bad.tenant"}, 400, "invalid_field"),
            ):
                refused = await presence(gw1, admin, **params)
                assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
            plain = await presence(gw1, token(tenant="globex", user="alice"))
            assert plain.status_code == 403
            assert (await presence(gw1, "wrong-key")).status_code == 401
            user_alone = await presence(gw1, user="alice")
            assert user_alone.json()["error"]["code"] == "missing_field"

            # Counts follow connections that leave.
            await clients[0].__aexit__(None, None, None)

            async def three() -> bool:
                return (await answer(gw1, tenant="acme"))["connections"] == 3

            await until(three, what="a closed connection to leave the counts")

            # The CLI: presence as JSON, then a revoke, in an operator's words.
            url = f"--url=http://127.0.0.1:{gw2.api_port}"
            code, out, err = await tidings(
                "presence", "--tenant", "acme", url, "--key", KEY, "--json"
            )
            assert code == 0, err
            assert orjson.loads(out)["users"][0] == {"user": "alice", "connections": 2}
            code, out, err = await tidings(
                "revoke",
                "--tenant",
                "acme",
                "--user",
                "alice",
                "--reason",
                "left",
                url,
                "--key",
                KEY,
            )
            assert code == 0, err
            assert "revoked user acme/alice: 2 connection(s) closed on 2 gateway(s)" in out
            for c in clients[1:3]:
                assert (await c.closed())[0] == 4003
            code, out, _ = await tidings("presence", "--tenant", "acme", url, "--key", KEY)
            assert "tenant acme: 1 connection(s) on 2 gateway(s)" in out
            assert "bob" in out and "alice" not in out
            # Refusals exit non-zero with the API's code: 2 for bad input, 1 for the rest.
            code, _, err = await tidings("revoke", "--tenant", "a.b", url, "--key", KEY)
            assert code == 2 and "invalid_field" in err
            code, _, err = await tidings("revoke", "--tenant", "acme", url, "--key", "x" * 40)
            assert code == 1 and "token_malformed" in err
            code, _, err = await tidings("revoke", "--tenant", "acme", url)
            assert code == 2 and "no credential" in err

            # Audited and counted: the revoke, and the refused credentials (never the token).
            async with httpx.AsyncClient() as scrape:
                text = (await scrape.get(f"http://127.0.0.1:{gw2.metrics_port}/metrics")).text
            assert (
                metric(text, "tidings_gateway_admin_actions_total", action="revoke", outcome="ok")
                == 1
            )
            assert (
                metric(text, "tidings_gateway_auth_failures_total", reason="token_malformed") >= 1
            )
            log = gw2.log_file.read_text()
            lines = [orjson.loads(x) for x in log.splitlines() if x.startswith("{")]
            audit = [x for x in lines if x.get("logger") == "tidings.audit"]
            revoked = [x for x in audit if x.get("action") == "revoke" and x["outcome"] == "ok"]
            assert revoked and revoked[0]["actor"] == "operator"
            assert (revoked[0]["tenant"], revoked[0]["user"], revoked[0]["closed"]) == (
                "acme",
                "alice",
                2,
            )
            refused_lines = [x for x in audit if x.get("message") == "authentication refused"]
            assert {x["reason"] for x in refused_lines} >= {"token_malformed"}
            assert KEY not in log and "x" * 40 not in log
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)
