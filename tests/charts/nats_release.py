"""The NATS release as skaffold installs it: the official chart with charts/nats-values*.yaml.

The chart is vendored in ``tests/charts/vendor/nats`` (PROVENANCE.md there) so it renders with
Helm's engine like our own chart. The upstream chart has no values schema: a misspelled key
would be ignored by Helm, so ``unknown_keys`` checks every key a values file sets against the
chart's own ``values.yaml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.charts.rendering import NAMESPACE, REPO, Rendered, merge

NATS_CHART = Path(__file__).resolve().parent / "vendor" / "nats"
NATS_VALUES = sorted((REPO / "charts").glob("nats-values*.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return loaded


def unknown_keys(
    ours: Mapping[str, Any], upstream: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Dotted paths ``ours`` sets that the chart's ``values.yaml`` does not have.

    Below an upstream key whose default is an empty map (``merge``, ``env``,
    ``topologySpreadConstraints``: free-form by design) anything goes; below any other
    non-map default, a map is a mistake (a structure the chart never reads).
    """
    found = []
    for key, value in ours.items():
        path = f"{prefix}{key}"
        if key not in upstream:
            found.append(path)
            continue
        default = upstream[key]
        if isinstance(default, Mapping) and default:
            if isinstance(value, Mapping):
                found += unknown_keys(value, default, f"{path}.")
        elif isinstance(value, Mapping) and value and not isinstance(default, Mapping):
            found.append(f"{path} (the chart expects {type(default).__name__}, not a map)")
    return found


def masterminds_range(constraint: str) -> SpecifierSet:
    """A Helm/skaffold version range (Masterminds semver: ``>=2.14.2 <3.0.0``, space or comma
    means AND) as a PEP 440 specifier set; only plain comparisons, which is all we write."""
    parts = [p for p in re.split(r"[\s,]+", constraint.strip()) if p]
    for part in parts:
        if not re.fullmatch(r"(>=|<=|>|<|=|!=)\d+(\.\d+){0,2}", part):
            raise ValueError(f"{constraint!r}: {part!r} is not a plain comparison")
    return SpecifierSet(",".join(p.replace("=", "==", 1) if p[0] == "=" else p for p in parts))


def admits(constraint: str, version: str) -> bool:
    return Version(version) in masterminds_range(constraint)


def chart_version() -> str:
    return str(yaml.safe_load((NATS_CHART / "Chart.yaml").read_text())["version"])


def render_nats(values_files: list[Path], *, release: str = "nats") -> Rendered:
    """Render like ``helm template -n tidings nats nats/nats -f <file> -f <file>...``."""
    values: dict[str, Any] = {}
    for path in values_files:
        values = merge(values, load_values(path))
    return _render(json.dumps(values, sort_keys=True), release)


@cache
def _render(values_json: str, release: str) -> Rendered:
    with helm.Chart.load(NATS_CHART) as chart:
        manifests = chart.render(
            values=json.loads(values_json),
            name=release,
            namespace=NAMESPACE,
            is_install=True,
            is_upgrade=False,
        )
    out = Rendered(release=release)
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for obj in yaml.safe_load_all(manifests[path]):
            if obj:
                out.objects.append(obj)
                out.templates[id(obj)] = path
    return out
