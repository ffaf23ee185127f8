"""Render the chart with the real Helm engine (helm-python-sdk: Helm's Go SDK, no binary).

``render(values)`` returns the manifests as parsed objects, the way ``helm template`` would
print them; ``VARIANTS`` is the matrix every chart test runs over. Secrets the chart generates
(the HS256 secret) are random per render, so tests compare everything else.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tidings"
NAMESPACE = "tidings"

DIGEST = "sha256:" + "0123456789abcdef" * 4
PEM = (REPO / "tests" / "charts" / "data" / "jwt-public.pem").read_text()

# The matrix of the issue: defaults; everything optional on (and hardened: digests, keys as
# files); the operator's own Secrets; the sidecar example. Each renders as its own release so
# their labels never select each other's pods (checkov reads them in one run).
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "full": {
        "images": {name: {"digest": DIGEST} for name in ("gateway", "publisher", "cli")},
        "auth": {"method": "publicKey", "publicKey": PEM},
        "nats": {
            "urls": ["tls://nats-0.nats:4222", "tls://nats-1.nats:4222"],
            "tls": {"enabled": True, "secretName": "nats-client-tls", "clientCert": True},
            "credentials": {
                "gateway": {"method": "creds", "creds": "-----BEGIN NATS USER JWT-----\n..."},
                "init": {"method": "nkey", "nkeySeed": "SUAEXAMPLESEED"},
                "publisher": {"method": "creds", "creds": "-----BEGIN NATS USER JWT-----\n..."},
            },
        },
        "gateway": {
            "allowedOrigins": ["https://app.example.com"],
            "userConnections": 5,
            "ingress": {
                "enabled": True,
                "tls": [{"secretName": "tidings-tls", "hosts": ["tidings.example.com"]}],
            },
            "autoscaling": {"enabled": True, "connections": {"enabled": True}},
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "namespace": "monitoring",
                "relabelings": [{"targetLabel": "cluster", "replacement": "eu-1"}],
            },
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "gateway-system"}],
                "hostnames": ["tidings.example.com"],
            },
        },
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "gatewayIngressFrom": [
                {"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}
            ],
            "natsPeers": [{"namespaceSelector": {"matchLabels": {"name": "nats"}}}],
        },
        "exampleProducer": {"enabled": True},
        "publisher": {"quotas": {"enabled": True, "rate": 50, "burst": 100, "daily": 100000}},
    },
    # The inbox (issue 11) with everything that routes, scrapes or fences it.
    "inbox": {
        "images": {name: {"digest": DIGEST} for name in ("gateway", "publisher", "cli")},
        "inbox": {
            "enabled": True,
            "database": {
                "existingSecret": "tidings-inbox-db",
                "peers": [{"namespaceSelector": {"matchLabels": {"name": "postgres"}}}],
            },
        },
        "nats": {"credentials": {"inbox": {"method": "password", "password": "inbox-pw"}}},
        "gateway": {
            "ingress": {"enabled": True},
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}]},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    },
    "existing-secret": {
        "auth": {"method": "secret", "existingSecret": "tidings-jwt"},
        "nats": {
            "credentials": {
                "gateway": {"method": "password", "existingSecret": "tidings-nats-gateway"},
                "init": {"method": "token", "existingSecret": "tidings-nats-admin"},
                "publisher": {"method": "password", "existingSecret": "tidings-nats-publisher"},
            }
        },
        "gateway": {"adminToken": {"existingSecret": "tidings-admin"}},
        "exampleProducer": {"enabled": True},
    },
    "sidecar": {
        "exampleProducer": {"enabled": True},
        "publisher": {"native": False},
        "nats": {"credentials": {"publisher": {"method": "nkey", "nkeySeed": "SUAEXAMPLESEED"}}},
    },
}

# Kubernetes versions checked: the oldest the chart claims (Chart.yaml kubeVersion) and the
# newest kubernetes-validate knows.
OLDEST_KUBERNETES = "1.29.0"


@dataclass
class Rendered:
    """One `helm template`: its objects (hooks included) in template order, and NOTES.txt."""

    release: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    templates: dict[int, str] = field(default_factory=dict)  # id(object) -> template path
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, component: str) -> dict[str, Any]:
        """The one object of ``kind`` whose name ends with ``-<component>``."""
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(f"-{component}")]
        assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
        return found[0]

    def find(self, kind: str, component: str) -> dict[str, Any] | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(f"-{component}")]
        return found[0] if found else None

    def workloads(self) -> Iterator[dict[str, Any]]:
        """Every object that carries a pod template (Deployment, StatefulSet, Job) or is a Pod."""
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"):
                yield obj

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A rendered ConfigMap's data or a Secret's decoded data, by name ({} if absent)."""
        import base64

        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                if kind == "Secret":
                    return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
                return dict(obj.get("data", {}))
        return {}


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]
    return spec if workload["kind"] == "Pod" else spec["template"]["spec"]


def containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Init containers (sidecars) and containers of a workload."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def component(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge (``extra`` wins), like stacking two ``-f`` values files."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "tidings",
    upgrade: bool = False,
) -> Rendered:
    """Render like ``helm template --namespace tidings <release> charts/tidings -f values``.

    Raises ``helm.HelmValuesError`` (schema) or ``helm.HelmRenderError`` (a template's ``fail``).
    """
    return _render(json.dumps(values or {}, sort_keys=True), release, upgrade)


@cache
def _render(values_json: str, release: str, upgrade: bool) -> Rendered:
    manifests = chart().render(
        values=json.loads(values_json),
        name=release,
        namespace=NAMESPACE,
        is_install=not upgrade,
        is_upgrade=upgrade,
    )
    out = Rendered(release=release)
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            out.notes = text
            continue
        for obj in yaml.safe_load_all(text):
            if obj:
                out.objects.append(obj)
                out.templates[id(obj)] = path
    return out


def render_variant(name: str) -> Rendered:
    return render(VARIANTS[name], release=name)
