"""The rendered containers, run for real: the command each image runs, with the env and files
the chart gives it, against a real nats-server (see tests/charts/pods.py for what stands in for
the kubelet). A reviewer's questions answered by running: does the init hook converge the
stream, do the probes hit real routes, does the drain fit the grace period, does the sidecar
example publish, and do the NATS permissions in charts/nats-values.yaml let each process do its
work and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from tests.charts.pods import LocalContainer, skaffold_image_values
from tests.charts.rendering import REPO, Rendered, merge, render
from tests.support.waiting import until
from tests.support.wsclient import RawClient
from tidings.auth import mint_token
from tidings.dev.embedded import EmbeddedNats, nats_server_binary, wait_for_port
from tidings.nats import stream_epoch
from tidings.ports import free_port

NATS_VALUES = REPO / "charts" / "nats-values.yaml"


def values(**extra: Any) -> dict[str, Any]:
    """Chart values for a local run: skaffold's images, one stream replica (one server)."""
    return merge(merge(skaffold_image_values(), {"stream": {"replicas": 1}}), extra)


async def http_status(url: str) -> int | None:
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            return (await client.get(url)).status_code
        except httpx.TransportError:
            return None


@contextlib.contextmanager
def running(container: LocalContainer) -> Iterator[LocalContainer]:
    """Start the container's process; on exit stop it (SIGTERM, then SIGKILL by PID)."""
    container.start()
    try:
        yield container
    finally:
        container.stop()


class GatewayPod:
    """The gateway Deployment's container on a free loopback port (the one test override)."""

    def __init__(self, rendered: Rendered, root: Path, **kw: Any) -> None:
        workload = rendered.get("Deployment", "gateway")
        self.port, self.api_port, self.metrics_port = free_port(), free_port(), free_port()
        self.c = LocalContainer(
            rendered,
            workload,
            "gateway",
            root=root,
            env={
                "TIDINGS_GATEWAY_HOST": "127.0.0.1",
                "TIDINGS_GATEWAY_PORT": str(self.port),
                "TIDINGS_GATEWAY_API_PORT": str(self.api_port),
                "TIDINGS_GATEWAY_METRICS_PORT": str(self.metrics_port),
            },
            **kw,
        )
        self.spec = self.c.container
        self.grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api_url(self, path: str) -> str:
        assert self.c.port("api") == 8083  # the container port the chart exposes for the API
        return f"http://127.0.0.1:{self.api_port}{path}"

    def local_url(self, container_port: int, path: str) -> str:
        """A path on the local port standing in for one of the chart's container ports."""
        local = {8080: self.port, 8083: self.api_port, 9464: self.metrics_port}
        return f"http://127.0.0.1:{local[container_port]}{path}"

    def probe_url(self, probe: str) -> str:
        get = self.spec[probe]["httpGet"]
        assert self.c.port(get["port"]) == 8080  # the container port the chart exposes
        return self.url(get["path"])

    async def wait_ready(self) -> None:
        async def ready() -> bool:
            assert self.c.process is not None
            if self.c.process.poll() is not None:
                raise AssertionError(f"gateway exited {self.c.process.returncode}:\n{self.c.log()}")
            return await http_status(self.probe_url("readinessProbe")) == 200

        await until(ready, timeout=30, what=f"the gateway's readiness probe\n{self.c.log()}")


def init_job(rendered: Rendered, root: Path, **kw: Any) -> LocalContainer:
    return LocalContainer(rendered, rendered.get("Job", "nats-init"), "nats-init", root=root, **kw)


# --- the hook Job ------------------------------------------------------------------------------


