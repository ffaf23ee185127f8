"""`<NotificationProvider enableToast>` in real Chromium: the demo page turns it on.

What a user checks: a new notification shows a toast in its severity's colour, announced by a
polite live region, with text that stays text; the toast goes with its button, with Escape, or by
itself — but not while the pointer is over it or focus is inside it; a burst shows the newest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from tests.e2e.harness import DemoPage, DevStack
from tests.support.waiting import wait_until

OpenDemo = Callable[..., DemoPage]
TOAST = ".tidings-toast"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def toast_titles(demo: DemoPage) -> list[str]:
    return demo.page.locator(f"{TOAST} .tidings-toast__title").all_inner_texts()


def test_a_toast_shows_text_in_its_severity_colour_goes_with_button_or_escape_and_caps_a_burst(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("toast")
    demo = open_demo(f"?tenant={tenant}&user=alice&toast=0")  # 0: until dismissed
    page = demo.page
    region = page.locator(".tidings-toasts")
    # The live region is there before the first toast (what screen readers need to announce).
    assert region.get_attribute("role") == "status"
    assert region.get_attribute("aria-live") == "polite"
    assert page.locator(TOAST).count() == 0

    evil = "<img src=x onerror=alert(1)>"
    dev_stack.publish(tenant=tenant, title=evil, message="<b>bold?</b>", severity="error")
    page.wait_for_selector(TOAST, timeout=5000)
    toast = page.locator(TOAST)
    assert toast.locator(".tidings-toast__title").inner_text() == evil
    assert toast.locator(".tidings-toast__message").inner_text() == "<b>bold?</b>"
    assert page.locator(".tidings-toasts img, .tidings-toasts b").count() == 0
    assert toast.get_attribute("data-severity") == "error"
    bar = toast.locator(".tidings-toast__bar")
    assert bar.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(220, 38, 38)"
    close = toast.locator(".tidings-toast__close")
    assert close.get_attribute("aria-label") == f"Dismiss: {evil}"
    close.click()
    wait_until(lambda: page.locator(TOAST).count() == 0, timeout=5, what="the toast to go")

    title = unique("Permit approved")
    dev_stack.publish(tenant=tenant, title=title, severity="success")
    page.wait_for_selector(TOAST, timeout=5000)
    color = page.locator(f"{TOAST} .tidings-toast__bar").evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert color == "rgb(22, 163, 74)"
    page.keyboard.press("Escape")  # focus is on the page, not in the toast: the newest goes
    wait_until(lambda: page.locator(TOAST).count() == 0, timeout=5, what="Escape to dismiss")

    # A keyboard user in the stack: Escape dismisses the focused toast, focus moves to the next.
    first, second = unique("first"), unique("second")
    for title in (first, second):
        dev_stack.publish(tenant=tenant, title=title)
        page.wait_for_selector(f"{TOAST}:has-text('{title}')", timeout=5000)
    assert toast_titles(demo) == [second, first]  # newest on top
    page.locator(f"{TOAST}:has-text('{first}') .tidings-toast__close").focus()
    page.keyboard.press("Escape")
    wait_until(lambda: toast_titles(demo) == [second], timeout=5, what="the focused one to go")

    # A burst: at most three at once, the newest on top; the bell counts every one.
    burst = [unique(f"burst{i}") for i in range(5)]
    for title in burst:
        dev_stack.publish(tenant=tenant, title=title)
    wait_until(lambda: burst[-1] in toast_titles(demo), timeout=5, what="the burst's last toast")
    assert toast_titles(demo) == [burst[4], burst[3], burst[2], second][:3]
    wait_until(lambda: demo.badge() == "9", timeout=5, what="the bell to count all nine")
    assert demo.dialogs == []
    assert demo.errors == []


def test_toasts_go_by_themselves_but_wait_while_hovered_or_focused(
    open_demo: OpenDemo, dev_stack: DevStack
) -> None:
    tenant = unique("toast")
    duration = 2.5
    demo = open_demo(f"?tenant={tenant}&user=alice&toast={int(duration * 1000)}")
    page = demo.page
    page.mouse.move(5, 5)  # away from the stack (bottom right)

    title = unique("goes by itself")
    began = time.monotonic()
    dev_stack.publish(tenant=tenant, title=title)
    page.wait_for_selector(TOAST, timeout=5000)
    wait_until(lambda: page.locator(TOAST).count() == 0, timeout=10, what="the toast to go")
    assert time.monotonic() - began >= duration

    # Hovered: it stays past its time, and goes after the pointer leaves.
    title = unique("hovered")
    dev_stack.publish(tenant=tenant, title=title)
    page.wait_for_selector(TOAST, timeout=5000)
    page.hover(TOAST)
    assert page.get_attribute(".tidings-toasts", "data-paused") == "true"
    time.sleep(duration + 1.0)  # longer than its time: only absence can be checked
    assert toast_titles(demo) == [title]
    page.mouse.move(5, 5)
    left = time.monotonic()
    wait_until(lambda: page.locator(TOAST).count() == 0, timeout=10, what="the toast to go")
    assert time.monotonic() - left <= duration + 2.0  # it resumed: gone within its time

    # Focused (a keyboard user reading it): it stays too.
    title = unique("focused")
    dev_stack.publish(tenant=tenant, title=title)
    page.wait_for_selector(TOAST, timeout=5000)
    page.locator(f"{TOAST} .tidings-toast__close").focus()
    time.sleep(duration + 1.0)
    assert toast_titles(demo) == [title]
    page.locator("[data-testid=whoami]").click()  # focus leaves the stack
    wait_until(lambda: page.locator(TOAST).count() == 0, timeout=10, what="the toast to go")

    assert demo.errors == []
