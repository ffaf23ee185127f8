"""The demo page at phone width (390 by 844, an iPhone 12-15's CSS pixels) in real Chromium.

The header used to overflow there and push the bell off screen. What a user checks: nothing
scrolls sideways, the bell is on screen and works, and its dropdown fits. The screenshot is kept
as an artifact under the test's tmp dir.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import DemoPage, DevStack
from tests.support.waiting import wait_until

OpenDemo = Callable[..., DemoPage]
WIDTH, HEIGHT = 390, 844


def inside_viewport(box: dict[str, float] | None) -> bool:
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= WIDTH
        and box["y"] + box["height"] <= HEIGHT
    )


def test_at_phone_width_the_header_fits_and_the_bell_is_visible_and_works(
    open_demo: OpenDemo, dev_stack: DevStack, tmp_path: Path
) -> None:
    # Long names: the worst case for the header (ids are at most 64 characters).
    tenant = f"acme-corporation-international-{uuid.uuid4().hex[:8]}"
    user = "bartholomew-featherstonehaugh"
    demo = open_demo(f"?tenant={tenant}&user={user}&toast=off", width=WIDTH, height=HEIGHT)
    page = demo.page
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # no sideways scroll
    bell = page.locator(".tidings-bell__button")
    assert bell.is_visible()
    assert inside_viewport(bell.bounding_box()), bell.bounding_box()
    whoami = page.locator("[data-testid=whoami]")
    assert inside_viewport(whoami.bounding_box()), whoami.bounding_box()
    assert whoami.get_attribute("title") == f"{user} @ {tenant}"  # the full name, when cut

    dev_stack.publish(tenant=tenant, title="Spill in hall 3", severity="warning")
    wait_until(lambda: demo.badge() == "1", timeout=10, what="a badge of 1")
    badge = page.locator(".tidings-bell__badge")
    assert inside_viewport(badge.bounding_box()), badge.bounding_box()
    bell.click()
    panel = page.locator(".tidings-bell__panel")
    assert panel.is_visible()
    assert inside_viewport(panel.bounding_box()), panel.bounding_box()
    assert panel.locator(".tidings-bell__title").first.inner_text() == "Spill in hall 3"
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH

    shot = tmp_path / "demo-390px.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert demo.errors == []
