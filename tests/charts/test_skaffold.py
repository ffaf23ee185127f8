"""Every skaffold profile, applied with a real RFC 6902 library and rendered with Helm's engine.

``skaffold render -p <profile>`` without the binary (tests/charts/skaffold.py): each profile's
patches must apply (a path that does not exist fails skaffold at run time, not at review), the
result must validate against skaffold's schema, every release must render and be valid
Kubernetes, ``dependsOn`` must name a release of the same profile, port-forwards must target a
Service and port a release renders, and the NATS chart's version range must admit the chart the
values were checked against.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer
import jsonschema
import kubernetes_validate
import pytest

from tests.charts.nats_release import admits, chart_version
from tests.charts.pods import skaffold_config
from tests.charts.rendering import OLDEST_KUBERNETES, Rendered
from tests.charts.skaffold import profiles, render_release, with_profile
from tests.support.shared import shared_path

PROFILES = profiles()
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "HTTPRoute"}


def _schema() -> jsonschema.Draft7Validator:
    version = skaffold_config()["apiVersion"].split("/", 1)[1]
    schema = json.loads(shared_path(f"schemas/skaffold/{version}.json").read_text())
    return jsonschema.Draft7Validator(schema)


def releases(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(config.get("deploy", {}).get("helm", {}).get("releases", []))


def rendered_profile(config: dict[str, Any]) -> dict[str, Rendered]:
    return {r["name"]: render_release(r) for r in releases(config)}


def dependency_errors(config: dict[str, Any]) -> list[str]:
    """``dependsOn`` names a release deployed earlier in the same list (skaffold's order)."""
    errors, seen = [], set()
    for release in releases(config):
        for needed in release.get("dependsOn", []):
            if needed not in seen:
                errors.append(f"{release['name']} depends on {needed}, not deployed before it")
        seen.add(release["name"])
    return errors


def port_forward_errors(config: dict[str, Any], rendered: dict[str, Rendered]) -> list[str]:
    errors = []
    namespaces = {r["name"]: r.get("namespace", "default") for r in releases(config)}
    for forward in config.get("portForward", []):
        assert forward["resourceType"] == "service", forward  # what this project forwards
        services = [
            svc
            for name, out in rendered.items()
            for svc in out.of_kind("Service")
            if svc["metadata"]["name"] == forward["resourceName"]
            and namespaces[name] == forward.get("namespace", "default")
        ]
        if not services:
            errors.append(f"no Service {forward['resourceName']} in {forward.get('namespace')}")
        elif forward["port"] not in {p["port"] for p in services[0]["spec"]["ports"]}:
            errors.append(f"Service {forward['resourceName']} has no port {forward['port']}")
    return errors


@pytest.mark.parametrize("profile", PROFILES, ids=str)
def test_the_profile_applies_and_validates_against_the_skaffold_schema(
    profile: str | None,
) -> None:
    config = with_profile(profile)
    errors = [f"{list(e.path)}: {e.message}" for e in _schema().iter_errors(config)]
    assert errors == []


@pytest.mark.parametrize("profile", PROFILES, ids=str)
def test_every_release_of_the_profile_renders_valid_kubernetes(profile: str | None) -> None:
    config = with_profile(profile)
    rendered = rendered_profile(config)
    assert rendered, profile
    for name, out in rendered.items():
        release = next(r for r in releases(config) if r["name"] == name)
        assert out.objects, name
        for obj in out.objects:
            if obj["kind"] in CUSTOM_KINDS:
                continue
            ns = obj["metadata"].get("namespace", release["namespace"])
            assert ns == release["namespace"], f"{name}: {obj['kind']} in {ns}"
            try:
                kubernetes_validate.validate(obj, OLDEST_KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{profile}/{name}: {obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert dependency_errors(config) == []
    assert port_forward_errors(config, rendered) == []


def test_the_profiles_deploy_what_they_say() -> None:
    assert [r["name"] for r in releases(with_profile(None))] == ["nats", "tidings"]
    assert [r["name"] for r in releases(with_profile("local"))] == ["nats", "tidings"]
    assert with_profile("local")["build"]["local"]["push"] is False
    ci = releases(with_profile("ci"))
    assert [r["name"] for r in ci] == ["tidings"] and "dependsOn" not in ci[0]


def test_the_nats_release_range_admits_the_checked_chart() -> None:
    (nats,) = [r for r in releases(skaffold_config()) if r["name"] == "nats"]
    assert admits(nats["version"], chart_version())


# --- purpose-made bad inputs --------------------------------------------------------------------


def _with_profile_patches(patches: list[dict[str, Any]]) -> dict[str, Any]:
    config = copy.deepcopy(skaffold_config())
    config["profiles"].append({"name": "bad", "patches": patches})
    return config


@pytest.mark.parametrize(
    ("patches", "error"),
    [
        ([{"op": "remove", "path": "/deploy/helm/releases/5"}], jsonpatch.JsonPatchConflict),
        (
            [{"op": "replace", "path": "/build/lokal/push", "value": False}],
            jsonpointer.JsonPointerException,
        ),
        (
            [{"op": "test", "path": "/deploy/helm/releases/0/name", "value": "redis"}],
            jsonpatch.JsonPatchTestFailed,
        ),
        (
            [{"op": "add", "path": "/build/artifacts/9/image", "value": "x"}],
            jsonpointer.JsonPointerException,
        ),
    ],
)
def test_a_patch_on_a_path_that_does_not_exist_fails(
    patches: list[dict[str, Any]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        with_profile("bad", _with_profile_patches(patches))


def test_a_profile_that_breaks_dependencies_or_forwards_is_caught() -> None:
    # Removing NATS but not the dependency on it (what the ci profile's second patch prevents).
    config = with_profile(
        "bad", _with_profile_patches([{"op": "remove", "path": "/deploy/helm/releases/0"}])
    )
    assert dependency_errors(config) == ["tidings depends on nats, not deployed before it"]
    config["portForward"][0]["port"] = 8080
    assert port_forward_errors(config, rendered_profile(config)) == [
        "Service tidings-gateway has no port 8080"
    ]


def test_a_range_that_excludes_the_checked_chart_fails_the_render() -> None:
    config = with_profile(
        "bad",
        _with_profile_patches(
            [
                {
                    "op": "replace",
                    "path": "/deploy/helm/releases/0/version",
                    "value": ">=1.2.0 <2.0.0",
                }
            ]
        ),
    )
    with pytest.raises(AssertionError, match=r"excludes the NATS chart 2\.14\.2"):
        rendered_profile(config)


def test_a_profile_setting_an_unknown_key_fails_the_schema() -> None:
    config = with_profile(
        "bad",
        _with_profile_patches(
            [{"op": "add", "path": "/deploy/helm/releases/1/valueFiles", "value": ["x.yaml"]}]
        ),
    )
    assert list(_schema().iter_errors(config))
