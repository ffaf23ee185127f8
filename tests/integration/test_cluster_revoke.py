"""The revocation list in a 3-node cluster: the bucket takes the stream's replicas, and a
revocation made through a gateway on one node reaches a gateway on another, and survives the
loss of the node its bucket's leader was on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import nats
import pytest

from tests.support.tokens import JWT_SECRET
from tests.support.wsclient import RawClient, ws_url
from tidings.dev.cluster import NatsCluster
from tidings.gateway.service import Gateway
from tidings.nats import ensure_stream
from tidings.settings import AuthSettings, GatewaySettings, NatsSettings, Settings, StreamSettings

KEY = "operator-key-for-tests-0123456789abcdef"
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.usefixtures("collect_leftovers"),
]


def gateway_on(url: str, name: str) -> Gateway:
    return Gateway(
        Settings(
            nats=NatsSettings(urls=[url], reconnect_wait=0.2, request_timeout=5.0),
            auth=AuthSettings(jwt_secret=JWT_SECRET),  # type: ignore[arg-type]
            gateway=GatewaySettings(
                host="127.0.0.1", port=0, api_port=0, metrics_port=0, id=name, admin_token=KEY
            ),
        )
    )


async def test_the_bucket_is_r3_and_a_revocation_reaches_a_gateway_on_another_node(
    tmp_path: Path, token: Callable[..., str]
) -> None:
    with NatsCluster(tmp_path, size=3) as cluster:
        await cluster.wait_ready()
        nc = await nats.connect(cluster.urls)
        gateways: list[Gateway] = []
        try:
            js = nc.jetstream()
            await ensure_stream(js, StreamSettings(replicas=3))
            for i, url in enumerate(cluster.urls[:2]):
                gw = gateway_on(url, f"gw{i + 1}")
                await gw.start()
                gateways.append(gw)
            info = await js.stream_info("KV_TIDINGS_REVOKED")
            assert info.config.num_replicas == 3
            leader = await cluster.stream_leader("KV_TIDINGS_REVOKED")

            alice = token(tenant="acme", user="alice")
            async with RawClient(ws_url(gateways[1])) as client:
                await client.hello(alice)
                await client.next("synced")
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{gateways[0].api_port}",
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=15,
                ) as http:
                    answer = await http.post(
                        "/api/admin/revoke", json={"tenant": "acme", "user": "alice"}
                    )
                assert answer.status_code == 200, answer.text
                assert (answer.json()["closed"], answer.json()["gateways"]) == (1, 2)
                assert (await client.closed())[0] == 4003

            # The bucket's leader goes; the list is still there for a gateway that starts now.
            cluster.kill(leader)
            for stream in ("TIDINGS", "KV_TIDINGS_REVOKED"):  # elections over (start needs both)
                assert await cluster.stream_leader(stream) != leader
            alive = [u for i, u in enumerate(cluster.urls) if i != leader]
            gw3 = gateway_on(alive[-1], "gw3")
            await gw3.start()
            gateways.append(gw3)
            async with RawClient(ws_url(gw3)) as again:
                await again.send({"type": "hello", "token": alice})
                assert (await again.next("error"))["code"] == "token_revoked"
        finally:
            for gw in gateways:
                await gw.stop()
            await nc.close()
