"""The production shape on one machine: a 3-node NATS cluster (stream at R3), three gateway
processes behind a real nginx (tests/support/cluster_stack.py, the parts of
``tidings dev --nats-cluster 3 --gateways 3``), and the sidecar. Every client knows only the
ingress URL, as a browser does; nginx picks the gateway (round robin, no stickiness).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.support.cluster_stack import (
    ClusterStack,
    SidecarPublisher,
    alive,
    cluster_stack,
    connections,
)
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.waiting import until, wait_until
from tests.support.wsclient import RawClient
from tidings.client import Backoff
from tidings.client.subscriber_events import Recovered
from tidings.dev.ingress import children_of, worker_count
from tidings.ports import free_port, port_in_use

Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)
TENANTS = ("acme", "globex", "initech", "umbrella")
CLIENTS = 60


@pytest.mark.slow
async def test_a_gateway_killed_behind_nginx_every_client_resumes_through_it_exactly(
    tmp_path: Path, token: Mint
) -> None:
    async with cluster_stack(tmp_path, nodes=3, gateways=3) as stack:
        started = stack.pids()
        assert len(children_of(stack.ingress.pids()[0])) >= 1  # nginx's worker counts too
        nc = await nats.connect(stack.cluster.urls)
        js = nc.jetstream(timeout=5)
        info = await js.stream_info("TIDINGS")
        assert info.config.num_replicas == 3
        start = int(info.state.last_seq)

        fl = fleet(CLIENTS, [(stack.ingress.ws_url,)], tenants=TENANTS)
        sidecar = SidecarPublisher(stack.publisher.url)
        try:
            await fl.start(token, backoff=BACKOFF)
            # nginx spread the clients round robin: every gateway holds some.
            await until(
                lambda: _all_counted(stack),
                what="every client counted by a gateway",
                timeout=10,
            )
            before = await connections(stack)
            assert sum(before) == CLIENTS and min(before) > 0, before

            pub = SteadyPublisher(sidecar, rate=40, run="ng", tenants=TENANTS).start()
            await pub.until(40, timeout=20)
            victim = stack.gateways[0]
            await victim.kill()  # SIGKILL: no close frames, no drain
            await pub.until(len(pub.results) + 80, timeout=30)
            published = await pub.stop()
            # Every acknowledged publish stored once: distinct seqs, none a duplicate.
            assert not any(r.queued or r.duplicate for r in published)
            assert len({r.seq for r in published}) == len(published) >= 120

            stored = await read_stream(js, start=start + 1)
            assert [s.seq for s in stored] == sorted(r.seq for r in published if r.seq)
            late = await fl.wait_caught_up(stored, after=start, timeout=30)
            problems = fl.problems(stored, after=start)
            assert not late and not problems, "\n".join([*late, *problems])

            moved = [f for f in fl.followers if len(f.welcomed) > 1]
            assert len(moved) == before[0]  # exactly the victim's clients reconnected
            for f in moved:
                assert any(isinstance(e, Recovered) for e in f.events), f"{f.name} not resumed"
            after = await connections(stack)
            assert after[0] == 0 and sum(after) == CLIENTS, after
            # The status API answers through nginx too (the chart's /api/notifications path).
            async with httpx.AsyncClient(timeout=5) as http:
                resp = await http.get(
                    stack.ingress.api_url + "/status",
                    headers={"Authorization": f"Bearer {token(tenant='acme')}"},
                )
            assert resp.status_code == 200, resp.text
        finally:
            await fl.close()
            await sidecar.close()
            await nc.close()
    left = [pid for pid in started if alive(pid)]
    assert left == [], f"still running after the stack stopped: {left}"


async def _all_counted(stack: ClusterStack) -> bool:
    return sum(await connections(stack)) == CLIENTS


async def test_nginx_runs_from_its_own_directory(tmp_path: Path) -> None:
    """No system paths: config, pid, logs and temp files all live under the given directory."""
    from tidings.dev.ingress import Nginx, Upstream

    with Nginx(tmp_path / "ingress", [Upstream(1, 2)]) as ingress:
        pids = ingress.pids()
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.get(ingress.url + "/readyz")
        assert resp.status_code == 502  # nothing behind it: nginx itself answered
        pid_file = tmp_path / "ingress" / "nginx.pid"
        assert int(pid_file.read_text()) == ingress.pid
        conf = ingress.config_path.read_text()
        assert "/var/" not in conf and "/etc/" not in conf
    await asyncio.sleep(0)
    assert [p for p in pids if alive(p)] == []


# --- `tidings dev --nats-cluster 3 --gateways 3`, as a user runs it ------------------------------


def free_base(offsets: tuple[int, ...]) -> int:
    """A port ``p`` with ``p + o`` free on loopback for every offset (the dev stack's ports)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - max(offsets))
        if not any(port_in_use(base + o) for o in offsets):
            return base
    raise AssertionError("no free run of ports")


def test_tidings_dev_runs_a_cluster_behind_nginx_and_stops_all_of_it(tmp_path: Path) -> None:
    nats_port = free_base((0, 1, 2))
    gateway_port, api_port = free_base((0, 100, 200)), free_base((0, 100, 200))
    names = ("publisher", "demo", "ingress", "inbox", "inbox-api")
    others = {name: free_port() for name in names}
    metrics_port = free_base((0, 100, 200))
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "tidings", "dev", "--dir", str(state),
                "--nats-cluster", "3", "--gateways", "3",
                "--nats-port", str(nats_port), "--gateway-port", str(gateway_port),
                "--gateway-api-port", str(api_port), "--gateway-metrics-port", str(metrics_port),
                "--publisher-port", str(others["publisher"]), "--demo-port", str(others["demo"]),
                "--ingress-port", str(others["ingress"]),
                "--inbox-port", str(others["inbox"]),
                "--inbox-api-port", str(others["inbox-api"]),
            ],
            cwd=tmp_path, env=env, stdout=out, stderr=err,
        )  # fmt: skip
    info: dict[str, Any] = {}
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "err").read_text()
            with contextlib.suppress(OSError, ValueError):
                info.update(json.loads((state / "dev.json").read_text()))
            return bool(info)

        wait_until(up, timeout=60, what="tidings dev did not write dev.json")
        ingress = f"127.0.0.1:{others['ingress']}"
        assert info["ingress"] == {
            "url": f"http://{ingress}",
            "ws": f"ws://{ingress}/ws",
            "api": f"http://{ingress}/api/notifications",
        }
        assert info["nats"]["url"] == ",".join(
            f"nats://127.0.0.1:{nats_port + i}" for i in range(3)
        )
        assert [info[f"gateway-{i}"]["ws"] for i in (1, 2, 3)] == [
            f"ws://127.0.0.1:{gateway_port + 100 * i}/ws" for i in range(3)
        ]
        # dev.json is written just before the announcement: wait for it on stdout too.
        wait_until(
            lambda: f"ws://{ingress}/ws" in (tmp_path / "out").read_text(),
            timeout=10,
            what="tidings dev did not print the ingress URL",
        )
        demo = httpx.get(info["demo"]["url"] + "config.json", timeout=5).json()
        assert demo["ws"] == f"ws://{ingress}/ws"  # the demo page connects through nginx
        asyncio.run(_round_trip_through_the_ingress(info))
        pids = [int(p) for p in info["pids"].values()]
        workers = children_of(info["pids"]["ingress"])
        assert len(workers) == worker_count()  # nginx's workers, all started
        pids += workers
        # supervisor, nats x3, sidecar, gw x3, inbox writer and API, demo, nginx master
        assert len(pids) == 1 + 3 + 1 + 3 + 2 + 1 + 1 + worker_count()
        assert all(alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, (tmp_path / "err").read_text()
    assert [p for p in pids if alive(p)] == []
    assert not port_in_use(others["ingress"])
    assert not [p for p in (nats_port, nats_port + 1, nats_port + 2) if port_in_use(p)]


async def _round_trip_through_the_ingress(info: dict[str, Any]) -> None:
    """The dev token connects through nginx, and a publish through the sidecar arrives."""
    async with RawClient(info["ingress"]["ws"]) as client:
        welcome = await client.hello(info["token"])
        assert (welcome["tenant"], welcome["user"]) == ("demo", "alice")
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(
                info["publisher"]["url"] + "/v1/notifications",
                json={
                    "tenant": "demo",
                    "event": "incident.created",
                    "title": "through nginx",
                    "message": "m",
                    "audience": {"user": "alice"},
                },
            )
        assert resp.status_code == 202, resp.text
        seen = await client.next("notification", timeout=10)
        assert (seen["seq"], seen["title"]) == (resp.json()["seq"], "through nginx")
