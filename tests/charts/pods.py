"""Run a rendered container as a local process: the command its image would run, its env, its files.

There is no Docker engine or cluster here, so a test stands in for the kubelet: the image's
``ENTRYPOINT``/``CMD`` come from ``services/Dockerfile`` (the target skaffold builds for that
image), then the container's ``command``/``args`` override them as Kubernetes does; ``env`` and
``envFrom`` are resolved from the rendered ConfigMaps and Secrets (or the operator's own Secrets
a test supplies); every volume is written to a directory and each mount path in the command or
the environment is rewritten to it. Only what a container runtime would change is changed, and
each test-only override (a free port instead of 8080) is named by the caller.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.charts.rendering import REPO, Rendered, merge, pod_spec

DOCKERFILE = REPO / "services" / "Dockerfile"
SKAFFOLD = REPO / "skaffold.yaml"


# --- images: services/Dockerfile -----------------------------------------------------------


@dataclass
class ImageConfig:
    """What a Dockerfile stage hands to the runtime (inherited through ``FROM <stage>``)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    healthcheck: bool = False
    base: str = ""


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def _env_pairs(rest: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for match in re.finditer(r'(\w+)=("[^"]*"|\S+)', rest):
        pairs[match.group(1)] = match.group(2).strip('"')
    return pairs


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, ImageConfig]:
    """Every named stage of the Dockerfile with its effective runtime config."""
    stages: dict[str, ImageConfig] = {}
    current: ImageConfig | None = None
    for line in _logical_lines(path.read_text()):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert match, f"cannot read {line!r}"
            parent = stages.get(match.group(1))
            current = (
                ImageConfig(
                    entrypoint=parent.entrypoint,
                    cmd=parent.cmd,
                    env=dict(parent.env),
                    workdir=parent.workdir,
                    user=parent.user,
                    healthcheck=parent.healthcheck,
                    base=parent.base,
                )
                if parent
                else ImageConfig(base=match.group(1))
            )
            if match.group(2):
                stages[match.group(2)] = current
        elif current is None:
            continue
        elif word == "ENTRYPOINT":
            current.entrypoint = json.loads(rest)
            current.cmd = None  # Docker resets an inherited CMD when ENTRYPOINT is set
        elif word == "CMD":
            current.cmd = json.loads(rest)
        elif word == "ENV":
            current.env.update(_env_pairs(rest))
        elif word == "WORKDIR":
            current.workdir = rest.strip()
        elif word == "USER":
            current.user = rest.strip()
        elif word == "HEALTHCHECK":
            current.healthcheck = rest.strip().upper() != "NONE"
    return stages


# --- skaffold: which image is built from which target --------------------------------------


def skaffold_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return loaded


def skaffold_targets() -> dict[str, str]:
    """Artifact image name -> Dockerfile target."""
    return {a["image"]: a["docker"]["target"] for a in skaffold_config()["build"]["artifacts"]}


def skaffold_release(name: str = "tidings") -> dict[str, Any]:
    for release in skaffold_config()["deploy"]["helm"]["releases"]:
        if release["name"] == name:
            return dict(release)
    raise AssertionError(f"skaffold.yaml deploys no release {name!r}")


def skaffold_image_values(tag: str = "dev") -> dict[str, Any]:
    """The values skaffold sets from ``setValueTemplates``, with each artifact's repo and tag
    filled in the way skaffold does (``IMAGE_REPO_tidings_gateway`` is ``tidings/gateway``)."""
    by_var = {re.sub(r"[/\-.]", "_", image): image for image in skaffold_targets()}
    values: dict[str, Any] = {}
    for key, template in skaffold_release()["setValueTemplates"].items():

        def fill(match: re.Match[str]) -> str:
            kind, name = match.group(1), match.group(2)
            assert name in by_var, f"setValueTemplates names an unknown artifact: {name}"
            return by_var[name] if kind == "REPO" else tag

        value = re.sub(r"\{\{\s*\.IMAGE_(REPO|TAG)_(\w+)\s*\}\}", fill, template)
        values = merge(values, helm.parse_set_string_values(f"{key}={value}"))
    return values


def image_config(image: str) -> ImageConfig:
    """The runtime config of a rendered ``image:`` (repo:tag[@digest]): the Dockerfile target
    skaffold builds it from, or for the chart's default repositories (``.../gateway``) the
    target of that name."""
    repository = re.sub(r"(@sha256:[0-9a-f]+)?$", "", image).rsplit(":", 1)[0]
    stages = dockerfile_stages()
    target = skaffold_targets().get(repository) or repository.rsplit("/", 1)[-1]
    assert target in stages, f"{image}: no Dockerfile target builds it"
    return stages[target]


# --- a container as a local process --------------------------------------------------------


def _executable(name: str) -> str:
    """Where this machine has the program an image has on its PATH."""
    if name == "tidings":
        found = shutil.which("tidings", path=sysconfig.get_path("scripts"))
        assert found, "the tidings console script is not installed (pip install -e .)"
        return found
    if name in ("python", "python3"):
        return sys.executable
    found = shutil.which(name)
    assert found, f"{name} is not on this machine's PATH"
    return found


