"""The inbox in the demo page, in real headless Chromium against a real `tidings dev` stack (the
inbox writer and API on SQLite, the gateway following the inbox): what a user checks — the bell
after a reload or a night away, and one user's devices agreeing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from tests.e2e.harness import DemoPage, DevStack
from tests.support.waiting import wait_until

OpenDemo = Callable[..., DemoPage]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bell_titles(demo: DemoPage) -> list[str]:
    return demo.page.locator(".tidings-bell__item .tidings-bell__title").all_inner_texts()


def stored(dev_stack: DevStack, tenant: str, user: str, total: int) -> None:
    """Wait until the inbox API counts ``total`` for the user (the writer runs beside)."""
    token = dev_stack.token(tenant, user)
    wait_until(
        lambda: dev_stack.inbox_counts(token)["total"] == total,
        timeout=20,
        what=f"the inbox to hold {total} notifications for {user}",
    )


def test_published_while_away_the_bell_shows_20_unread_newest_first_then_a_live_one_on_top(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("away")
    titles = [f"while away {i:02d}" for i in range(20)]
    for title in titles:  # no page is open
        dev_stack.publish(tenant=tenant, title=title, audience={"user": "alice"})
    stored(dev_stack, tenant, "alice", 20)

    demo = open_demo(f"?tenant={tenant}&user=alice")
    page = demo.page
    wait_until(lambda: demo.badge() == "20", timeout=10, what="a badge of 20")
    page.click(".tidings-bell__button")
    wait_until(lambda: len(bell_titles(demo)) == 20, timeout=10, what="20 in the bell")
    assert bell_titles(demo) == titles[::-1]  # newest first
    assert page.locator(".tidings-bell__item.is-unread").count() == 20
    assert page.locator("[data-testid=inbox-item]").count() == 20  # the inbox card too
    assert demo.feed_titles() == []  # nothing arrived live: this is history

    dev_stack.publish(tenant=tenant, title="back online", audience={"user": "alice"})
    wait_until(lambda: demo.badge() == "21", timeout=5, what="a badge of 21")
    wait_until(lambda: len(bell_titles(demo)) == 21, timeout=5, what="21 in the bell")
    assert bell_titles(demo) == ["back online", *titles[::-1]]  # on top, once
    stored(dev_stack, tenant, "alice", 21)
    # The inbox card reloads its first page from the server (20), then pages back: each once.
    card = page.locator("[data-testid=inbox-item] .feed__title")
    page.keyboard.press("Escape")  # close the bell: its panel lies over the card
    page.click("[data-testid=inbox-reload]")
    wait_until(
        lambda: page.locator(".inbox__more").is_visible(),
        timeout=5,
        what="the reloaded first page and Load older",
    )
    assert card.all_inner_texts() == ["back online", *titles[::-1][:19]]
    page.click(".inbox__more")
    wait_until(lambda: card.count() == 21, timeout=5, what="the older page")
    assert card.all_inner_texts() == ["back online", *titles[::-1]]
    assert page.locator(".inbox__more").count() == 0
    assert demo.badge() == "21"
    assert demo.errors == []


def test_read_on_one_device_drops_the_other_s_badge_within_a_second_and_reloads_agree(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("devices")
    for i in range(3):
        dev_stack.publish(tenant=tenant, title=f"shared {i}")
    stored(dev_stack, tenant, "alice", 3)
    laptop = open_demo(f"?tenant={tenant}&user=alice")  # two browser contexts, one user
    phone = open_demo(f"?tenant={tenant}&user=alice")
    for device in (laptop, phone):
        wait_until(lambda device=device: device.badge() == "3", timeout=10, what="a badge of 3")

    laptop.page.click(".tidings-bell__button")
    wait_until(lambda: len(bell_titles(laptop)) == 3, timeout=5, what="3 in the bell")
    began = time.monotonic()
    laptop.page.locator(".tidings-bell__entry").first.click()  # "shared 2", the newest
    phone.page.wait_for_function(
        "() => document.querySelector('.tidings-bell__badge')?.textContent === '2'",
        timeout=1000,
    )
    assert time.monotonic() - began < 1.0
    assert laptop.badge() == "2"

    for device in (phone, laptop):
        device.page.reload()
        device.wait_live()
        wait_until(lambda device=device: device.badge() == "2", timeout=10, what="2 after reload")
        device.page.click(".tidings-bell__button")
        wait_until(lambda device=device: len(bell_titles(device)) == 3, timeout=5, what="3 items")
        unread = device.page.locator(".tidings-bell__item.is-unread .tidings-bell__title")
        assert unread.all_inner_texts() == ["shared 1", "shared 0"]

    # Mark all read on the phone: the laptop follows, and so does a reload.
    phone.page.click(".tidings-bell__markall")
    wait_until(lambda: laptop.badge() == "", timeout=2, what="no badge on the laptop")
    laptop.page.reload()
    laptop.wait_live()
    wait_until(
        lambda: (
            laptop.page.locator("[data-testid=inbox-counts]").get_attribute("data-unread") == "0"
        ),
        timeout=10,
        what="0 unread after reload",
    )
    assert laptop.badge() == ""
    assert laptop.errors == [] and phone.errors == []
