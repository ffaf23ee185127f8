"""`tidings dev` as a newcomer runs it: a real process tree on free ports, driven from outside."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tests.support.waiting import wait_until
from tidings.envelope import Notification
from tidings.ports import free_port, port_in_use
from tidings.protocol import SUBPROTOCOL


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}


def tidings(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Dev:
    """One `tidings dev` process and what it told us."""

    process: subprocess.Popen[bytes]
    dir: Path
    cwd: Path
    nats_port: int
    publisher_port: int
    gateway_port: int
    gateway_api_port: int
    demo_port: int
    inbox_port: int
    inbox_api_port: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def stdout(self) -> str:
        return (self.cwd / "dev.out").read_text()

    @property
    def stderr(self) -> str:
        return (self.cwd / "dev.err").read_text()

    def read_info(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            info: dict[str, Any] = json.loads((self.dir / "dev.json").read_text())
            self.info = info
            return info
        return None

    def pids(self) -> list[int]:
        return [int(p) for p in self.info.get("pids", {}).values()]


def launch(cwd: Path, *, publisher_port: int | None = None, metrics_port: int | None = None) -> Dev:
    cwd.mkdir(parents=True, exist_ok=True)
    dev = Dev(
        process=None,  # type: ignore[arg-type]
        dir=cwd / "state",
        cwd=cwd,
        nats_port=free_port(),
        publisher_port=publisher_port or free_port(),
        gateway_port=free_port(),
        gateway_api_port=free_port(),
        demo_port=free_port(),
        inbox_port=free_port(),
        inbox_api_port=free_port(),
    )
    with (cwd / "dev.out").open("wb") as out, (cwd / "dev.err").open("wb") as err:
        dev.process = subprocess.Popen(
            [
                sys.executable, "-m", "tidings", "dev", "--dir", str(dev.dir),
                "--nats-port", str(dev.nats_port), "--publisher-port", str(dev.publisher_port),
                "--gateway-port", str(dev.gateway_port), "--demo-port", str(dev.demo_port),
                "--gateway-api-port", str(dev.gateway_api_port),
                "--inbox-port", str(dev.inbox_port), "--inbox-api-port", str(dev.inbox_api_port),
                "--gateway-metrics-port", str(metrics_port or free_port()),
            ],
            cwd=cwd, env=clean_env(), stdout=out, stderr=err,
        )  # fmt: skip
    return dev


def start(cwd: Path) -> Dev:
    dev = launch(cwd)

    def up() -> bool:
        if dev.process.poll() is not None:
            pytest.fail(f"tidings dev exited with {dev.process.returncode}:\n{dev.stderr}")
        return dev.read_info() is not None

    wait_until(up, timeout=40, what="no dev.json")
    return dev


def stop(dev: Dev, *, timeout: float = 20) -> int:
    """SIGINT, as Ctrl-C does; if it does not exit in time, kill everything it started."""
    if dev.process.poll() is None:
        dev.process.send_signal(signal.SIGINT)
    try:
        return dev.process.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in dev.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dev.process.wait()
        pytest.fail(f"tidings dev did not stop within {timeout}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    dev = start(tmp_path_factory.mktemp("dev"))
    try:
        yield dev
    finally:
        stop(dev)


def body(**extra: Any) -> dict[str, Any]:
    return {
        "tenant": "demo",
        "event": "incident.created",
        "title": "Spill",
        "message": "Hall 3",
        **extra,
    }


async def next_object(ws: ClientConnection, kind: str, *, timeout: float = 10) -> dict[str, Any]:
    """The next JSON object of ``kind`` (a server frame may carry several, one per line)."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            text = raw if isinstance(raw, str) else raw.decode()
            for line in text.splitlines():
                obj: dict[str, Any] = orjson.loads(line)
                if obj.get("type") == kind:
                    return obj


async def stored(nats_url: str, seq: int) -> tuple[str, Notification]:
    nc = await nats.connect(nats_url)
    try:
        msg = await nc.jetstream().get_msg("TIDINGS", seq)
    finally:
        await nc.close()
    return msg.subject or "", Notification.from_bytes(msg.data or b"")


