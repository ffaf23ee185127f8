"""Secure defaults of the chart (issue 14): a publisher sidecar only with a NATS credential or a
client certificate, the admin API's operator key from a Secret (the operator's, or generated and
kept), and the per-user connection limit. Helm's real engine (helm-python-sdk) and
kubernetes-validate, as the other chart tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.charts.rendering import (
    CHART,
    OLDEST_KUBERNETES,
    Rendered,
    containers,
    merge,
    render,
)

REFUSAL = "the publisher would connect to NATS without a credential"
PRODUCER = {"exampleProducer": {"enabled": True}}


def sidecar_env(rendered: Rendered) -> dict[str, dict[str, Any]]:
    workload = rendered.get("Deployment", "example-producer")
    kubernetes_validate.validate(workload, OLDEST_KUBERNETES, strict=True)
    (sidecar,) = [c for c in containers(workload) if c["name"] == "tidings-publisher"]
    return {e["name"]: e for e in sidecar["env"]}


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def test_a_publisher_without_a_nats_credential_or_client_certificate_is_refused() -> None:
    message = refusal(PRODUCER)
    assert REFUSAL in message
    assert "nats.credentials.publisher" in message and "mTLS" in message
    # TLS without a client certificate authenticates the server only: refused too.
    tls = {"nats": {"tls": {"enabled": True, "secretName": "nats-ca"}}}
    assert REFUSAL in refusal(merge(PRODUCER, tls))


@pytest.mark.parametrize(
    ("nats", "variable"),
    [
        ({"credentials": {"publisher": {"method": "password", "password": "pw"}}}, "PASSWORD"),
        ({"credentials": {"publisher": {"method": "token", "token": "t"}}}, "TOKEN"),
        ({"credentials": {"publisher": {"method": "nkey", "nkeySeed": "SU"}}}, "NKEY_SEED_FILE"),
        (
            {"tls": {"enabled": True, "secretName": "nats-client", "clientCert": True}},
            "TLS_CERT_FILE",
        ),
    ],
)
def test_a_publisher_with_a_credential_or_mtls_renders(nats: dict[str, Any], variable: str) -> None:
    env = sidecar_env(render(merge(PRODUCER, {"nats": nats})))
    assert f"TIDINGS_NATS_{variable}" in env


def test_the_dev_values_still_render_their_publisher_without_users() -> None:
    dev = yaml.safe_load((CHART / "values-dev.yaml").read_text())
    env = sidecar_env(render(dev))
    assert not {"TIDINGS_NATS_USER", "TIDINGS_NATS_TOKEN", "TIDINGS_NATS_TLS_CERT_FILE"} & set(env)


def test_a_producer_chart_including_the_template_is_held_to_the_same_rule(tmp_path: Path) -> None:
    parent = tmp_path / "orders"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "tidings")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: orders\nversion: 1.0.0\n"
        "dependencies:\n  - name: tidings\n    version: 0.1.0\n"
    )
    (parent / "values.yaml").write_text("tidings:\n  templatesOnly: true\n")
    template = (Path(__file__).parent / "data" / "producer-chart-deployment.yaml").read_text()
    anonymous = template.replace('"method" "password"', '"method" "none"')
    assert anonymous != template
    (parent / "templates" / "deployment.yaml").write_text(anonymous)
    with helm.Chart.load(parent) as chart, pytest.raises(helm.HelmError) as caught:
        chart.render(values={}, name="orders", namespace="shop")
    assert REFUSAL in str(caught.value)
    # With the bearer token of its HTTP API from the producer's Secret.
    with_token = template.replace(
        '"source" "orders-svc"',
        '"source" "orders-svc" "apiToken" (dict "secretName" "orders-sidecar")',
    )
    (parent / "templates" / "deployment.yaml").write_text(with_token)
    with helm.Chart.load(parent) as chart:
        manifests = chart.render(values={}, name="orders", namespace="shop")
    deployment = yaml.safe_load(manifests["orders/templates/deployment.yaml"])
    kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)
    (sidecar,) = deployment["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["TIDINGS_PUBLISHER_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "orders-sidecar",
        "key": "token",
    }


def gateway_env(rendered: Rendered) -> dict[str, dict[str, Any]]:
    workload = rendered.get("Deployment", "gateway")
    kubernetes_validate.validate(workload, OLDEST_KUBERNETES, strict=True)
    (gateway,) = [c for c in containers(workload) if c["name"] == "gateway"]
    return {e["name"]: e for e in gateway["env"]}


def test_no_admin_token_by_default() -> None:
    rendered = render({})
    assert "TIDINGS_GATEWAY_ADMIN_TOKEN" not in gateway_env(rendered)
    assert rendered.find("Secret", "admin") is None


def test_the_admin_token_from_the_operators_secret() -> None:
    values = {"gateway": {"adminToken": {"existingSecret": "ops-keys", "key": "tidings-admin"}}}
    rendered = render(values)
    ref = gateway_env(rendered)["TIDINGS_GATEWAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ops-keys", "key": "tidings-admin"}
    assert rendered.find("Secret", "admin") is None


def test_a_generated_admin_token_is_kept_in_a_secret_of_its_own() -> None:
    rendered = render({"gateway": {"adminToken": {"generate": True}}})
    secret = rendered.get("Secret", "admin")
    kubernetes_validate.validate(secret, OLDEST_KUBERNETES, strict=True)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    key = rendered.data("Secret", secret["metadata"]["name"])["admin-token"]
    assert len(key) >= 32 and key.isalnum()  # TIDINGS_GATEWAY_ADMIN_TOKEN needs >= 32
    ref = gateway_env(rendered)["TIDINGS_GATEWAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "admin-token"}


def test_an_admin_token_given_and_generated_is_refused() -> None:
    values = {"gateway": {"adminToken": {"existingSecret": "ops", "generate": True}}}
    assert "gateway.adminToken: give existingSecret or generate, not both" in refusal(values)


def test_the_per_user_connection_limit_reaches_the_gateway() -> None:
    rendered = render({"gateway": {"userConnections": 5}})
    assert rendered.data("ConfigMap", "tidings-gateway")["TIDINGS_GATEWAY_USER_CONNECTIONS"] == "5"
    with pytest.raises(helm.HelmError, match="userConnections"):
        render({"gateway": {"userConnections": -1}})
