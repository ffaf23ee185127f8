"""Connect-rate limits (issue 14 item 3) on a real gateway: per client address before the
upgrade (429 + Retry-After, picows never involved), per tenant at hello (``rate_limited``,
close 4029: back off), each counted; other tenants unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.support.publisher_process import metric
from tests.support.wsclient import RawClient, ws_url
from tidings.gateway.service import Gateway

Mint = Callable[..., str]


async def refused(gw: Gateway, scope: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.metrics_port}", timeout=5) as http:
        text = (await http.get("/metrics")).text
    return metric(text, "tidings_gateway_connects_refused_total", scope=scope)


async def raw_get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.settings(gateway={"connect_rate_per_ip": 0.5, "connect_burst_per_ip": 3})
async def test_too_many_connections_from_one_address_get_429_with_retry_after(
    gateway: Gateway,
) -> None:
    answers = [await raw_get(gateway.port) for _ in range(3)]
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    answer = await raw_get(gateway.port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests")
    assert b"\r\nRetry-After: 2\r\n" in head  # one connect in 2 s
    assert orjson.loads(body)["error"]["code"] == "rate_limited"
    # counted (this scrape itself is refused too: read the counter in process)
    assert gateway.metrics.connects_refused.labels("ip")._value.get() == 1


@pytest.mark.settings(gateway={"connect_rate_per_tenant": 0.5, "connect_burst_per_tenant": 2})
async def test_too_many_connections_of_one_tenant_are_rate_limited_at_hello(
    gateway: Gateway, token: Mint
) -> None:
    for _ in range(2):
        async with RawClient(ws_url(gateway)) as c:
            await c.hello(token(tenant="acme"))
    async with RawClient(ws_url(gateway)) as c:
        await c.send({"type": "hello", "token": token(tenant="acme")})
        error = await c.next("error")
        assert error["code"] == "rate_limited"
        assert error["close"] == 4029
        assert "retry in" in error["reason"]
    async with RawClient(ws_url(gateway)) as c:  # another tenant has its own bucket
        assert (await c.hello(token(tenant="globex")))["type"] == "welcome"
    assert await refused(gateway, "tenant") == 1