def test_dev_json_names_working_urls_and_a_dev_token(stack: Dev) -> None:
    info = stack.info
    assert info["nats"]["url"] == f"nats://127.0.0.1:{stack.nats_port}"
    assert info["publisher"]["url"] == f"http://127.0.0.1:{stack.publisher_port}"
    assert info["gateway"] == {
        "url": f"http://127.0.0.1:{stack.gateway_port}",
        "ws": f"ws://127.0.0.1:{stack.gateway_port}/ws",
        "api": f"http://127.0.0.1:{stack.gateway_api_port}",
    }
    for service in ("publisher", "gateway"):
        assert httpx.get(info[service]["url"] + "/readyz").status_code == 200
    secret_file = stack.dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    claims = jwt.decode(
        info["token"], secret_file.read_text().strip(), algorithms=["HS256"], audience="tidings"
    )
    assert (claims["tenant"], claims["sub"], claims["roles"], claims["rooms"]) == (
        "demo", "alice", ["admin"], ["*"],
    )  # fmt: skip
    assert info["token"] in stack.stdout  # printed for the newcomer too
    assert info["publisher"]["url"] in stack.stdout
    assert info["gateway"]["ws"] in stack.stdout


async def test_the_dev_token_receives_a_notification_published_through_the_sidecar(
    stack: Dev,
) -> None:
    """The newcomer's path: token from dev.json, WebSocket to the gateway, publish, see it."""
    protocols = [Subprotocol(SUBPROTOCOL)]
    async with websockets.connect(stack.info["gateway"]["ws"], subprotocols=protocols) as ws:
        await ws.send(orjson.dumps({"type": "hello", "token": stack.info["token"]}).decode())
        welcome = await next_object(ws, "welcome")
        assert (welcome["tenant"], welcome["user"]) == ("demo", "alice")
        resp = httpx.post(
            stack.info["publisher"]["url"] + "/v1/notifications",
            json=body(id="to-alice", audience={"user": "alice"}),
        )
        assert resp.status_code == 202, resp.text
        seen = await next_object(ws, "notification")
    assert (seen["id"], seen["seq"], seen["room"]) == ("to-alice", resp.json()["seq"], "user:alice")


