"""The demo page in real headless Chromium against a real `tidings dev` stack.

What a user checks: the bell rings, each user sees exactly their notifications, a killed gateway
costs nothing, hostile text stays text, and the page can sign in and publish by itself.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.harness import ARTIFACTS, DemoPage, DevStack
from tests.support.gateway_process import GatewayProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser

OpenDemo = Callable[..., DemoPage]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_feed(demo: DemoPage, count: int, *, timeout: float = 10) -> list[str]:
    """The feed's titles, oldest first, once it holds ``count`` deliveries."""
    wait_until(
        lambda: len(demo.feed_titles()) >= count,
        timeout=timeout,
        what=f"{count} notifications in the feed (have {len(demo.feed_titles())})",
    )
    return list(reversed(demo.feed_titles()))


def test_a_notification_published_through_the_sidecar_rings_the_bell_within_a_second(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    demo = open_demo()  # no parameters: the dev token `tidings dev` minted (tenant demo)
    page = demo.page
    assert page.inner_text("[data-testid=whoami]").replace("\xa0", " ") == "alice @ demo"
    assert demo.badge() == ""
    title = unique("Spill in hall 3")
    began = time.monotonic()
    dev_stack.publish(tenant="demo", title=title, severity="warning")
    page.wait_for_function(
        "() => document.querySelector('.tidings-bell__badge')?.textContent === '1'",
        timeout=1000,
    )
    assert time.monotonic() - began < 1.0
    assert page.get_attribute(".tidings-bell__button", "aria-label") == "Notifications, 1 unread"

    page.click(".tidings-bell__button")
    item = page.locator(".tidings-bell__item")
    assert item.count() == 1
    assert item.locator(".tidings-bell__title").inner_text() == title
    assert "tidings-sev-warning" in str(item.get_attribute("class"))
    assert item.locator(".tidings-bell__sev").inner_text().lower() == "warning"

    for severity in ("info", "critical"):
        dev_stack.publish(tenant="demo", title=unique(severity), severity=severity)
    wait_until(lambda: demo.badge() == "3", timeout=5, what="a badge of 3")
    page.locator(".tidings-bell__entry").first.click()  # reading one marks it read, locally
    wait_until(lambda: demo.badge() == "2", timeout=5, what="a badge of 2")
    page.click(".tidings-bell__markall")
    wait_until(lambda: demo.badge() == "", timeout=5, what="no badge")
    assert demo.errors == []


def test_two_users_of_one_tenant_and_one_of_another_each_see_exactly_theirs(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    acme, globex = unique("acme"), unique("globex")
    alice = open_demo(f"?tenant={acme}&user=alice&roles=ops")
    bob = open_demo(f"?tenant={acme}&user=bob")
    carol = open_demo(f"?tenant={globex}&user=carol&roles=ops")
    sent = [
        (acme, "acme: everyone", None),
        (acme, "acme: alice only", {"user": "alice"}),
        (acme, "acme: bob only", {"user": "bob"}),
        (acme, "acme: ops", {"role": "ops"}),
        (globex, "globex: everyone", None),
        (globex, "globex: a user named alice", {"user": "alice"}),
        (acme, "acme: last", None),
        (globex, "globex: last", None),
    ]
    for tenant, title, audience in sent:
        dev_stack.publish(
            tenant=tenant, title=title, **({"audience": audience} if audience else {})
        )
    # Delivery is ordered: once "last" is there, everything before it has arrived too.
    expected = {
        "alice": (alice, ["acme: everyone", "acme: alice only", "acme: ops", "acme: last"]),
        "bob": (bob, ["acme: everyone", "acme: bob only", "acme: last"]),
        "carol": (carol, ["globex: everyone", "globex: last"]),
    }
    for name, (demo, titles) in expected.items():
        assert wait_feed(demo, len(titles)) == titles, name
        assert demo.badge() == str(len(titles)), name
    time.sleep(0.3)  # nothing else trickles in
    for name, (demo, titles) in expected.items():
        assert list(reversed(demo.feed_titles())) == titles, name


def test_a_killed_gateway_restarts_and_the_page_ends_with_every_notification_once(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("crash")
    demo = open_demo(f"?tenant={tenant}&user=alice")
    old_pid = dev_stack.info()["pids"]["gateway"]
    titles = [f"n{i:02d}" for i in range(30)]
    for i, title in enumerate(titles):
        dev_stack.publish(tenant=tenant, title=title)
        if i == 9:
            os.kill(old_pid, signal.SIGKILL)  # `tidings dev` restarts it
        time.sleep(0.05)
    wait_until(
        lambda: dev_stack.info()["pids"]["gateway"] != old_pid and dev_stack.gateway_ready(),
        timeout=30,
        what="tidings dev to restart the gateway",
    )
    assert wait_feed(demo, len(titles), timeout=40) == titles
    demo.wait_live()
    time.sleep(0.3)
    assert list(reversed(demo.feed_titles())) == titles  # each exactly once, in order
    assert demo.badge() == "30"
    feed = demo.page.inner_text(".feed-card .card__header")
    assert "30 delivered · 0 duplicates dropped" in feed  # the gateway resumed exactly
    log = demo.page.inner_text("[data-testid=log]")
    assert "disconnected" in log  # it did notice the crash…
    assert "resumed, nothing missed" in log  # …and resumed from its last seq
    assert demo.errors == []


def test_a_title_made_of_html_shows_as_text_and_runs_nothing(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("xss")
    demo = open_demo(f"?tenant={tenant}&user=mallory")
    evil_title = "<img src=x onerror=alert(1)>"
    evil_message = "<script>alert(2)</script><b>bold?</b>"
    dev_stack.publish(tenant=tenant, title=evil_title, message=evil_message, severity="critical")
    assert wait_feed(demo, 1) == [evil_title]
    page = demo.page
    page.click(".tidings-bell__button")
    assert page.locator(".tidings-bell__title").inner_text() == evil_title
    assert page.locator(".tidings-bell__message").inner_text() == evil_message
    assert page.locator("[data-testid=feed] .feed__message").inner_text() == evil_message
    markup = ".tidings-bell img, .tidings-bell script, .tidings-bell b, [data-testid=feed] img"
    assert page.locator(markup).count() == 0
    page.wait_for_timeout(500)  # an onerror would have fired by now
    assert demo.dialogs == []
    assert demo.errors == []


def test_the_page_signs_in_as_another_user_publishes_through_the_publisher_and_looks_right(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("site")
    demo = open_demo()
    page = demo.page
    form = page.locator("[data-testid=signin]")
    form.locator("input[name=tenant]").fill(tenant)
    form.locator("input[name=user]").fill("dave")
    form.locator("input[name=roles]").fill("safety-officer")
    form.locator("button[type=submit]").click()
    wait_until(
        lambda: page.inner_text("[data-testid=whoami]").replace("\xa0", " ") == f"dave @ {tenant}",
        timeout=10,
        what="the page to sign in as dave",
    )
    demo.wait_live()
    assert f"tenant={tenant}" in page.url and "user=dave" in page.url
    assert "role:safety-officer" in page.inner_text(".tags")

    publish = page.locator("[data-testid=publish]")
    samples = [
        ("incident.created", "critical", "Gas leak in building 2", "Evacuate floors 1-3"),
        ("work_permit.status_changed", "success", "Hot-work permit approved", "WP-112 is active"),
        ("audit.assigned", "info", "Audit A-9 assigned to you", "Due Friday"),
        ("quota.warning", "warning", "Storage at 85 %", "Consider archiving old reports"),
    ]
    for n, (event, severity, title, message) in enumerate(samples, start=1):
        publish.locator("select").nth(0).select_option(event)
        publish.locator("select").nth(1).select_option(severity)
        publish.locator("input[name=title]").fill(title)
        publish.locator("textarea[name=message]").fill(message)
        publish.locator("button[type=submit]").click()
        wait_until(lambda n=n: len(demo.feed_titles()) == n, timeout=10, what=f"published #{n}")
        assert "published as #" in page.inner_text("[data-testid=publish-result]")
    assert wait_feed(demo, 4) == [s[2] for s in samples]

    page.click(".tidings-bell__button")
    page.locator(".tidings-bell__entry").nth(2).click()  # one read, three unread
    wait_until(lambda: demo.badge() == "3", timeout=5, what="a badge of 3")
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert demo.errors == []


def test_a_gateway_in_demo_mode_serves_a_working_page_of_its_own(
    browser: Browser, dev_stack: DevStack, tmp_path: Path
) -> None:
    """TIDINGS_GATEWAY_DEMO=true: same-origin page and WebSocket, a default dev token, no
    publishing (the notification comes through the dev stack's sidecar)."""
    gateway = GatewayProcess(
        dev_stack.info()["nats"]["url"],
        log_file=tmp_path / "gateway.log",
        env={"TIDINGS_GATEWAY_DEMO": "true"},
    ).start()

    def ready() -> bool:
        if not gateway.running:
            pytest.fail(f"the demo-mode gateway exited:\n{gateway.log()}")
        try:
            return httpx.get(gateway.url + "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=30, what="the demo-mode gateway to be ready")
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(gateway.url + "/demo/")
        page.wait_for_selector("[data-testid=state][data-state=live]", timeout=15_000)
        assert "Publishing from the page needs" in page.inner_text("body")
        title = unique("served by the gateway")
        dev_stack.publish(tenant="demo", title=title)
        page.wait_for_selector(f"text={title}", timeout=5_000)
        assert errors == []
        context.close()
    finally:
        gateway.terminate_now()
