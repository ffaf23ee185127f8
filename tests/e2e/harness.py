"""What the end-to-end tests drive: a `tidings dev` stack, the demo page in Chromium, Node.

Chromium is Debian's package (``/usr/bin/chromium``, installed by ``.ci/run``) driven by
Playwright for Python; Playwright never downloads a browser of its own. A missing browser, Node
or npm package fails the tests with the command that installs it — never a silent skip.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[2]
JS_DIR = REPO / "clients" / "js"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class DevStack:
    """A running `tidings dev` and what its dev.json says."""

    process: subprocess.Popen[bytes]
    dir: Path
    log: Path
    page_port: int = 0  # `tidings dev --allow-origin http://127.0.0.1:<page_port>`

    def info(self) -> dict[str, Any]:
        """dev.json as it is now (pids change when `tidings dev` restarts a child)."""
        info: dict[str, Any] = json.loads((self.dir / "dev.json").read_text())
        return info

    @property
    def publisher(self) -> str:
        return str(self.info()["publisher"]["url"])

    @property
    def gateway(self) -> str:
        return str(self.info()["gateway"]["url"])

    @property
    def demo(self) -> str:
        return str(self.info()["demo"]["url"])

    def publish(self, **body: Any) -> dict[str, Any]:
        """Publish through the sidecar, as a producing service does."""
        request = {"event": "incident.created", "message": "from the e2e tests", **body}
        answer = httpx.post(self.publisher + "/v1/notifications", json=request, timeout=10)
        assert answer.status_code == 202, answer.text
        result: dict[str, Any] = answer.json()
        return result

    @property
    def inbox_api(self) -> str:
        return str(self.info()["inbox-api"]["url"])

    def token(self, tenant: str, user: str) -> str:
        """A dev token from the demo server, as the page gets one."""
        query = {"tenant": tenant, "user": user}
        answer = httpx.get(self.demo + "api/token", params=query, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])

    def inbox_counts(self, token: str) -> dict[str, Any]:
        """The user's counts from the inbox API."""
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.get(self.inbox_api + "/v1/inbox/counts", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        counts: dict[str, Any] = answer.json()
        return counts

    def gateway_ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.gateway + "/readyz", timeout=1).status_code == 200
        return False


def stop_stack(stack: DevStack) -> None:
    pids = []
    with contextlib.suppress(OSError, ValueError):
        pids = [int(p) for p in stack.info().get("pids", {}).values()]
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
    try:
        stack.process.wait(20)
    except subprocess.TimeoutExpired:
        for pid in pids:  # only what this stack started, by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.process.wait(10)


@dataclass
class DemoPage:
    """One browser context (its own sessionStorage) with the demo page open."""

    page: Page
    dialogs: list[str]
    errors: list[str]

    @property
    def state(self) -> str:
        return str(self.page.get_attribute("[data-testid=state]", "data-state"))

    def feed_titles(self) -> list[str]:
        return self.page.locator("[data-testid=feed-item] .feed__title").all_inner_texts()

    def badge(self) -> str:
        """The bell's badge text, "" without one: read in one step (a badge that goes between a
        count and a read would make the read wait for it)."""
        return "".join(self.page.locator(".tidings-bell__badge").all_inner_texts())

    def wait_live(self, timeout: float = 15) -> None:
        self.page.wait_for_selector("[data-testid=state][data-state=live]", timeout=timeout * 1000)


def node_command() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the JS client tests need `node` (>= 20)")
    if not (JS_DIR / "node_modules" / "ws").is_dir():
        pytest.fail(f"npm packages are missing: run `npm ci` in {JS_DIR} (as .ci/run does)")
    return node


class _Quiet(SimpleHTTPRequestHandler):
    extensions_map = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        "": "application/octet-stream",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(root: Path, port: int) -> Iterator[str]:
    """``root`` served on 127.0.0.1:``port`` (an app's own origin), as any static server does;
    yields its origin."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"static-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