class LocalContainer:
    """One container of a rendered workload, ready to run here."""

    def __init__(
        self,
        rendered: Rendered,
        workload: Mapping[str, Any],
        name: str,
        *,
        root: Path,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.rendered = rendered
        self.spec = pod_spec(workload)
        pods = [*self.spec.get("initContainers", []), *self.spec["containers"]]
        found = [c for c in pods if c["name"] == name]
        assert found, f"{workload['metadata']['name']} has no container {name}"
        self.container: dict[str, Any] = found[0]
        self.pod_name = f"{workload['metadata']['name']}-local"
        self.image = image_config(self.container["image"])
        self.root = root
        self.external = {k: dict(v) for k, v in (secrets or {}).items()}
        self.mounts = self._materialize_volumes()
        self.command = self._command()
        self.env = self._environment(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = root / f"{name}.log"

    # -- what the runtime would do -----------------------------------------------------------

    def rendered_argv(self) -> list[str]:
        """The argv Kubernetes runs, before any path is mapped to this machine."""
        c = self.container
        entry = c.get("command", self.image.entrypoint) or []
        # Kubernetes: `command` replaces ENTRYPOINT and drops CMD; `args` replaces CMD.
        args = c.get("args", [] if "command" in c else self.image.cmd or [])
        return [*entry, *args]

    def _command(self) -> list[str]:
        argv = [self.localize(a) for a in self.rendered_argv()]
        assert argv, f"container {self.container['name']} runs nothing"
        return [_executable(argv[0]), *argv[1:]]

    def _secret_data(self, name: str) -> dict[str, str]:
        if name in self.external:
            return self.external[name]
        data = self.rendered.data("Secret", name)
        assert data, f"Secret {name} is neither rendered by the chart nor given by the test"
        return data

    def _materialize_volumes(self) -> dict[str, Path]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            target = self.root / "volumes" / mount["name"]
            target.mkdir(parents=True, exist_ok=True)
            files: dict[str, str] = {}
            if "configMap" in volume:
                files = self.rendered.data("ConfigMap", volume["configMap"]["name"])
                assert files, f"ConfigMap {volume['configMap']['name']} is not rendered"
            elif "secret" in volume:
                files = self._secret_data(volume["secret"]["secretName"])
            source = volume.get("configMap") or volume.get("secret") or {}
            for item in source.get("items") or [{"key": k, "path": k} for k in files]:
                assert item["key"] in files, f"volume {mount['name']} lacks the key {item['key']}"
                (target / item["path"]).write_text(files[item["key"]])
            mounts[mount["mountPath"]] = target
        return mounts

    def localize(self, value: str) -> str:
        """A path inside the container, as the directory that stands in for it here."""
        for mount_path, local in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(local) + value[len(mount_path) :]
        workdir = self.image.workdir
        if workdir != "/" and (value == workdir or value.startswith(workdir + "/")):
            return str(self.root / "rootfs") + value
        return value

    def _environment(self, overrides: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update({k: v for k, v in self.image.env.items() if k != "PATH"})
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.rendered.data("ConfigMap", source["configMapRef"]["name"]))
            elif "secretRef" in source:
                env.update(self._secret_data(source["secretRef"]["name"]))
        for item in self.container.get("env", []):
            if "value" in item:
                assert "$(" not in item["value"], "dependent env vars are not emulated"
                env[item["name"]] = item["value"]
                continue
            ref = item["valueFrom"]
            if "secretKeyRef" in ref:
                data = self._secret_data(ref["secretKeyRef"]["name"])
                env[item["name"]] = data[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                data = self.rendered.data("ConfigMap", ref["configMapKeyRef"]["name"])
                env[item["name"]] = data[ref["configMapKeyRef"]["key"]]
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = self.pod_name
            else:
                raise AssertionError(f"cannot emulate {item}")
        env = {k: self.localize(v) for k, v in env.items()}
        for key in env:
            if key.startswith("TIDINGS_") and env[key].startswith("/"):
                Path(env[key]).parent.mkdir(parents=True, exist_ok=True)
        env.update(overrides)
        return env

    # -- running -----------------------------------------------------------------------------

    @property
    def cwd(self) -> Path:
        path = Path(self.localize(self.container.get("workingDir", self.image.workdir)))
        if path == Path("/"):
            path = self.root / "rootfs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> subprocess.Popen[bytes]:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self.process

    def run(self, *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run to completion (a Job's container); output captured."""
        return self._complete(self.command, timeout)

    def exec(self, argv: list[str], *, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """An exec probe or hook: the command runs with the container's environment."""
        local = [self.localize(a) for a in argv]
        return self._complete([_executable(local[0]), *local[1:]], timeout)

    def _complete(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()
        self.process.send_signal(sig)

    def stop(self, *, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL (by PID) if it outlives ``timeout``. Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def log(self, tail: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-tail:] if self.log_file.exists() else ""

    def port(self, name_or_number: str | int) -> int:
        """A probe's port (a name or a number) as the containerPort it means."""
        if isinstance(name_or_number, int):
            return name_or_number
        for port in self.container.get("ports", []):
            if port.get("name") == name_or_number:
                return int(port["containerPort"])
        raise AssertionError(f"no container port named {name_or_number}")
