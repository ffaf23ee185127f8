"""The inbox in the chart (issue 11 item 7): writer and API Deployments, the migration hook, the
operator's database Secret, PDBs and NetworkPolicies; off by default. The ``inbox`` variant
(tests/charts/rendering.py) also goes through every generic chart test: lint, Kubernetes
schemas, Pod Security, checkov. Here: what a reviewer checks, and the writer and the migration
run for real from their rendered containers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest

from tests.charts.pods import LocalContainer
from tests.charts.rendering import Rendered, merge, pod_spec, render, render_variant
from tests.charts.test_chart_processes import values
from tests.support.waiting import until
from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port

INBOX_PARTS = ("inbox-writer", "inbox-api")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_inbox_is_off_by_default_and_refused_without_a_database_secret() -> None:
    names = [o["metadata"]["name"] for o in render_variant("defaults").objects]
    assert not [n for n in names if "inbox" in n]
    with pytest.raises(helm.HelmError, match=r"inbox\.database\.existingSecret"):
        render({"inbox": {"enabled": True}})


def test_writer_and_api_run_their_commands_with_probes_on_their_ports() -> None:
    rendered = render_variant("inbox")
    expected = {"inbox-writer": (["inbox", "writer"], 8084), "inbox-api": (["inbox", "api"], 8085)}
    for part, (args, port) in expected.items():
        deployment = rendered.get("Deployment", part)
        (container,) = pod_spec(deployment)["containers"]
        assert container["image"].startswith("ghcr.io/tidings/cli:")  # entrypoint `tidings`
        assert container["args"] == args
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        env = {e["name"]: e for e in container["env"]}
        ref = env["TIDINGS_INBOX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tidings-inbox-db", "key": "database-url"}
        config = rendered.data("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
        assert config["TIDINGS_INBOX_PORT"] == "8084" and config["TIDINGS_INBOX_API_PORT"] == "8085"
    # The API verifies the gateways' JWTs with the same secret.
    (api,) = pod_spec(rendered.get("Deployment", "inbox-api"))["containers"]
    jwt = {e["name"]: e for e in api["env"]}["TIDINGS_AUTH_JWT_SECRET"]
    assert (
        jwt["valueFrom"]["secretKeyRef"]["name"]
        == rendered.get("Secret", "auth")["metadata"]["name"]
    )


def test_the_chart_creates_no_database() -> None:
    rendered = render_variant("inbox")
    assert not rendered.of_kind("StatefulSet") and not rendered.of_kind("PersistentVolumeClaim")
    for secret in rendered.of_kind("Secret"):
        assert "database-url" not in secret.get("data", {}), secret["metadata"]["name"]


def test_migrations_run_as_a_hook_after_the_stream_and_before_the_pods() -> None:
    rendered = render_variant("inbox")
    job = rendered.get("Job", "inbox-migrate")
    stream = rendered.get("Job", "nats-init")
    hook, first = job["metadata"]["annotations"], stream["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook["helm.sh/hook-weight"]) > int(first["helm.sh/hook-weight"])
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["inbox", "migrate"]
    # A hook runs before the release's objects exist: only the operator's Secret is used.
    assert "envFrom" not in container
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e]
    assert refs == ["tidings-inbox-db"]


def test_routes_scrapes_budgets_and_policies_reach_the_inbox_pods() -> None:
    rendered = render_variant("inbox")
    labels = {
        part: rendered.get("Deployment", part)["spec"]["template"]["metadata"]["labels"]
        for part in INBOX_PARTS
    }
    api_service = rendered.get("Service", "inbox-api")
    assert _selects(api_service["spec"]["selector"], labels["inbox-api"])
    assert api_service["spec"]["ports"][0]["port"] == 8085
    ingress_paths = {
        p["path"]: p["backend"]["service"]["name"]
        for p in rendered.get("Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"]
    }
    assert ingress_paths["/v1/inbox"] == api_service["metadata"]["name"]
    route_rules = {
        r["matches"][0]["path"]["value"]: r["backendRefs"][0]
        for r in rendered.get("HTTPRoute", "gateway")["spec"]["rules"]
    }
    assert route_rules["/v1/inbox"] == {"name": api_service["metadata"]["name"], "port": 8085}
    monitor = rendered.get("ServiceMonitor", "inbox-writer")
    writer_service = rendered.get("Service", "inbox-writer")
    assert _selects(
        monitor["spec"]["selector"]["matchLabels"], writer_service["metadata"]["labels"]
    )
    assert _selects(writer_service["spec"]["selector"], labels["inbox-writer"])
    for part in INBOX_PARTS:
        pdb = rendered.get("PodDisruptionBudget", part)
        assert _selects(pdb["spec"]["selector"]["matchLabels"], labels[part])
        policy = rendered.get("NetworkPolicy", part)["spec"]
        assert _selects(policy["podSelector"]["matchLabels"], labels[part])
        database = [r for r in policy["egress"] if {"port": 5432, "protocol": "TCP"} in r["ports"]]
        assert database and database[0]["to"] == [
            {"namespaceSelector": {"matchLabels": {"name": "postgres"}}}
        ]
    migrate = rendered.get("NetworkPolicy", "inbox-migrate")["spec"]
    assert migrate["ingress"] == []
    assert {p["port"] for r in migrate["egress"] for p in r["ports"]} == {53, 5432}


# --- run for real ------------------------------------------------------------------------------


def test_every_setting_the_inbox_pods_get_is_one_tidings_reads() -> None:
    from tidings.variables import known_variables

    rendered = render_variant("inbox")
    for part in (*INBOX_PARTS, "inbox-migrate"):
        kind = "Job" if part == "inbox-migrate" else "Deployment"
        workload = rendered.get(kind, part)
        (container,) = pod_spec(workload)["containers"]
        names = {e["name"] for e in container["env"]}
        for source in container.get("envFrom", []):
            names |= set(rendered.data("ConfigMap", source["configMapRef"]["name"]))
        unknown = {n for n in names if n.startswith("TIDINGS_")} - known_variables()
        assert not unknown, (part, unknown)


def _inbox(rendered: Rendered, part: str, root: Path, **kw: Any) -> LocalContainer:
    kind = "Job" if part == "inbox-migrate" else "Deployment"
    workload = rendered.get(kind, part)
    name = pod_spec(workload)["containers"][0]["name"]
    return LocalContainer(rendered, workload, name, root=root, **kw)


async def test_the_migration_job_then_the_writer_run_from_their_containers(
    js: Any, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The hook migrates a database (SQLite here, the URL the operator's Secret would hold);
    the writer container then starts on it against NATS and answers its probes."""
    rendered = render(
        merge(
            values(nats={"urls": [nats_server.url]}),
            {"inbox": {"enabled": True, "database": {"existingSecret": "inbox-db"}}},
        )
    )
    secrets = {"inbox-db": {"database-url": f"sqlite:///{tmp_path / 'inbox.db'}"}}
    job = _inbox(rendered, "inbox-migrate", tmp_path / "migrate", secrets=secrets)
    assert job.rendered_argv() == ["tidings", "inbox", "migrate"]
    done = await asyncio.to_thread(job.run, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrated" in done.stdout + done.stderr

    port = free_port()
    writer = _inbox(
        rendered,
        "inbox-writer",
        tmp_path / "writer",
        secrets=secrets,
        env={"TIDINGS_INBOX_HOST": "127.0.0.1", "TIDINGS_INBOX_PORT": str(port)},
    )
    assert writer.rendered_argv() == ["tidings", "inbox", "writer"]
    probe = writer.container["readinessProbe"]["httpGet"]
    assert writer.port(probe["port"]) == 8084
    writer.start()
    try:

        async def ready() -> bool:
            assert writer.process is not None and writer.process.poll() is None, writer.log()
            async with httpx.AsyncClient(timeout=2) as client:
                try:
                    got = await client.get(f"http://127.0.0.1:{port}{probe['path']}")
                except httpx.TransportError:
                    return False
            return got.status_code == 200

        await until(ready, timeout=60, what=f"the inbox writer's readiness\n{writer.log()}")
        async with httpx.AsyncClient(timeout=2) as client:
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert "tidings_inbox_consumer_pending" in metrics.text
    finally:
        writer.stop()
