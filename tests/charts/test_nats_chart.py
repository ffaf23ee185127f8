"""charts/nats-values*.yaml against the official NATS chart they are written for.

The chart has no values schema, so Helm ignores a misspelled key without a word: every key our
values files set must exist in the chart's ``values.yaml`` (the copy CI lays in
``../shared/vendor/nats-chart``), and the version range skaffold installs must admit the chart
version those values were checked against.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.charts.nats_release import (
    NATS_CHART,
    NATS_VALUES,
    admits,
    chart_version,
    load_values,
    masterminds_range,
    unknown_keys,
)
from tests.charts.pods import skaffold_release
from tests.charts.rendering import CHART, REPO
from tests.support.shared import shared_path


def _upstream_values() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(
        shared_path("vendor/nats-chart/values.yaml").read_text()
    )
    return loaded


def test_there_are_nats_values_files_to_check() -> None:
    assert {p.name for p in NATS_VALUES} >= {"nats-values.yaml", "nats-values-dev.yaml"}


@pytest.mark.parametrize("path", NATS_VALUES, ids=lambda p: p.name)
def test_every_key_our_nats_values_set_exists_in_the_upstream_chart(path: Path) -> None:
    assert unknown_keys(load_values(path), _upstream_values()) == []


@pytest.mark.parametrize(
    ("bad", "reported"),
    [
        (
            {"config": {"jetstream": {"fileStore": {"pvc": {"storageClass": "ssd"}}}}},
            "config.jetstream.fileStore.pvc.storageClass",
        ),
        ({"podTemplate": {"topologySpreadConstraint": {}}}, "podTemplate.topologySpreadConstraint"),
        ({"promExporter": {"enable": True}}, "promExporter.enable"),
        ({"config": {"cluster": {"replicas": {"count": 3}}}}, "config.cluster.replicas (the chart"),
    ],
)
def test_a_misspelled_or_misplaced_key_is_reported(bad: dict[str, object], reported: str) -> None:
    found = unknown_keys(bad, _upstream_values())
    assert len(found) == 1 and found[0].startswith(reported), found


def test_free_form_sections_accept_any_key() -> None:
    """``merge`` (raw nats.conf), ``env`` and the spread map are free-form upstream."""
    free = {
        "config": {"merge": {"accounts": {"X": {}}}},
        "container": {"env": {"ANY": "x"}, "merge": {"securityContext": {"runAsUser": 1}}},
        "podTemplate": {"topologySpreadConstraints": {"zone": {"maxSkew": 1}}},
    }
    assert unknown_keys(free, _upstream_values()) == []


def test_the_vendored_chart_is_the_upstream_release() -> None:
    """tests/charts/vendor/nats (rendered by the Pod Security and nats.conf tests) is the same
    chart as the one in ../shared."""
    for name in ("values.yaml", "Chart.yaml"):
        ours = (NATS_CHART / name).read_text()
        assert ours == shared_path(f"vendor/nats-chart/{name}").read_text(), name


def test_skaffold_installs_a_nats_chart_version_the_values_were_checked_against() -> None:
    upstream = yaml.safe_load(shared_path("vendor/nats-chart/Chart.yaml").read_text())
    assert upstream["version"] == chart_version()
    version_range = skaffold_release("nats")["version"]
    assert admits(version_range, upstream["version"]), version_range
    # The chart moved to 2.x (following the server) in 2025; its 1.x values were never checked.
    assert not admits(version_range, "1.2.4")
    assert not admits(version_range, "3.0.0")


@pytest.mark.parametrize(
    ("constraint", "version", "expected"),
    [
        (">=2.14.2 <3.0.0", "2.14.2", True),
        (">=2.14.2 <3.0.0", "2.15.0", True),
        (">=2.14.2, <3.0.0", "2.14.1", False),
        (">=1.2.0 <2.0.0", "2.14.2", False),  # the range skaffold.yaml had
        ("=2.14.2", "2.14.2", True),
    ],
)
def test_version_ranges_are_read_as_helm_reads_them(
    constraint: str, version: str, expected: bool
) -> None:
    assert admits(constraint, version) is expected


def test_a_range_we_cannot_read_is_refused() -> None:
    with pytest.raises(ValueError, match="not a plain comparison"):
        masterminds_range("~2.14 || ^3")


def test_the_docs_name_the_chart_major_version_skaffold_installs() -> None:
    major = chart_version().split(".")[0]
    texts = {
        p: p.read_text() for p in (REPO / "docs" / "deploy.md", CHART / "Chart.yaml", *NATS_VALUES)
    }
    for path, text in texts.items():
        for named in re.findall(r"nats/nats (\d+)\.x", text):
            assert named == major, f"{path} names nats/nats {named}.x"
    assert f"nats/nats {major}.x" in texts[REPO / "docs" / "deploy.md"]
