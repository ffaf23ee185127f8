"""The chart rendered over the value matrix, read the way a reviewer reads a chart.

Every manifest must be valid Kubernetes for the oldest version the chart claims and the newest
one kubernetes-validate knows; then the questions a platform team asks: is every container
locked down and sized, do the probes and the drain fit the gateway, does a config change roll
the pods, is each optional piece wired to the right object.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.charts.pods import LocalContainer, dockerfile_stages
from tests.charts.rendering import (
    CHART,
    OLDEST_KUBERNETES,
    REPO,
    VARIANTS,
    Rendered,
    component,
    containers,
    merge,
    pod_spec,
    render,
    render_variant,
)
from tidings.settings import load_settings
from tidings.variables import known_variables

NEWEST_KUBERNETES = kubernetes_validate.utils.latest_version()
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}  # CRDs: checked below
# The operator's Secrets in the existing-secret variant, with values a real one would hold.
EXTERNAL = {
    "tidings-admin": {"admin-token": "an-operator-managed-admin-key-0123456789"},
    "tidings-jwt": {"jwt-secret": "an-operator-managed-secret-0123456789"},
    "tidings-nats-gateway": {"password": "gateway-password"},
    "tidings-nats-admin": {"token": "admin-token"},
    "tidings-nats-publisher": {"password": "publisher-password"},
    "nats-client-tls": {"ca.crt": "CA", "tls.crt": "CERT", "tls.key": "KEY"},  # cert-manager's
    "tidings-inbox-db": {"database-url": "postgresql://tidings:pw@postgres:5432/tidings"},
}


def test_chart_claims_the_kubernetes_versions_it_is_validated_for() -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["apiVersion"] == "v2"
    assert chart_yaml["kubeVersion"] == f">={OLDEST_KUBERNETES}-0"


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_is_clean(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, kube_version=f"v{OLDEST_KUBERNETES}")
    serious = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert serious == [] and report["errors"] == [], report


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant: str, version: str) -> None:
    rendered = render_variant(variant)
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message}")


def test_the_full_variant_renders_every_optional_object() -> None:
    kinds = {o["kind"] for o in render_variant("full").objects}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "Job",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Pod",
    } <= kinds
    defaults = {o["kind"] for o in render_variant("defaults").objects}
    assert not defaults & {"Ingress", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"}


# --- every pod and container ------------------------------------------------------------------


def _all_containers() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    found = []
    for variant in VARIANTS:
        for workload in render_variant(variant).workloads():
            for container in containers(workload):
                found.append((variant, workload["metadata"]["name"], pod_spec(workload), container))
    return found


@pytest.mark.parametrize(
    ("variant", "workload", "pod", "container"),
    _all_containers(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_container_is_locked_down_and_sized(
    variant: str, workload: str, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    pod_ctx, ctx = pod.get("securityContext", {}), container.get("securityContext", {})
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser")) not in (None, 0)
    assert ctx.get("readOnlyRootFilesystem") is True
    assert ctx.get("allowPrivilegeEscalation") is False
    assert ctx.get("privileged", False) is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}  # dropped, nothing added
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile"))
    assert seccomp == {"type": "RuntimeDefault"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{kind} of {workload}"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # no TIDINGS_*_PORT variables injected
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in v for v in pod.get("volumes", []))
    # A read-only root needs a writable /tmp: each container gets its own small emptyDir.
    assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}


def test_the_images_user_is_the_user_the_pods_run_as() -> None:
    pod_ctx = render_variant("defaults").get("Deployment", "gateway")["spec"]["template"]["spec"]
    uid, gid = pod_ctx["securityContext"]["runAsUser"], pod_ctx["securityContext"]["runAsGroup"]
    for target in ("gateway", "publisher", "cli"):
        assert dockerfile_stages()[target].user == f"{uid}:{gid}"


# --- the gateway's probes, drain and rollout --------------------------------------------------


def _gateway(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", "gateway")


def _gateway_container(rendered: Rendered) -> dict[str, Any]:
    (container,) = _gateway(rendered)["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gateway_probes_use_its_routes_and_liveness_does_not_depend_on_nats(variant: str) -> None:
    container = _gateway_container(render_variant(variant))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "api": 8083, "metrics": 9464}
    rendered = render_variant(variant)
    env = rendered.data("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    assert (env["TIDINGS_GATEWAY_PORT"], env["TIDINGS_GATEWAY_API_PORT"]) == ("8080", "8083")
    assert env["TIDINGS_GATEWAY_METRICS_PORT"] == "9464"
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]
    # /readyz turns 503 without NATS or while draining; liveness must not, or a NATS outage
    # would restart every gateway. (test_chart_processes GETs these paths on a real gateway.)
    assert probes["readinessProbe"] == {"path": "/readyz", "port": "http"}
    assert probes["livenessProbe"] == {"path": "/healthz", "port": "http"}
    assert probes["startupProbe"] == {"path": "/healthz", "port": "http"}


def _drain_budget(rendered: Rendered) -> tuple[float, float, int]:
    workload = _gateway(rendered)
    container = _gateway_container(rendered)
    config = rendered.data("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    drain = float(config["TIDINGS_GATEWAY_DRAIN_SECONDS"])
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    return float(command[1]), drain, grace


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"gateway": {"drainSeconds": 45, "preStopSeconds": 10}},
        {"gateway": {"drainSeconds": 2.5, "preStopSeconds": 0}},
        {"gateway": {"terminationGracePeriodSeconds": 120}},
    ],
)
def test_prestop_and_drain_fit_inside_the_grace_period(values: dict[str, Any]) -> None:
    pre_stop, drain, grace = _drain_budget(render(values))
    # Kubernetes counts the grace period from the start of preStop; what is left must cover
    # the whole drain plus the last closes, or SIGKILL cuts clients off without `reconnect`.
    assert pre_stop + drain < grace
    assert grace - pre_stop - drain >= 5


def test_rollout_keeps_capacity_and_spreads_gateways() -> None:
    rendered = render_variant("defaults")
    spec = _gateway(rendered)["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    spread = spec["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        # A rollout's new pods spread among themselves, not against the old ReplicaSet's.
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def _checksums(values: dict[str, Any]) -> dict[str, str]:
    annotations = _gateway(render(values))["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_a_config_or_secret_change_rolls_the_gateways() -> None:
    fixed = {"auth": {"jwtSecret": "a-fixed-secret-of-thirty-two-bytes-or-more"}}
    base = _checksums(fixed)
    assert _checksums(fixed) == base  # stable: an unchanged upgrade rolls nothing
    config = _checksums(merge(fixed, {"gateway": {"tenantQuota": 100}}))
    assert config["checksum/config"] != base["checksum/config"]
    assert config["checksum/secret"] == base["checksum/secret"]
    secret = _checksums({"auth": {"jwtSecret": "another-secret-of-thirty-two-bytes-or-more"}})
    assert secret["checksum/secret"] != base["checksum/secret"]
    nats = _checksums(
        merge(fixed, {"nats": {"credentials": {"gateway": {"method": "token", "token": "t"}}}})
    )
    assert nats["checksum/secret"] != base["checksum/secret"]


# --- configuration and secrets ----------------------------------------------------------------


def _tidings_containers(variant: str) -> list[tuple[Rendered, dict[str, Any], str]]:
    rendered = render_variant(variant)
    return [
        (rendered, workload, c["name"])
        for workload in rendered.workloads()
        for c in containers(workload)
        if component(workload) in ("gateway", "nats-init", "example-producer")
        and c["name"] != "producer"
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_setting_is_one_tidings_reads_and_loads(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i, (rendered, workload, name) in enumerate(_tidings_containers(variant)):
        container = LocalContainer(
            rendered, workload, name, root=tmp_path / str(i), secrets=EXTERNAL
        )
        settings_env = {k: v for k, v in container.env.items() if k.startswith("TIDINGS_")}
        unknown = set(settings_env) - known_variables()
        assert not unknown, f"{name}: variables no setting reads: {sorted(unknown)}"
        for key in [k for k in os.environ if k.startswith("TIDINGS_")]:
            monkeypatch.delenv(key)
        for key, value in settings_env.items():
            monkeypatch.setenv(key, value)
        load_settings()  # raises ConfigError naming the variable when a value is wrong


def test_the_chart_generates_a_random_jwt_secret_when_none_is_given() -> None:
    first = render({}, release="a").data("Secret", "a-tidings-auth")["jwt-secret"]
    second = render({}, release="b").data("Secret", "b-tidings-auth")["jwt-secret"]
    assert len(first) == 48 and first != second  # no default secret anyone could know


def test_existing_secrets_are_used_and_never_created() -> None:
    rendered = render_variant("existing-secret")
    assert rendered.of_kind("Secret") == []
    refs: dict[str, set[str]] = {}
    for workload in rendered.workloads():
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
    assert refs == {
        "tidings-admin": {"admin-token"},  # the admin API's operator key
        "tidings-jwt": {"jwt-secret"},
        "tidings-nats-gateway": {"password"},
        "tidings-nats-admin": {"token"},
        "tidings-nats-publisher": {"password"},
    }


def test_keys_and_credentials_can_be_files_only() -> None:
    """The hardened variant keeps every secret out of environment variables."""
    rendered = render_variant("full")
    for workload in rendered.workloads():
        for container in containers(workload):
            assert not any(
                "secretKeyRef" in e.get("valueFrom", {}) for e in container.get("env", [])
            )
    gateway = rendered.get("Deployment", "gateway")
    secrets = {
        v["name"]: v["secret"]["secretName"] for v in pod_spec(gateway)["volumes"] if "secret" in v
    }
    assert secrets == {
        "auth": "full-tidings-auth",
        "nats-auth": "full-tidings-nats-gateway",
        "nats-tls": "nats-client-tls",
    }
    created = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    pem = base64.b64decode(created["full-tidings-auth"]["data"]["public-key.pem"]).decode()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


# --- the hook Job -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["defaults", "full"])
def test_nats_init_is_a_pre_install_and_pre_upgrade_hook_with_its_own_credentials(
    variant: str,
) -> None:
    rendered = render_variant(variant)
    job = rendered.get("Job", "nats-init")
    hook = job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"]
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
    (container,) = spec["containers"]
    assert container["args"] == ["nats", "init"]
    # Hooks run before ordinary resources: the Job may only use hook Secrets or the user's own.
    for volume in spec["volumes"]:
        name = volume.get("secret", {}).get("secretName")
        secret = next(
            (s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == name), None
        )
        if secret is not None:
            annotations = secret["metadata"]["annotations"]
            assert annotations["helm.sh/hook"] == hook["helm.sh/hook"]
            assert int(annotations["helm.sh/hook-weight"]) < int(hook["helm.sh/hook-weight"])
    assert "envFrom" not in container  # the gateway ConfigMap does not exist yet at pre-install


# --- optional objects: wired to the right things ----------------------------------------------


def test_ingress_is_websocket_friendly_and_routes_to_the_gateway_service() -> None:
    rendered = render_variant("full")
    ingress = rendered.get("Ingress", "gateway")
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    service = rendered.get("Service", "gateway")
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {"http": "http", "api": "api"}
    routes = {
        p["path"]: p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert {b["name"] for b in routes.values()} == {service["metadata"]["name"]}
    # WebSocket and everything else to the data port; the status API to its own port.
    assert routes["/"]["port"] == {"name": "http"}
    assert routes["/api/notifications"]["port"] == {"name": "api"}
    assert ingress["spec"]["tls"][0]["hosts"] == ["tidings.example.com"]


def test_autoscaler_owns_the_replicas_and_scales_on_cpu_and_connections() -> None:
    rendered = render_variant("full")
    hpa = rendered.get("HorizontalPodAutoscaler", "gateway")
    deployment = rendered.get("Deployment", "gateway")
    assert "replicas" not in deployment["spec"]  # or every upgrade would reset the HPA's choice
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    connections = metrics["Pods"]["pods"]["metric"]["name"]
    gateway_metrics = (REPO / "services" / "tidings" / "gateway" / "metrics.py").read_text()
    assert f'"{connections}"' in gateway_metrics  # a metric the gateway really exports
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_pdb_service_and_service_monitor_select_the_gateway_pods() -> None:
    rendered = render_variant("full")
    labels = rendered.get("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    pdb = rendered.get("PodDisruptionBudget", "gateway")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    service = rendered.get("Service", "gateway")
    assert _selects(service["spec"]["selector"], labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http", "api"]
    assert [p["appProtocol"] for p in service["spec"]["ports"]] == ["kubernetes.io/ws", "http"]
    metrics = rendered.get("Service", "gateway-metrics")
    assert _selects(metrics["spec"]["selector"], labels)
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP",
         "appProtocol": "http"}
    ]  # fmt: skip
    monitor = rendered.get("ServiceMonitor", "gateway")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # It selects the metrics Service, and only it.
    assert _selects(monitor["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert not _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["tidings"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (
        "metrics",
        "/metrics",
        "30s",
    )
    assert endpoint["relabelings"][0]["targetLabel"] == "cluster"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_network_policies_cover_every_pod_and_open_only_what_is_used() -> None:
    rendered = render_variant("full")
    policies = rendered.of_kind("NetworkPolicy")
    for workload in rendered.workloads():
        spec = workload["spec"]
        labels = (
            workload["metadata"]["labels"]
            if workload["kind"] == "Pod"
            else spec["template"]["metadata"]["labels"]
        )
        assert any(_selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in policies), (
            workload["metadata"]["name"]
        )
    gateway = rendered.get("NetworkPolicy", "gateway")["spec"]
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    scrape, ingress = gateway["ingress"]
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert ingress["ports"] == [
        {"port": "http", "protocol": "TCP"},
        {"port": "api", "protocol": "TCP"},
    ]
    sources = ingress["from"]
    assert {"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}} in sources
    test_pod = rendered.get("Pod", "test")["metadata"]["labels"]
    assert any(
        _selects(s.get("podSelector", {}).get("matchLabels", {"x": "y"}), test_pod) for s in sources
    )
    egress_ports = {p["port"] for rule in gateway["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 4222}
    for name in ("nats-init", "example-producer"):
        policy = rendered.get("NetworkPolicy", name)["spec"]
        assert policy["ingress"] == []  # they serve nothing


# --- the publisher sidecar template ---------------------------------------------------------


@pytest.mark.parametrize(("variant", "native"), [("full", True), ("sidecar", False)])
def test_sidecar_is_a_loopback_container_with_exec_probes(variant: str, native: bool) -> None:
    spec = pod_spec(render_variant(variant).get("Deployment", "example-producer"))
    where = spec["initContainers"] if native else spec["containers"]
    (sidecar,) = [c for c in where if c["name"] == "tidings-publisher"]
    assert ("restartPolicy" in sidecar) is native  # native: an init container that keeps running
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["TIDINGS_PUBLISHER_HOST"] == "127.0.0.1"
    assert env["TIDINGS_PUBLISHER_OUTBOX_DIR"] in {m["mountPath"] for m in sidecar["volumeMounts"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = sidecar[probe]["exec"]["command"]
        assert f"127.0.0.1:{env['TIDINGS_PUBLISHER_PORT']}" in command[-1]
    # The app reaches it on loopback.
    (app,) = [c for c in spec["containers"] if c["name"] == "producer"]
    urls = {e["value"] for e in app["env"] if e["name"] == "PUBLISHER_URL"}
    assert urls == {f"http://127.0.0.1:{env['TIDINGS_PUBLISHER_PORT']}"}


@pytest.mark.parametrize(
    ("variant", "quotas"),
    [
        ("sidecar", {}),  # off by default: no quota variable at all
        (
            "full",
            {
                "TIDINGS_QUOTA_ENABLED": "true",
                "TIDINGS_QUOTA_RATE": "50",
                "TIDINGS_QUOTA_BURST": "100",
                "TIDINGS_QUOTA_DAILY": "100000",
            },
        ),
    ],
)
def test_the_sidecar_enforces_quotas_when_the_values_say_so(
    variant: str, quotas: dict[str, str]
) -> None:
    spec = pod_spec(render_variant(variant).get("Deployment", "example-producer"))
    (sidecar,) = [
        c
        for c in spec.get("initContainers", []) + spec["containers"]
        if c["name"] == "tidings-publisher"
    ]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert {k: v for k, v in env.items() if k.startswith("TIDINGS_QUOTA_")} == quotas


def test_another_chart_can_include_the_sidecar_template(tmp_path: Path) -> None:
    """A producer chart with tidings as a dependency renders the sidecar with its own values."""
    parent = tmp_path / "orders"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "tidings")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: orders\nversion: 1.0.0\n"
        "dependencies:\n  - name: tidings\n    version: 0.1.0\n"
    )
    (parent / "values.yaml").write_text("tidings:\n  templatesOnly: true\n")
    (parent / "templates" / "deployment.yaml").write_text(
        (Path(__file__).parent / "data" / "producer-chart-deployment.yaml").read_text()
    )
    with helm.Chart.load(parent) as chart:
        manifests = chart.render(values={}, name="orders", namespace="shop")
    deployment = yaml.safe_load(manifests["orders/templates/deployment.yaml"])
    others = {path for path, text in manifests.items() if text.strip()}
    assert others == {"orders/templates/deployment.yaml"}  # the dependency renders nothing
    kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)
    spec = deployment["spec"]["template"]["spec"]
    (sidecar,) = spec["initContainers"]
    assert sidecar["image"] == "registry.example.com/tidings/publisher:0.1.0"
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["TIDINGS_NATS_URLS"]["value"] == "nats://nats.messaging:4222"
    assert env["TIDINGS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "orders-nats"
    assert env["TIDINGS_PUBLISHER_SOURCE"]["value"] == "orders-svc"
    assert {v["name"] for v in spec["volumes"]} >= {"tidings-outbox", "tidings-publisher-tmp"}


# --- NOTES.txt --------------------------------------------------------------------------------


def test_notes_say_how_to_reach_the_gateway_and_mint_a_token() -> None:
    rendered = render_variant("defaults")
    service = rendered.get("Service", "gateway")["metadata"]["name"]
    secret = rendered.get("Secret", "auth")["metadata"]["name"]
    notes = rendered.notes
    assert f"port-forward svc/{service} 8080:80" in notes
    assert f"get secret {secret}" in notes and "tidings token --tenant" in notes
    assert re.search(r"helm test defaults", notes)
    full = render_variant("full").notes
    assert "wss://tidings.example.com/ws" in full
    assert "identity provider" in full  # no secret to fetch with a public key
