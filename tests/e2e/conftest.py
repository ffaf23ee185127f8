"""End-to-end fixtures: one real `tidings dev` stack per session, and real headless Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, DemoPage, DevStack, stop_stack
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def distinct_free_ports(count: int) -> list[int]:
    """``count`` ports nothing listens on, all different: held open together while chosen."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """`tidings dev` on free ports with a temp --dir, as a developer runs it."""
    base = tmp_path_factory.mktemp("e2e-dev")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    log = base / "tidings-dev.log"
    # Distinct free ports (one free_port() at a time may hand out the same port twice).
    (nats, publisher, gateway, demo, gateway_api, inbox, inbox_api, metrics, page_port) = (
        distinct_free_ports(9)
    )  # page_port: a page of "your own app" (test_browser_origin.py)
    command = [
        sys.executable, "-m", "tidings", "dev", "--dir", str(base / "state"),
        "--nats-port", str(nats), "--publisher-port", str(publisher),
        "--gateway-port", str(gateway), "--demo-port", str(demo),
        "--gateway-api-port", str(gateway_api),  # not 8083: other stacks may run beside it
        "--inbox-port", str(inbox), "--inbox-api-port", str(inbox_api),
        "--gateway-metrics-port", str(metrics),  # nor 9464
        "--allow-origin", f"http://127.0.0.1:{page_port}",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack = DevStack(process, base / "state", log, page_port)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"tidings dev exited with {process.returncode}:\n{log.read_text()}")
        return (stack.dir / "dev.json").is_file()

    try:
        wait_until(up, timeout=60, what="tidings dev to write dev.json")
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium under Playwright; fails (not skips) when it is missing.

    Module scope: Playwright's sync API keeps an event loop running in this thread while it is
    open, so it must be closed before any asyncio test of another module starts.
    """
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's package"
            " (`apt-get install -y chromium`, as .ci/run does)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[e2e]' (as .ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_demo(browser: Browser, dev_stack: DevStack) -> Iterator[Any]:
    """``open_demo("?tenant=acme&user=bob")`` → a live :class:`DemoPage`; closed after the test."""
    contexts = []

    def open_page(query: str = "", *, width: int = 1360, height: int = 900) -> DemoPage:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        demo = DemoPage(page, [], [])
        page.on("dialog", lambda d: (demo.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: demo.errors.append(str(e)))
        page.goto(dev_stack.demo + query)
        demo.wait_live()
        return demo

    yield open_page
    for context in contexts:
        context.close()
