"""compose.yaml (Tidings without Kubernetes) against the Compose Specification's JSON schema
(vendored in tests/charts/vendor/compose-spec) and against what it names: Dockerfile targets,
settings Tidings reads, ports, and the order of start.

Not run here: its `nats` service needs the official nats image, and no registry can be reached
from this machine or CI (the images test builds Tidings' own images from a stand-in base).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.charts.nats_release import chart_version
from tests.charts.pods import DOCKERFILE, dockerfile_stages
from tests.charts.rendering import REPO
from tidings.variables import known_variables

COMPOSE = REPO / "compose.yaml"
SCHEMA = Path(__file__).parent / "vendor" / "compose-spec" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_compose_yaml_validates_against_the_compose_specification() -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in _validator().iter_errors(_compose())]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["gateway"].update(port=["8080:8080"]),  # misspelled key
        lambda c: c["services"]["nats-init"]["depends_on"]["nats"].update(condition="healthy"),
        lambda c: c["services"]["nats"]["healthcheck"].update(intervall="2s"),
    ],
)
def test_the_schema_catches_a_mistake(breakage: Any) -> None:
    broken = copy.deepcopy(_compose())
    breakage(broken)
    assert list(_validator().iter_errors(broken))


def test_every_build_is_a_dockerfile_target_and_every_setting_is_read() -> None:
    stages = dockerfile_stages()
    services = _compose()["services"]
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert {b["target"] for b in built.values()} == {"cli", "gateway", "publisher"}
    for name, build in built.items():
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in stages, name
    for name, service in services.items():
        for key in service.get("environment", {}):
            if key.startswith("TIDINGS_"):
                assert key in known_variables(), f"{name}: {key} is no setting"


def test_start_order_ports_and_the_nats_version() -> None:
    services = _compose()["services"]
    assert services["nats-init"]["depends_on"] == {"nats": {"condition": "service_healthy"}}
    for name in ("gateway", "publisher"):
        assert services[name]["depends_on"] == {
            "nats-init": {"condition": "service_completed_successfully"}
        }
        assert services[name]["read_only"] is True
    published = [p.split(":")[-1] for p in services["gateway"]["ports"]]
    assert published == ["8080", "8083"]  # never the metrics port 9464
    assert services["publisher"]["ports"] == ["127.0.0.1:8081:8081"]  # loopback only
    assert services["nats"]["image"].endswith(f"nats:{chart_version()}-alpine")
    # The drain fits before compose's SIGKILL.
    grace = int(re.fullmatch(r"(\d+)s", services["gateway"]["stop_grace_period"]).group(1))  # type: ignore[union-attr]
    assert grace > 20
