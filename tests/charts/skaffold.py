"""skaffold without skaffold: its profiles applied and its releases rendered as it would.

No skaffold binary exists in the registries this project can use, so the tests do what
``skaffold render -p <profile>`` does up to the manifests: apply the profile's patches with a
real RFC 6902 implementation (``jsonpatch``, as skaffold applies them to the config), then render
each Helm release with Helm's engine: our chart from ``chartPath`` with its ``valuesFiles`` and
``setValueTemplates``, the NATS chart from the vendored copy when the release's ``version``
range admits it (the repository itself cannot be reached).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import yaml

from tests.charts.nats_release import NATS_CHART, admits, chart_version, render_nats
from tests.charts.pods import skaffold_config, skaffold_image_values
from tests.charts.rendering import REPO, Rendered, merge, render

NATS_REPO = "https://nats-io.github.io/k8s/helm/charts/"


def profiles(config: dict[str, Any] | None = None) -> list[str | None]:
    """None (no profile) and every profile's name."""
    config = config or skaffold_config()
    return [None, *(p["name"] for p in config.get("profiles", []))]


def with_profile(name: str | None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config skaffold runs with ``-p name``: the profile's JSON patches applied.

    Raises ``jsonpatch.JsonPatchException`` / ``jsonpointer.JsonPointerException`` on a patch
    skaffold would refuse (a path that does not exist, a failed ``test`` op)."""
    config = copy.deepcopy(config or skaffold_config())
    if name is None:
        return config
    (profile,) = [p for p in config.get("profiles", []) if p["name"] == name]
    patched: dict[str, Any] = jsonpatch.apply_patch(config, profile.get("patches", []))
    return patched


def render_release(release: dict[str, Any]) -> Rendered:
    """One ``deploy.helm.releases`` entry as Helm renders it."""
    files = [REPO / p for p in release.get("valuesFiles", [])]
    if "remoteChart" in release:
        assert release["remoteChart"] == "nats" and release.get("repo") == NATS_REPO, release
        version = chart_version()
        assert admits(release["version"], version), (
            f"release {release['name']}: range {release['version']!r} excludes the NATS chart "
            f"{version} the values are checked against ({NATS_CHART})"
        )
        return render_nats(files, release=release["name"])
    chart = (REPO / release["chartPath"]).resolve()
    assert chart == (REPO / "charts" / "tidings").resolve(), chart
    values: dict[str, Any] = {}
    for path in files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    if release.get("setValueTemplates"):
        base = [
            r
            for r in skaffold_config()["deploy"]["helm"]["releases"]
            if r["name"] == release["name"]
        ]
        assert base and base[0].get("setValueTemplates") == release["setValueTemplates"], (
            "a profile patched setValueTemplates: teach skaffold_image_values to read it"
        )
        values = merge(values, skaffold_image_values())
    return render(values, release=release["name"])
