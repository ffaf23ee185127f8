"""Revoke and presence with two gateways: how long until every connection is closed, what a
presence question costs, and what a `hello` pays for the revocation list (issue 14 item 4).

Starts a nats-server (from the wheel), provisions the stream, runs two gateways in this
process, connects ``--clients`` WebSocket clients spread over both (``--users`` users of one
tenant), then: times ``GET /api/admin/presence`` for the tenant (``--rounds`` times); revokes
each user in turn through the API and times the answer (every gateway confirmed) and the last
close a client saw; and times ``RevocationList.refusing`` for a hello against a list holding
``--entries`` revocations.

    python -m benchmarks.revoke --clients 1000 --users 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.tokens import JWT_SECRET
from tidings.auth import Claims, mint_token
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.registry import Registry
from tidings.gateway.revoke import Revocation, RevocationList
from tidings.gateway.service import Gateway
from tidings.nats import ensure_stream
from tidings.settings import AuthSettings, GatewaySettings, NatsSettings, Settings, StreamSettings

KEY = "benchmark-operator-key-0123456789abcdef"


def settings(url: str, name: str) -> Settings:
    return Settings(
        nats=NatsSettings(urls=[url]),
        auth=AuthSettings(jwt_secret=SecretStr(JWT_SECRET)),
        gateway=GatewaySettings(
            host="127.0.0.1",
            port=0,
            api_port=0,
            metrics_port=0,
            id=name,
            admin_token=KEY,
            connect_burst_per_tenant=100_000,
        ),
    )


async def client(port: int, token: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["tidings.v1.json"])  # type: ignore[list-item]
    await ws.send(f'{{"type":"hello","token":"{token}"}}')
    while b'"synced"' not in (await ws.recv(decode=False)):
        pass
    return ws


async def closed_at(ws: ClientConnection) -> float:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return time.perf_counter()


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} ms, max {max(values):.1f} ms"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp) / "nats").start()
        gateways: list[Gateway] = []
        sockets: list[ClientConnection] = []
        try:
            nc = await nats.connect(server.url)
            await ensure_stream(nc.jetstream(), StreamSettings())
            await nc.close()
            for name in ("gw1", "gw2"):
                gw = Gateway(settings(server.url, name))
                await gw.start()
                gateways.append(gw)
            by_user: dict[str, list[ClientConnection]] = {}
            for i in range(args.clients):
                user = f"u{i % args.users}"
                token = mint_token(JWT_SECRET, tenant="acme", user=user)
                ws = await client(gateways[i % 2].port, token)
                sockets.append(ws)
                by_user.setdefault(user, []).append(ws)
            base = f"http://127.0.0.1:{gateways[0].api_port}"
            auth = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
                presence = []
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    answer = (await http.get("/api/admin/presence?tenant=acme")).json()
                    presence.append((time.perf_counter() - began) * 1000)
                    assert answer["connections"] == args.clients, answer
                answered, last_close = [], []
                for user, users_sockets in by_user.items():
                    waits = [asyncio.ensure_future(closed_at(ws)) for ws in users_sockets]
                    began = time.perf_counter()
                    body = {"tenant": "acme", "user": user}
                    answer = (await http.post("/api/admin/revoke", json=body)).json()
                    answered.append((time.perf_counter() - began) * 1000)
                    assert answer["closed"] == len(users_sockets), answer
                    last_close.append((max(await asyncio.gather(*waits)) - began) * 1000)
        finally:
            for ws in sockets:
                await ws.close()
            for gw in gateways:
                await gw.stop()
            server.stop()

    hello = Claims("acme", "alice", jti="j-1", issued_at=time.time())
    revocations = RevocationList(Registry(), max_lifetime=7 * 86400.0)
    per_hello = {"empty": _per_call(revocations, hello)}
    for i in range(args.entries):
        rev = Revocation(tenant=f"t{i % 100}", user=f"u{i}", at=time.time())
        revocations.entries[rev.key] = rev
    per_hello[f"{args.entries} entries"] = _per_call(revocations, hello)
    return {
        "clients": args.clients,
        "users": args.users,
        "presence": ms(presence),
        "revoke answered (both gateways confirmed)": ms(answered),
        "revoke to the last client closed": ms(last_close),
        "clients per revoke": args.clients // args.users,
        "hello check (a token with a jti)": ", ".join(
            f"{k}: {v:.2f} us" for k, v in per_hello.items()
        ),
    }


def _per_call(revocations: RevocationList, hello: Claims, loops: int = 200_000) -> float:
    began = time.perf_counter()
    for _ in range(loops):
        revocations.refusing(hello)
    return (time.perf_counter() - began) / loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=10_000)
    result = asyncio.run(run(parser.parse_args()))
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
