"""End-to-end fixtures: one real `tidings dev` stack per session, and real headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, DemoPage, DevStack, stop_stack
from tests.support.waiting import wait_until
from tidings.ports import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """`tidings dev` on free ports with a temp --dir, as a developer runs it."""
    base = tmp_path_factory.mktemp("e2e-dev")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    log = base / "tidings-dev.log"
    page_port = free_port()  # a page of "your own app" (test_browser_origin.py) may connect
    command = [
        sys.executable, "-m", "tidings", "dev", "--dir", str(base / "state"),
        "--nats-port", str(free_port()), "--publisher-port", str(free_port()),
        "--gateway-port", str(free_port()), "--demo-port", str(free_port()),
        "--gateway-api-port", str(free_port()),  # not 8083: other stacks may run beside it
        "--inbox-port", str(free_port()), "--inbox-api-port", str(free_port()),
        "--gateway-metrics-port", str(free_port()),  # nor 9464
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
