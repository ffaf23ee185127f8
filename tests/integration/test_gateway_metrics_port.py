"""``/metrics`` on its own port, for real: a ``tidings gateway`` process serves Prometheus' text
only on ``TIDINGS_GATEWAY_METRICS_PORT``; the public ports (data, routed by the ingress, and the
status API) answer 404 there and leak no metric. A taken metrics port stops the process with
the setting named.
"""

from __future__ import annotations

import socket
from pathlib import Path

from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess, gateway_processes
from tidings.dev.embedded import EmbeddedNats


async def test_metrics_are_served_on_the_metrics_port_only(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with gateway_processes(1, nats_server.url, tmp_path) as (gw,):
        async with gw.http(metrics=True) as scrape:
            metrics = await scrape.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "tidings_gateway_connections 0.0" in metrics.text
            assert (await scrape.get("/ws")).status_code == 404  # nothing else there
        for public in (gw.http(), gw.http(api=True)):
            async with public as http:
                answer = await http.get("/metrics")
                assert answer.status_code == 404, http.base_url
                assert b"tidings_gateway" not in answer.content
        async with gw.http() as data:
            reason = (await data.get("/metrics")).json()["error"]["reason"]
            assert f"metrics port ({gw.metrics_port})" in reason


async def test_a_taken_metrics_port_stops_the_gateway_naming_the_setting(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = GatewayProcess(
            nats_server.url,
            log_file=tmp_path / "gw.log",
            env={"TIDINGS_GATEWAY_METRICS_PORT": str(port)},
        )
        gw.start()
        try:
            assert await gw.wait_exit(timeout=30) == 1
        finally:
            gw.terminate_now()
        log = gw.log()
        assert "TIDINGS_GATEWAY_METRICS_PORT" in log and str(port) in log, log
