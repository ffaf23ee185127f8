"""Pod Security "restricted" on every pod both releases render: Tidings (every values variant,
skaffold's dev values) and NATS (the official chart with charts/nats-values.yaml, and with the
dev overlay). A namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` admits
them all; tests/charts/pod_security.py holds the profile's rules.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.charts.nats_release import NATS_VALUES, render_nats
from tests.charts.pod_security import violations
from tests.charts.pods import skaffold_release
from tests.charts.rendering import (
    REPO,
    VARIANTS,
    Rendered,
    merge,
    pod_spec,
    render,
    render_variant,
)

PROD = [REPO / "charts" / "nats-values.yaml"]
DEV = [REPO / p for p in skaffold_release("nats")["valuesFiles"]]


def _tidings_dev() -> Rendered:
    values: dict[str, Any] = {}
    for path in skaffold_release("tidings")["valuesFiles"]:
        values = merge(values, yaml.safe_load((REPO / path).read_text()))
    return render(values, release="dev")


RELEASES = {
    **{f"tidings-{v}": (lambda v=v: render_variant(v)) for v in VARIANTS},
    "tidings-dev": _tidings_dev,
    "nats": lambda: render_nats(PROD),
    "nats-dev": lambda: render_nats(DEV),
}


@pytest.mark.parametrize("release", RELEASES)
def test_every_pod_passes_the_restricted_profile(release: str) -> None:
    rendered = RELEASES[release]()
    workloads = list(rendered.workloads())
    assert workloads, release
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        assert violations(pod_spec(workload)) == [], name


def test_the_nats_release_renders_the_servers_with_every_container_checked() -> None:
    """The check above really saw NATS: the StatefulSet with nats, reloader and exporter."""
    (statefulset,) = render_nats(PROD).of_kind("StatefulSet")
    names = [c["name"] for c in pod_spec(statefulset)["containers"]]
    assert names == ["nats", "reloader", "prom-exporter"]
    assert DEV[0] == PROD[0] and len(DEV) == 2 and set(DEV) <= set(NATS_VALUES)


def _gateway_spec() -> dict[str, Any]:
    return copy.deepcopy(pod_spec(render_variant("defaults").get("Deployment", "gateway")))


def _nats_spec() -> dict[str, Any]:
    (statefulset,) = render_nats(PROD).of_kind("StatefulSet")
    return copy.deepcopy(pod_spec(statefulset))


def _privileged(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["privileged"] = True


def _root(spec: dict[str, Any]) -> None:
    spec["containers"][-1]["securityContext"]["runAsUser"] = 0


def _no_drop(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}


def _unconfined(spec: dict[str, Any]) -> None:
    spec["containers"][0]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def _host_path(spec: dict[str, Any]) -> None:
    spec["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}})


def _escalation(spec: dict[str, Any]) -> None:
    del spec["containers"][-1]["securityContext"]["allowPrivilegeEscalation"]


def _host_network(spec: dict[str, Any]) -> None:
    spec["hostNetwork"] = True


def _root_pod(spec: dict[str, Any]) -> None:
    spec["securityContext"]["runAsNonRoot"] = False
    for container in spec["containers"]:
        container["securityContext"].pop("runAsNonRoot", None)


@pytest.mark.parametrize("spec", [_gateway_spec, _nats_spec], ids=["gateway", "nats"])
@pytest.mark.parametrize(
    ("breakage", "reported"),
    [
        (_privileged, "privileged must be unset or false"),
        (_root, "runAsUser must not be 0"),
        (_no_drop, "capabilities.drop must include ALL"),
        (_no_drop, "capabilities.add: ['NET_ADMIN'] not allowed"),
        (_unconfined, "seccompProfile.type must be RuntimeDefault or Localhost"),
        (_host_path, "volume docker: type ['hostPath'] is not allowed"),
        (_escalation, "allowPrivilegeEscalation must be false"),
        (_host_network, "spec.hostNetwork must be unset or false"),
        (_root_pod, "runAsNonRoot must be true"),
    ],
)
def test_a_pod_that_breaks_a_rule_is_refused_naming_it(
    spec: Any, breakage: Any, reported: str
) -> None:
    broken = spec()
    assert violations(broken) == []
    breakage(broken)
    assert any(reported in v for v in violations(broken)), violations(broken)


def test_the_nats_values_without_the_overlay_fail_the_profile() -> None:
    """What the issue found: the chart's defaults run nats and the reloader as root."""
    (statefulset,) = render_nats([]).of_kind("StatefulSet")
    found = violations(pod_spec(statefulset))
    assert any("containers[nats]" in v and "runAsNonRoot" in v for v in found)
    assert any("containers[reloader]" in v for v in found)
