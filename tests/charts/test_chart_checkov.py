"""checkov (static analysis) over every rendered variant and the Dockerfile, in one run.

A failed check is acceptable only when charts/tidings/README.md lists it ("Checks we skip")
for that component, with the reason; a listed check that no longer fails anywhere is stale and
fails the test too. Checks the README says a value fixes must pass in the hardened ``full``
variant, which sets those values.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.charts.pods import DOCKERFILE
from tests.charts.rendering import CHART, VARIANTS, render_variant

README = CHART / "README.md"
BEGIN, END = "<!-- BEGIN CHECKOV SKIPS -->", "<!-- END CHECKOV SKIPS -->"


@dataclass(frozen=True)
class Skip:
    check: str
    components: frozenset[str]
    fixed_by: str  # "" when nothing in the values fixes it


def documented_skips() -> list[Skip]:
    table = README.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    skips = []
    for row in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        check = re.findall(r"`(CKV2?_[A-Z0-9_]+)`", cells[0])
        assert len(check) == 1, f"README skip row without one check id: {row}"
        components = frozenset(re.findall(r"`([\w.-]+)`", cells[1]))
        fixed_by = "" if cells[2].startswith("—") else cells[2]
        assert cells[3], f"README skip row without a reason: {row}"
        skips.append(Skip(check[0], components, fixed_by))
    return skips


@dataclass(frozen=True)
class Failure:
    check: str
    variant: str
    component: str
    resource: str


@cache
def checkov_failures(directory: str) -> tuple[Failure, ...]:
    root = Path(directory)
    for variant in VARIANTS:
        (root / variant).mkdir()
        for i, obj in enumerate(render_variant(variant).objects):
            labels = obj["metadata"].get("labels", {})
            part = labels.get("app.kubernetes.io/component", "chart")
            name = f"{part}--{obj['kind'].lower()}-{i}.yaml"
            (root / variant / name).write_text(yaml.safe_dump(obj))
    (root / "image").mkdir()
    shutil.copy(DOCKERFILE, root / "image" / "Dockerfile")
    checkov = shutil.which("checkov", path=sysconfig.get_path("scripts"))
    assert checkov, "checkov is not installed (pip install -e '.[dev]')"
    # --skip-download: no network (it would fetch guideline links from Prisma Cloud).
    result = subprocess.run(
        [
            checkov,
            "-d",
            str(root),
            "--framework",
            "kubernetes",
            "dockerfile",
            "-o",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some check failed
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, result.stdout[:500]
    failures = []
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["passed"] > 0
        for failed in report["results"]["failed_checks"]:
            path = Path(failed["file_path"].lstrip("/"))
            variant, component = (
                ("image", "Dockerfile")
                if path.name == "Dockerfile"
                else (path.parts[0], path.name.split("--", 1)[0])
            )
            failures.append(Failure(failed["check_id"], variant, component, failed["resource"]))
    return tuple(failures)


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Failure, ...]:
    return checkov_failures(str(tmp_path_factory.mktemp("checkov")))


def _covered(failure: Failure, skips: list[Skip]) -> Iterator[Skip]:
    return (s for s in skips if s.check == failure.check and failure.component in s.components)


def test_every_failed_check_is_a_documented_skip(failures: tuple[Failure, ...]) -> None:
    skips = documented_skips()
    undocumented = sorted(
        {(f.check, f.component, f.resource) for f in failures if not any(_covered(f, skips))}
    )
    assert undocumented == [], "fix these, or list them with a reason in charts/tidings/README.md"


def test_no_documented_skip_is_stale(failures: tuple[Failure, ...]) -> None:
    seen = {(f.check, f.component) for f in failures}
    stale = [
        (s.check, c)
        for s in documented_skips()
        for c in sorted(s.components)
        if (s.check, c) not in seen
    ]
    assert stale == [], "these no longer fail: remove them from the README's table"


def test_the_hardened_variant_passes_every_check_a_value_can_fix(
    failures: tuple[Failure, ...],
) -> None:
    fixable = {s.check for s in documented_skips() if s.fixed_by}
    assert fixable  # the README names the values that fix them
    still = sorted(
        {(f.check, f.component) for f in failures if f.variant == "full" and f.check in fixable}
    )
    assert still == []
