"""Build and run the Dockerfile's images without a Docker engine (issue 13 A.1).

Debian's ``mmdebstrap`` makes a stand-in for the digest-pinned base image (registries cannot be
reached): Debian bookworm's Python 3.11 with a venv at ``/usr/local``, so ``python`` and ``pip``
behave as in the official ``python:3.11-slim-bookworm`` image, plus this machine's CA bundle and
a pip.conf naming it (PyPI is reached through the local TLS proxy). ``podman import`` stores it;
``buildah bud`` builds every target of a copy of ``services/Dockerfile`` whose ``FROM`` names the
stand-in (the only line changed); ``podman run`` (runtime runc, cgroupfs: crun fails on this
machine's cgroup layout) runs the images. Every image and container is named with this run's id
and removed at the end.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "services" / "Dockerfile"
TOOLS = ("mmdebstrap", "buildah", "podman", "runc")
PINNED_FROM = re.compile(
    r"^FROM python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64} AS base$", re.MULTILINE
)
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")


def _ulimits() -> tuple[str, ...]:
    """podman's default limits exceed this machine's hard limits (runc then refuses to start
    the container): ask for at most what this process may have."""
    out: list[str] = []
    for name, which, wanted in (
        ("nofile", resource.RLIMIT_NOFILE, 65536),
        ("nproc", resource.RLIMIT_NPROC, 4096),
    ):
        hard = resource.getrlimit(which)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        out += ["--ulimit", f"{name}={value}:{value}"]
    return tuple(out)


ULIMITS = _ulimits()


def require_tools() -> None:
    """Skip (with the reason) where the tools are missing, unless CI is set: then fail."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (Debian packages; scripts/test installs them)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run(argv: Sequence[str], *, timeout: float, log: Path | None = None) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if log is not None:
        with log.open("a") as sink:
            sink.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result.stdout


@dataclass
class Images:
    """The built images of one test session: target -> image name."""

    run_id: str
    workdir: Path
    tags: dict[str, str] = field(default_factory=dict)
    base: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def container_name(self, what: str) -> str:
        return f"tidings-test-{self.run_id}-{what}-{uuid.uuid4().hex[:6]}"


def stand_in_dockerfile(base: str) -> str:
    """services/Dockerfile with the pinned base replaced by ``base``: that line only."""
    text = DOCKERFILE.read_text()
    swapped, count = PINNED_FROM.subn(f"FROM {base} AS base", text)
    assert count == 1, "services/Dockerfile must have exactly one pinned `FROM python:... AS base`"
    return swapped


def build_base(images: Images, log: Path) -> None:
    tarball = images.workdir / "base.tar"
    run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates,passwd",
            # The official image's Python lives in /usr/local with pip beside it.
            '--customize-hook=chroot "$1" python3 -m venv /usr/local',
            "--customize-hook=cp /etc/ssl/certs/ca-certificates.crt"
            ' "$1"/etc/ssl/certs/ca-certificates.crt',
            "--customize-hook=printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n'"
            ' > "$1"/etc/pip.conf',
            '--customize-hook=rm -rf "$1"/var/cache/apt "$1"/var/lib/apt/lists',
            "bookworm",
            str(tarball),
        ],
        timeout=600,
        log=log,
    )
    images.base = f"localhost/tidings-test-base:{images.run_id}"
    run([*PODMAN, "import", "--quiet", str(tarball), images.base], timeout=300, log=log)
    tarball.unlink()


def build_targets(images: Images, targets: Sequence[str], log: Path) -> None:
    dockerfile = images.workdir / "Dockerfile"
    dockerfile.write_text(stand_in_dockerfile(images.base))
    for target in targets:
        tag = f"localhost/tidings-test/{target}:{images.run_id}"
        run(
            [
                "buildah", "bud", "--isolation", "chroot", "--network", "host", "--pull=never",
                "-f", str(dockerfile), "--target", target, "-t", tag, str(REPO),
            ],
            timeout=900,
            log=log,
        )  # fmt: skip
        images.tags[target] = tag


def remove(images: Images, log: Path) -> None:
    """Remove this run's images (and the layers only they use). Builds run without
    ``--layers`` so that no unnamed intermediate image is left behind."""
    names = [*images.tags.values(), images.base]
    subprocess.run(
        [*PODMAN, "rmi", "--force", *[n for n in names if n]],
        capture_output=True,
        timeout=120,
        check=False,
    )
    del log


@contextmanager
def container(
    images: Images,
    target: str,
    *args: str,
    env: dict[str, str],
    what: str,
    volumes: Sequence[str] = (),
) -> Iterator[str]:
    """A detached container of ``target``: host network, read-only root, a tmpfs /tmp and one
    for each of ``volumes`` (the chart's emptyDirs), the image's own user. Removed (by its
    name) on exit."""
    name = images.container_name(what)
    argv = [
        *PODMAN, "run", "--detach", "--name", name, "--network", "host", "--read-only",
        # `U`: owned by the image's user, as the kubelet gives an emptyDir to the pod's fsGroup.
        "--tmpfs", "/tmp", *[a for v in volumes for a in ("--tmpfs", f"{v}:rw,U")], *ULIMITS,
        *[f"--env={k}={v}" for k, v in env.items()],
        images.tags[target], *args,
    ]  # fmt: skip
    run(argv, timeout=120)
    try:
        yield name
    finally:
        subprocess.run(
            [*PODMAN, "rm", "--force", "--time", "5", name],
            capture_output=True,
            timeout=60,
            check=False,
        )


def run_once(
    images: Images, target: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a container to completion (a Job's), output captured."""
    argv = [
        *PODMAN, "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp", *ULIMITS,
        *[f"--env={k}={v}" for k, v in env.items()], images.tags[target], *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def running_or_fail(name: str) -> None:
    """Fail with the container's output if it is no longer running."""
    state = podman("inspect", name, "--format", "{{.State.Status}}").stdout.strip()
    if state != "running":
        logs = podman("logs", name)
        raise AssertionError(f"container {name} is {state}:\n{logs.stdout}{logs.stderr}")
