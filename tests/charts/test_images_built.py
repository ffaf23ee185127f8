"""The images, built from services/Dockerfile and run, without a Docker engine (issue 13 A.1).

tests/support/images.py builds a stand-in for the pinned base with mmdebstrap (registries cannot
be reached), swaps it in for the ``FROM`` line only, builds every target with buildah and runs
them with podman: ``tidings nats init`` against a real nats-server, the gateway answering its
probes and metrics as uid 10001 on a read-only root and draining on SIGTERM, the sidecar
answering its probes. This proves the Dockerfile's instructions, the build context and the
images' runtime config; it cannot prove the real base image's digest (docs/deploy.md).
Built once per session (about two minutes on the 2-core machine; CONTRIBUTING, CI costs).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from nats.js import JetStreamContext

from tests.charts.pods import dockerfile_stages
from tests.support import images as img
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until
from tests.support.wsclient import RawClient
from tidings.auth import mint_token
from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port

TARGETS = ("cli", "publisher", "gateway")


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[img.Images]:
    img.require_tools()
    built = img.Images(run_id=f"{int(time.time())}-{id(object()) % 10000}",
                       workdir=tmp_path_factory.mktemp("images"))  # fmt: skip
    log = built.workdir / "build.log"
    try:
        started = time.monotonic()
        img.build_base(built, log)
        built.seconds["base"] = time.monotonic() - started
        started = time.monotonic()
        img.build_targets(built, TARGETS, log)
        built.seconds["targets"] = time.monotonic() - started
        yield built
    finally:
        img.remove(built, log)


def _config(images: img.Images, target: str) -> dict[str, object]:
    out = img.podman("image", "inspect", images.tags[target])
    assert out.returncode == 0, out.stderr
    config: dict[str, object] = json.loads(out.stdout)[0]["Config"]
    return config


def test_every_target_is_built_with_the_dockerfiles_runtime_config(images: img.Images) -> None:
    stages = dockerfile_stages()
    for target in TARGETS:
        config = _config(images, target)
        assert config["User"] == stages[target].user == "10001:10001", target
        assert config["Entrypoint"] == stages[target].entrypoint, target
        assert "Healthcheck" not in config, target
        env = dict(str(e).split("=", 1) for e in config["Env"])  # type: ignore[attr-defined]
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # No build tools in what runs: pip is gone from the venv and the base.
    result = img.podman(
        "run", "--rm", "--network", "none", "--read-only", *img.ULIMITS,
        "--entrypoint", "python", images.tags["cli"], "-c",
        "import importlib.util as u; print([m for m in ('pip', 'setuptools') if u.find_spec(m)])",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_nats_init_from_the_cli_image_creates_the_stream(
    images: img.Images, nats_server: EmbeddedNats
) -> None:
    env = {"TIDINGS_NATS_URLS": nats_server.url, "TIDINGS_STREAM_REPLICAS": "1"}
    first = await asyncio.to_thread(img.run_once, images, "cli", "nats", "init", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created" in first.stdout
    again = await asyncio.to_thread(img.run_once, images, "cli", "nats", "init", env=env)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr


async def test_the_gateway_image_serves_read_only_as_10001_and_drains_on_sigterm(
    images: img.Images, js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    port, api, metrics = free_port(), free_port(), free_port()
    env = {
        "TIDINGS_NATS_URLS": nats_server.url,
        "TIDINGS_GATEWAY_PORT": str(port),
        "TIDINGS_GATEWAY_API_PORT": str(api),
        "TIDINGS_GATEWAY_METRICS_PORT": str(metrics),
        "TIDINGS_GATEWAY_DRAIN_SECONDS": "1",
        "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
    }
    with img.container(images, "gateway", env=env, what="gateway") as name:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                img.running_or_fail(name)
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready, timeout=60, what="the gateway container's /readyz")
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            scrape = await http.get(f"http://127.0.0.1:{metrics}/metrics")
            assert "tidings_gateway_connections 0.0" in scrape.text
            assert (await http.get(f"http://127.0.0.1:{port}/metrics")).status_code == 404

        uid = img.podman("exec", name, "id", "-u")
        assert uid.stdout.strip() == "10001", uid.stderr
        write = img.podman("exec", name, "python", "-c", "open('/opt/tidings/x', 'w')")
        assert write.returncode != 0 and "Read-only file system" in write.stderr

        token = mint_token(JWT_SECRET, tenant="acme", user="alice")
        async with RawClient(f"ws://127.0.0.1:{port}/ws") as client:
            assert (await client.hello(token))["tenant"] == "acme"
            stopped = img.podman("kill", "--signal", "TERM", name)
            assert stopped.returncode == 0, stopped.stderr
            frame = await client.next("reconnect", timeout=10)
            assert frame["type"] == "reconnect", frame

        async def exited() -> bool:
            state = img.podman("inspect", name, "--format", "{{.State.Status}} {{.State.ExitCode}}")
            return state.stdout.strip() == "exited 0"

        await until(exited, timeout=20, what="the gateway container to exit 0 after its drain")


async def test_the_publisher_image_answers_its_probes(
    images: img.Images, js: JetStreamContext, nats_server: EmbeddedNats
) -> None:
    port = free_port()
    env = {"TIDINGS_NATS_URLS": nats_server.url, "TIDINGS_PUBLISHER_PORT": str(port)}
    # The outbox is a volume in the chart (publisher.outbox.volume): the root is read-only.
    outbox = "/var/lib/tidings/outbox"
    with img.container(images, "publisher", env=env, what="publisher", volumes=[outbox]) as name:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                img.running_or_fail(name)
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready, timeout=60, what="the sidecar container's /readyz")