def test_the_inbox_keeps_what_was_published_and_the_demo_page_knows_the_api(stack: Dev) -> None:
    """The writer stores it, the inbox API lists it with the dev token, marks it read, and
    answers the demo page's origin (CORS)."""
    api = f"http://127.0.0.1:{stack.inbox_api_port}"
    assert stack.info["inbox-api"]["url"] == api
    assert api in stack.stdout
    resp = httpx.post(
        stack.info["publisher"]["url"] + "/v1/notifications",
        json=body(id="kept-1", audience={"user": "alice"}),
    )
    assert resp.status_code == 202, resp.text
    headers = {"Authorization": f"Bearer {stack.info['token']}"}

    def listed() -> list[str]:
        page = httpx.get(api + "/v1/inbox/notifications", headers=headers)
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    wait_until(lambda: "kept-1" in listed(), timeout=20, what="the writer to store kept-1")
    marked = httpx.post(
        api + "/v1/inbox/state", json={"ids": ["kept-1"], "read": True}, headers=headers
    )
    assert marked.status_code == 200 and marked.json()["changed"] == ["kept-1"]
    page_origin = f"http://127.0.0.1:{stack.demo_port}"
    config = httpx.get(page_origin + "/demo/config.json").json()
    assert config["inbox"] == api
    preflight = httpx.options(
        api + "/v1/inbox/state",
        headers={"Origin": page_origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") == page_origin


async def test_a_notification_through_the_sidecar_is_stored(stack: Dev) -> None:
    url = stack.info["publisher"]["url"] + "/v1/notifications"
    async with httpx.AsyncClient() as http:
        resp = await http.post(url, json=body(id="dev-1", audience={"role": "ops"}))
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["id"] == "dev-1"
    subject, notification = await stored(stack.info["nats"]["url"], answer["seq"])
    assert subject == "tenant.demo.role.ops.incident.created"
    assert (notification.id, notification.title) == ("dev-1", "Spill")


async def test_tidings_publish_via_http_and_via_nats_find_the_stack(stack: Dev) -> None:
    args = ("--tenant", "demo", "--event", "incident.created", "--title", "T", "--message", "M")
    via_http = tidings("publish", *args, "--id", "cli-http", "--dir", str(stack.dir), cwd=stack.cwd)
    assert via_http.returncode == 0, via_http.stderr
    http_answer = orjson.loads(via_http.stdout)
    assert (http_answer["id"], http_answer["duplicate"]) == ("cli-http", False)

    via_nats = tidings(
        "publish", *args, "--via", "nats", "--user", "bob", "--id", "cli-nats",
        "--dir", str(stack.dir), cwd=stack.cwd,
    )  # fmt: skip
    assert via_nats.returncode == 0, via_nats.stderr
    nats_answer = orjson.loads(via_nats.stdout)
    assert nats_answer["seq"] > http_answer["seq"]
    subject, _ = await stored(stack.info["nats"]["url"], nats_answer["seq"])
    assert subject == "tenant.demo.user.bob.incident.created"

    again = tidings("publish", *args, "--id", "cli-http", "--dir", str(stack.dir), cwd=stack.cwd)
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout) == {**http_answer, "duplicate": True}


def test_tidings_publish_shows_the_field_and_reason_of_a_4xx(stack: Dev) -> None:
    done = tidings(
        "publish", "--tenant", "demo", "--event", "incident.created", "--title", "T",
        "--message", "M", "--room", "site.*", "--dir", str(stack.dir), cwd=stack.cwd,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "audience.room:" in done.stderr, done.stderr
    assert "HTTP 400" in done.stderr


def test_a_killed_publisher_comes_back_and_serves_again(stack: Dev) -> None:
    old = stack.info["pids"]["publisher"]
    os.kill(old, signal.SIGKILL)

    def replaced() -> int | None:
        info = stack.read_info() or {}
        pid = info.get("pids", {}).get("publisher")
        return pid if pid not in (None, old) else None

    new = wait_until(replaced, timeout=20, what="no new publisher pid in dev.json")
    assert alive(new)
    ready = stack.info["publisher"]["url"] + "/readyz"

    def serving() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(ready, timeout=1).status_code == 200
        return False

    wait_until(serving, timeout=20, what="the restarted publisher is not ready")
    resp = httpx.post(stack.info["publisher"]["url"] + "/v1/notifications", json=body())
    assert resp.status_code == 202, resp.text
    assert "publisher" in stack.stderr
    assert "restart" in stack.stderr


def test_sigint_stops_every_process_and_frees_the_ports(tmp_path: Path) -> None:
    dev = start(tmp_path)
    pids = dev.pids()
    # supervisor, nats-server, publisher, gateway, inbox writer, inbox API, demo
    assert len(pids) == 7
    assert all(alive(pid) for pid in pids)
    began = time.monotonic()
    assert stop(dev) == 0
    assert time.monotonic() - began < 15
    assert not [pid for pid in pids if alive(pid)]
    assert not port_in_use(dev.nats_port)
    assert not port_in_use(dev.publisher_port)
    assert not port_in_use(dev.gateway_port)
    assert not port_in_use(dev.gateway_api_port)
    assert not port_in_use(dev.demo_port)
    assert not port_in_use(dev.inbox_port)
    assert not port_in_use(dev.inbox_api_port)
    assert not (dev.dir / "dev.json").exists()


@pytest.mark.parametrize("flag", ["--publisher-port", "--gateway-metrics-port"])
def test_a_taken_port_is_named_with_its_flag_and_nothing_is_left_running(
    tmp_path: Path, flag: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if flag == "--publisher-port":
            dev = launch(tmp_path, publisher_port=port)
        else:
            dev = launch(tmp_path, metrics_port=port)
        code = dev.process.wait(30)
    assert code == 2
    assert f"port {port}" in dev.stderr
    assert flag in dev.stderr
    assert "Traceback" not in dev.stderr
    assert not port_in_use(dev.nats_port)
    assert not (dev.dir / "dev.json").exists()
