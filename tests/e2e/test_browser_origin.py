"""A browser app on its own origin (issue 13 B.4), in real Chromium against `tidings dev`.

The gateway refuses an origin it does not know with a 403 the browser hides from the page: the
socket only closes (1006). The SDK then asks the gateway over HTTP and stops with
`origin_forbidden` instead of reconnecting forever; the gateway's log names the origin and the
setting. An origin given to `tidings dev --allow-origin` connects, and its calls to the status
API pass the CORS preflight.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.harness import JS_DIR, DevStack, static_site
from tests.support.waiting import wait_until
from tidings.ports import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# A page of "your own app": the SDK as a module, its state and error in the DOM.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>my app</title>
<p>state: <span id="state">none</span> <span id="error"></span></p>
<ul id="feed"></ul>
<script type="module">
import { TidingsClient } from "./tidings.js";
const config = %(config)s;
window.states = [];
const client = new TidingsClient({ url: config.ws, token: config.token });
client.on("state", (e) => {
  window.states.push(e.state);
  document.getElementById("state").textContent = e.state;
  if (e.error) {
    const error = document.getElementById("error");
    error.dataset.code = e.error.code;
    error.textContent = `${e.error.code}: ${e.error.message}`;
  }
});
client.on("notification", (n) => {
  const li = document.createElement("li");
  li.textContent = n.title;
  document.getElementById("feed").append(li);
});
client.start();
window.callStatus = async () => {
  const answer = await fetch(config.api + "/api/notifications/status", {
    headers: { Authorization: `Bearer ${config.token}` },
  });
  return { status: answer.status, body: await answer.json() };
};
</script>
"""


@pytest.fixture
def app_dir(tmp_path: Path, dev_stack: DevStack) -> Path:
    info = dev_stack.info()
    config = {"ws": info["gateway"]["ws"], "api": info["gateway"]["api"], "token": info["token"]}
    root = tmp_path / "app"
    root.mkdir()
    (root / "index.html").write_text(PAGE % {"config": json.dumps(config)})
    for name in ("tidings.js", "tidings-inbox.js"):
        shutil.copyfile(JS_DIR / "src" / name, root / name)
    return root


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def refusal_lines(dev_stack: DevStack, origin: str) -> list[str]:
    log = (dev_stack.dir / "logs" / "gateway.log").read_text()
    return [line for line in log.splitlines() if "refused a WebSocket" in line and origin in line]


def test_a_page_on_a_refused_origin_shows_origin_forbidden_instead_of_reconnecting(
    app_dir: Path, dev_stack: DevStack, page: Page
) -> None:
    with static_site(app_dir, free_port()) as origin:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(origin + "/")
        page.wait_for_selector("#error[data-code=origin_forbidden]", timeout=15_000)
        assert page.inner_text("#state") == "closed"
        reason = page.inner_text("#error")
        assert origin in reason and "TIDINGS_GATEWAY_ALLOWED_ORIGINS" in reason
        time.sleep(1.0)  # a client that kept retrying would show more states by now
        assert page.evaluate("window.states") == ["connecting", "closed"]  # one attempt, no loop

        # The operator sees it: one line naming the origin and the setting, however many tries.
        wait_until(lambda: refusal_lines(dev_stack, origin), timeout=5, what="the log line")
        for _ in range(2):
            page.reload()
            page.wait_for_selector("#error[data-code=origin_forbidden]", timeout=15_000)
        lines = refusal_lines(dev_stack, origin)
        assert len(lines) == 1, lines
        assert f"tidings dev --allow-origin {origin}" in lines[0]

        # Nor may it call the status API: the preflight is refused.
        failed = page.evaluate("window.callStatus().then(() => 'answered', (e) => e.name)")
        assert failed == "TypeError"
        assert errors == []


def test_an_origin_given_to_tidings_dev_connects_and_passes_the_status_apis_preflight(
    app_dir: Path, dev_stack: DevStack, page: Page
) -> None:
    api = dev_stack.info()["gateway"]["api"]
    with static_site(app_dir, dev_stack.page_port) as origin:
        page.goto(origin + "/")
        page.wait_for_function("document.getElementById('state').textContent === 'live'")
        title = f"for my own app {uuid.uuid4().hex[:6]}"
        dev_stack.publish(tenant="demo", title=title)
        page.wait_for_selector(f"#feed li:text-is('{title}')", timeout=5_000)
        answer = page.evaluate("window.callStatus()")
        assert answer["status"] == 200, answer
        assert answer["body"]["user"] == "alice"
        assert answer["body"]["user_connections"] >= 1

    ask = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    preflight = httpx.options(
        api + "/api/notifications/status", headers={"Origin": origin, **ask}, timeout=5
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = httpx.options(
        api + "/api/notifications/status",
        headers={"Origin": "http://127.0.0.1:1", **ask},
        timeout=5,
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