def test_init_job_creates_then_keeps_the_stream_and_refuses_what_cannot_change(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    base = values(nats={"urls": [nats_server.url]})
    job = init_job(render(base), tmp_path / "first")
    assert job.rendered_argv() == ["tidings", "nats", "init"]  # cli entrypoint + the Job's args

    first = job.run(timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stream TIDINGS created" in first.stdout
    again = init_job(render(base), tmp_path / "again").run(timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "unchanged" in again.stdout

    # An upgrade that changes the storage type: the hook fails with 3 and says what to do.
    changed = init_job(render(merge(base, {"stream": {"storage": "memory"}})), tmp_path / "c")
    refused = changed.run(timeout=60)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "cannot change storage in place" in refused.stdout + refused.stderr


def test_init_job_exits_1_when_nats_is_unreachable(tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    job = init_job(render(values(nats={"urls": [dead]})), tmp_path)
    result = job.run(timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr


# --- the gateway -------------------------------------------------------------------------------


async def test_gateway_runs_its_image_command_answers_its_probes_and_drains_within_grace(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    rendered = render(
        values(
            nats={"urls": [nats_server.url]},
            gateway={"drainSeconds": 2, "preStopSeconds": 1, "serviceMonitor": {"enabled": True}},
        )
    )
    pod = GatewayPod(rendered, tmp_path)
    assert pod.c.rendered_argv() == ["tidings", "gateway"]  # the gateway image's entrypoint
    secret = rendered.data("Secret", "tidings-auth")["jwt-secret"]
    (scrape,) = rendered.get("ServiceMonitor", "gateway")["spec"]["endpoints"]
    monitored = rendered.get("Service", "gateway-metrics")
    assert pod.c.port(scrape["port"]) == 9464 and monitored["spec"]["ports"][0]["name"] == "metrics"

    with running(pod.c):
        await pod.wait_ready()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert await http_status(pod.probe_url(probe)) == 200, probe
        async with httpx.AsyncClient() as client:
            # Prometheus scrapes the port the ServiceMonitor names, through the metrics Service.
            metrics = await client.get(pod.local_url(9464, scrape["path"]))
            assert metrics.status_code == 200
            assert "tidings_gateway_connections" in metrics.text
            assert (await client.get(pod.url("/no-such-route"))).status_code == 404
            # Where the public Service sends a request for /metrics (any of its ports): 404.
            for port in rendered.get("Service", "gateway")["spec"]["ports"]:
                through = pod.local_url(pod.c.port(port["targetPort"]), scrape["path"])
                refused = await client.get(through)
                assert refused.status_code == 404, through
                assert b"tidings_gateway" not in refused.content

        # `helm test`: the test pod's script, with the Service's DNS name and port resolved to
        # this gateway (what cluster DNS and the Service would do).
        test_pod = LocalContainer(
            rendered, rendered.get("Pod", "test"), "probes", root=tmp_path / "t"
        )
        service = rendered.get("Service", "gateway")
        in_cluster = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
        assert in_cluster in test_pod.command[-1]
        argv = [*test_pod.command[:-1], test_pod.command[-1].replace(in_cluster, pod.url(""))]
        helm_test = await asyncio.to_thread(
            subprocess.run, argv, env=test_pod.env, capture_output=True, text=True, timeout=30
        )
        assert helm_test.returncode == 0, helm_test.stderr
        assert "/readyz 200" in helm_test.stdout

        # The Secret the chart rendered is the key the gateway verifies tokens with.
        token = mint_token(secret, tenant="acme", user="alice")
        async with RawClient(f"ws://127.0.0.1:{pod.port}/ws") as client:
            welcome = await client.hello(token)
            assert welcome["tenant"] == "acme"

            # Termination as the kubelet does it: preStop, then SIGTERM; the clock is the grace.
            started = time.monotonic()
            pre_stop = pod.spec["lifecycle"]["preStop"]["exec"]["command"]
            done = await asyncio.to_thread(pod.c.exec, pre_stop, timeout=pod.grace)
            assert done.returncode == 0, done.stderr
            pod.c.signal(signal.SIGTERM)

            async def unready() -> bool:
                return await http_status(pod.probe_url("readinessProbe")) == 503

            await until(unready, timeout=2, what="readiness to turn 503 on SIGTERM")
            assert await client.next("reconnect", timeout=3)
            assert pod.c.process is not None
            code = await asyncio.to_thread(pod.c.process.wait, pod.grace)
            elapsed = time.monotonic() - started
        assert code == 0, pod.c.log()
        assert elapsed < pod.grace, f"took {elapsed:.1f}s of a {pod.grace}s grace period"


# --- the publisher sidecar and the example producer ---------------------------------------


async def test_example_producer_publishes_incidents_and_audits_through_its_sidecar(
    js: JetStreamContext, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    port = free_port()  # the sidecar's port is a value, so the probes' commands carry it
    rendered = render(
        values(
            nats={"urls": [nats_server.url]},
            # A nats-server without users here: the chart's explicit development opt-in.
            publisher={"port": port, "insecureNats": True},
            exampleProducer={"enabled": True, "interval": 0.1},
        )
    )
    workload = rendered.get("Deployment", "example-producer")
    sidecar = LocalContainer(rendered, workload, "tidings-publisher", root=tmp_path / "sidecar")
    producer = LocalContainer(rendered, workload, "producer", root=tmp_path / "producer")
    assert sidecar.rendered_argv() == ["tidings", "publisher"]
    assert producer.rendered_argv() == ["python", "/opt/producer/producer.py"]
    probes = {
        p: sidecar.container[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe")
    }

    # Before the sidecar runs, its probe fails (so a passing probe means something).
    assert sidecar.exec(probes["readinessProbe"]).returncode != 0
    with running(sidecar):

        async def started() -> bool:
            result = await asyncio.to_thread(sidecar.exec, probes["startupProbe"])
            return result.returncode == 0

        await until(started, timeout=30, what=f"the sidecar's startup probe\n{sidecar.log()}")
        assert sidecar.exec(probes["readinessProbe"]).returncode == 0
        with running(producer):
            wanted = {"tenant.demo.incident.created", "tenant.demo.user.alice.audit.assigned"}

            async def both_stored() -> bool:
                info = await js.stream_info("TIDINGS", subjects_filter="tenant.demo.>")
                return wanted <= set(info.state.subjects or {})

            await until(both_stored, timeout=20, what=f"the producer's events\n{producer.log()}")
            producer.signal(signal.SIGTERM)
            assert producer.process is not None
            assert await asyncio.to_thread(producer.process.wait, 5) == 0
        lines = [json.loads(line) for line in producer.log().splitlines() if line.startswith("{")]
        assert all("seq" in line for line in lines), lines


# --- NATS users and permissions (charts/nats-values.yaml) --------------------------------------

PASSWORDS = {
    user: f"{user}-password-{os.getpid()}"
    for user in ("admin", "gateway", "publisher", "broadcaster", "inbox")
}
# The operator's Secrets, shared by the NATS release and the tidings release (docs/deploy.md).
SECRETS = {f"tidings-nats-{user}": {"password": pw} for user, pw in PASSWORDS.items()}
JWT_SECRET = "operator-jwt-secret-0123456789abcdef"
SECRETS["tidings-jwt"] = {"jwt-secret": JWT_SECRET}


def nats_conf(store: Path, port: int) -> tuple[str, dict[str, str]]:
    """nats.conf from the NATS chart values' ``config.merge`` (nats.conf is a JSON superset),
    and the server's environment resolved from ``container.env`` like the kubelet would."""
    chart_values = yaml.safe_load(NATS_VALUES.read_text())
    merged = chart_values["config"]["merge"]
    body = json.dumps(
        {"host": "127.0.0.1", "port": port, "jetstream": {"store_dir": str(store)}, **merged},
        indent=2,
    )
    # `<< $VAR >>` is the chart's way to write a raw (unquoted) variable reference.
    conf = re.sub(r'"<< (\$\w+) >>"', r"\1", body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    for name, spec in chart_values["container"]["env"].items():
        ref = spec["valueFrom"]["secretKeyRef"]
        env[name] = SECRETS[ref["name"]][ref["key"]]
    return conf, env


@dataclass
class SecuredNats:
    url: str
    log: Path

    def violations(self) -> list[str]:
        """What nats-server refused so far (it logs each violation at error level)."""
        return [line for line in self.log.read_text().splitlines() if "Violation - " in line]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredNats]:
    """A nats-server configured with the users and permissions of charts/nats-values.yaml."""
    port = free_port()
    conf, env = nats_conf(tmp_path / "js", port)
    (tmp_path / "nats.conf").write_text(conf)
    log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(tmp_path / "nats.conf")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=10)
        yield SecuredNats(f"nats://127.0.0.1:{port}", tmp_path / "nats.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


INBOX_SERVICE = {"broadcaster": "publisher"}  # the SDK or a sidecar, with the broadcast right


@contextlib.asynccontextmanager
async def nats_user(url: str, user: str) -> AsyncIterator[tuple[NATS, list[str]]]:
    """A connection as one of the Tidings users; permission errors are collected, not raised."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        url,
        user=f"tidings-{user}",
        password=PASSWORDS[user],
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=f"_INBOX_{INBOX_SERVICE.get(user, user)}",  # as Tidings' own connections
    )
    try:
        yield nc, errors
    finally:
        await nc.close()


async def violation(errors: list[str], subject: str) -> None:
    """NATS reported (asynchronously, lower-cased by nats-py) a permissions violation."""
    wanted = f'permissions violation for {{}} to "{subject.lower()}"'
    deadline = time.monotonic() + 3
    while not any(wanted.format(op) in e for e in errors for op in ("publish", "subscription")):
        if time.monotonic() > deadline:
            raise AssertionError(f"no permissions violation on {subject}; errors: {errors}")
        await asyncio.sleep(0.02)


async def test_nats_values_give_each_component_what_it_needs_and_nothing_more(
    secured: SecuredNats, tmp_path: Path
) -> None:
    secured_nats = secured.url
    port = free_port()
    credentials = {
        component: {
            "method": "password",
            "user": f"tidings-{user}",
            "existingSecret": f"tidings-nats-{user}",
        }
        for component, user in (
            ("gateway", "gateway"),
            ("init", "admin"),
            ("publisher", "publisher"),
        )
    }
    rendered_values = values(
        nats={"urls": [secured_nats], "credentials": credentials},
        auth={"existingSecret": "tidings-jwt"},
        publisher={"port": port},
        exampleProducer={"enabled": True},
        # The per-user limit on: the gateway shares its counts (tidings.gateway.users[.sync])
        # under its NATS user's permissions too.
        # The admin API's operator key, generated by the chart into its Secret.
        gateway={"userConnections": 3, "adminToken": {"generate": True}},
    )
    rendered = render(rendered_values)
    (admin_secret,) = [
        s["metadata"]["name"]
        for s in rendered.of_kind("Secret")
        if s["metadata"]["name"].endswith("-admin")
    ]
    operator_key = rendered.data("Secret", admin_secret)["admin-token"]
    job = init_job(rendered, tmp_path / "init", secrets=SECRETS)
    result = job.run(timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # An upgrade that changes a setting JetStream can update: the admin may update the stream.
    changed = render(merge(rendered_values, {"stream": {"maxAge": "3d"}}))
    result = init_job(changed, tmp_path / "upgrade", secrets=SECRETS).run(timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "updated" in result.stdout

    workload = rendered.get("Deployment", "example-producer")
    sidecar = LocalContainer(
        rendered, workload, "tidings-publisher", root=tmp_path / "sidecar", secrets=SECRETS
    )
    gateway = GatewayPod(rendered, tmp_path / "gateway", secrets=SECRETS)
    publish_url = f"http://127.0.0.1:{port}/v1/notifications"

    async with (
        nats_user(secured_nats, "admin") as (admin, admin_errors),
        contextlib.AsyncExitStack() as stack,
    ):
        epoch = stream_epoch(await admin.jetstream().stream_info("TIDINGS"))
        with running(sidecar):

            async def accepted(title: str) -> bool:
                async with httpx.AsyncClient(timeout=5) as client:
                    body = {
                        "tenant": "acme",
                        "event": "incident.created",
                        "title": title,
                        "message": "m",
                    }
                    try:
                        answer = await client.post(publish_url, json=body)
                    except httpx.TransportError:
                        return False
                    assert answer.status_code == 202, answer.text
                    assert answer.json()["seq"] is not None, answer.text  # stored, not queued
                    return True

            # Stored before any gateway runs: a client can only get it from the stream.
            await until(lambda: accepted("before"), timeout=30, what=f"sidecar\n{sidecar.log()}")
            # Issue 14 item 1: with a producer's credentials, try to read the replies the
            # gateway gets (its JetStream replay of another tenant) while a client resumes.
            spy = await stack.enter_async_context(nats_user(secured_nats, "publisher"))
            spied: list[bytes] = []

            async def spy_on(msg: Msg) -> None:
                spied.append(msg.data)

            for subject in ("_INBOX_gateway.>", "_INBOX.>", "_INBOX_admin.>", ">"):
                await spy[0].subscribe(subject, cb=spy_on)
            with running(gateway.c):
                await gateway.wait_ready()
                token = mint_token(JWT_SECRET, tenant="acme", user="alice")
                async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as client:
                    welcome = await client.hello(token, since=0, epoch=epoch)
                    assert welcome["recovered"] is True
                    replayed = await client.next("notification")
                    assert replayed["title"] == "before"  # JetStream read (direct get)
                    await client.next("synced")
                    assert await accepted("live")
                    live = await client.next("notification")
                    assert live["title"] == "live"  # republished on live.> and subscribed

                    # The status scatter: request, the gateway's own answer, the reply inbox.
                    async with httpx.AsyncClient(timeout=5) as http:
                        status = await http.get(
                            gateway.api_url("/api/notifications/status"),
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    assert status.status_code == 200, status.text
                    assert status.json()["gateways"] == 1, status.json()
                    assert status.json()["tenant_connections"] == 1

                    # Presence and revoke (the KV bucket the gateway created, its consumer,
                    # the admin API's write and questions), with a tenant admin's token.
                    admin_token = mint_token(
                        JWT_SECRET, tenant="acme", user="root", roles=["admin"]
                    )
                    auth = {"Authorization": f"Bearer {admin_token}"}
                    async with httpx.AsyncClient(timeout=5) as http:
                        seen = await http.get(gateway.api_url("/api/admin/presence"), headers=auth)
                        assert seen.status_code == 200, seen.text
                        assert seen.json()["users"] == [{"user": "alice", "connections": 1}]
                        # The operator key from the chart's Secret: every tenant.
                        every = await http.get(
                            gateway.api_url("/api/admin/presence"),
                            headers={"Authorization": f"Bearer {operator_key}"},
                        )
                        assert every.status_code == 200, every.text
                        assert every.json()["tenants"] == [{"tenant": "acme", "connections": 1}]
                        revoked = await http.post(
                            gateway.api_url("/api/admin/revoke"),
                            json={"tenant": "acme", "user": "alice"},
                            headers=auth,
                        )
                    assert revoked.status_code == 200, revoked.text
                    assert (revoked.json()["closed"], revoked.json()["applied"]) == (1, 1)
                    assert (await client.closed())[0] == 4003
                async with RawClient(f"ws://127.0.0.1:{gateway.port}/ws") as again:
                    await again.send({"type": "hello", "token": token})
                    assert (await again.next("error"))["code"] == "token_revoked"

        # The spy read nothing: each of its subscriptions was refused ...
        for subject in ("_INBOX_gateway.>", "_INBOX.>", "_INBOX_admin.>", ">"):
            await violation(spy[1], subject)
        assert spied == []
        # ... and nothing the processes did was refused.
        assert [v for v in secured.violations() if "tidings-publisher" not in v] == []
        assert len([v for v in secured.violations() if "tidings-publisher" in v]) == 4
        # ... and nothing more is allowed.
        await admin.publish("$JS.API.STREAM.DELETE.TIDINGS", b"")
        await violation(admin_errors, "$JS.API.STREAM.DELETE.TIDINGS")
    async with nats_user(secured_nats, "publisher") as (pub, errors):
        await pub.publish("broadcast.system.notification", b"{}")
        await violation(errors, "broadcast.system.notification")
        await pub.publish("live.tenant.acme.incident.created", b"{}")
        await violation(errors, "live.tenant.acme.incident.created")
        await pub.subscribe("live.>")
        await violation(errors, "live.>")
        # A producer can neither lift a revocation nor write one.
        await pub.publish("$KV.TIDINGS_REVOKED.user.acme.alice", b"")
        await violation(errors, "$KV.TIDINGS_REVOKED.user.acme.alice")
    async with nats_user(secured_nats, "gateway") as (gw, errors):
        await gw.publish("tenant.acme.incident.created", b"{}")
        await violation(errors, "tenant.acme.incident.created")
        await gw.publish("$JS.API.STREAM.UPDATE.TIDINGS", b"{}")
        await violation(errors, "$JS.API.STREAM.UPDATE.TIDINGS")
        # The revocation list: followed and written, never dropped or purged wholesale.
        for subject in (
            "$JS.API.STREAM.DELETE.KV_TIDINGS_REVOKED",
            "$JS.API.STREAM.PURGE.KV_TIDINGS_REVOKED",
        ):
            await gw.publish(subject, b"{}")
            await violation(errors, subject)
    async with nats_user(secured_nats, "broadcaster") as (bc, errors):
        js = bc.jetstream()
        ack = await js.publish("broadcast.system.notification", b"{}", stream="TIDINGS")
        assert ack.stream == "TIDINGS" and not errors
