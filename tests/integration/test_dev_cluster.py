"""The production shape on one machine: a 3-node NATS cluster (stream at R3), three gateway
processes behind a real nginx (tests/support/cluster_stack.py, the parts of
``tidings dev --nats-cluster 3 --gateways 3``), and the sidecar. Every client knows only the
ingress URL, as a browser does; nginx picks the gateway (round robin, no stickiness).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import nats
import pytest

from tests.support.cluster_stack import ClusterStack, SidecarPublisher, cluster_stack
from tests.support.load_clients import SteadyPublisher, fleet, read_stream
from tests.support.publisher_process import metric
from tests.support.waiting import until
from tidings.client import Backoff
from tidings.client.subscriber_events import Recovered
from tidings.dev.ingress import children_of

Mint = Callable[..., str]
BACKOFF = Backoff(base=0.2, max=1.0)
TENANTS = ("acme", "globex", "initech", "umbrella")
CLIENTS = 60


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def connections(stack: ClusterStack) -> list[float]:
    """Open WebSockets per running gateway (its own /metrics, not through nginx)."""
    counts = []
    for gw in stack.gateways:
        if not gw.running:
            counts.append(0.0)
            continue
        async with gw.http() as http:
            text = (await http.get("/metrics")).text
        counts.append(metric(text, "tidings_gateway_connections"))
    return counts


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
