"""The SDK installed the way application teams install packages (issue 13 B.5).

`npm pack` the SDK, scaffold a fresh Vite + React + TypeScript app with `npm create vite` (a
pinned create-vite; the template's own dependency ranges, as a new user gets them), install the
tarball, type-check (`tsc -b`, and once more with `skipLibCheck: false` so the SDK's declarations
are checked too) and `vite build`; serve the build with `vite preview` on an origin given to
`tidings dev --allow-origin`, and see in Chromium a toast and the bell for a published
notification. Real npm, the npm registry, real TypeScript, real Vite.

npm keeps what it downloads in ``TIDINGS_NPM_CACHE`` (default ``~/.cache/tidings/npm``) and is
asked to prefer it (``--prefer-offline``): CI caches that directory (CONTRIBUTING.md says what
the test costs with and without it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.harness import JS_DIR, DevStack
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CREATE_VITE = "vite@9.3.0"  # `npm create` runs create-vite, pinned; its template names its ranges
STEP_TIMEOUT = 600  # seconds for one npm step (a cold cache downloads ~40 MB)

APP = """\
import type { Notification } from "@tidings/client";
import { NotificationBell, NotificationProvider, useNotifications } from "@tidings/client/react";

function Status() {
  const { state, error, unread } = useNotifications();
  return (
    <p data-testid="state" data-state={state}>
      {state}
      {error ? `: ${error.code}` : ""} · {unread} unread
    </p>
  );
}

export default function App() {
  return (
    <NotificationProvider
      url={import.meta.env.VITE_TIDINGS_WS}
      token={import.meta.env.VITE_TIDINGS_TOKEN}
      enableToast={{ duration: 0, filter: (n: Notification) => n.severity !== "success" }}
    >
      <header>
        <h1>My app</h1>
        <NotificationBell label="Alerts" />
      </header>
      <Status />
    </NotificationProvider>
  );
}

// The SDK's types are real (React's included), not `any`: both lines must be errors.
// @ts-expect-error limit is a number
export const wrongProp = <NotificationBell limit="ten" />;
export const wrongChild = (
  <NotificationProvider url="/ws" token="t">
    {/* @ts-expect-error a plain object is not a React node (with React's types resolved) */}
    {{ not: "a node" }}
  </NotificationProvider>
);
"""


def npm_env() -> dict[str, str]:
    cache = os.environ.get("TIDINGS_NPM_CACHE") or str(Path.home() / ".cache" / "tidings" / "npm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return {
        **env,
        "npm_config_cache": cache,
        "npm_config_prefer_offline": "true",
        "npm_config_audit": "false",
        "npm_config_fund": "false",
        "npm_config_update_notifier": "false",
        "npm_config_loglevel": "error",
    }


def run(command: list[str], cwd: Path, env: dict[str, str], timings: dict[str, float]) -> str:
    began = time.monotonic()
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )
    step = f"{Path(command[0]).name} {command[1]}"
    timings[step] = timings.get(step, 0.0) + time.monotonic() - began
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed in {cwd}:\n{output}"
    return done.stdout


@contextlib.contextmanager
def preview(app: Path, port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """`vite preview` serving the build on 127.0.0.1:``port``; stopped (by its PID) after."""
    vite = app / "node_modules" / ".bin" / "vite"
    command = [str(vite), "preview", "--host", "127.0.0.1", "--port", str(port), "--strictPort"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT)
    origin = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"vite preview exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(origin + "/", timeout=1).status_code == 200
        return False

    try:
        wait_until(up, timeout=30, what="vite preview to serve the build")
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_a_fresh_vite_react_typescript_app_installs_the_packed_sdk_builds_and_rings(
    browser: Browser, dev_stack: DevStack, tmp_path: Path
) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: this test needs Node.js >= 20 with npm")
    env = npm_env()
    timings: dict[str, float] = {}
    began = time.monotonic()

    packed = run([npm, "pack", "--pack-destination", str(tmp_path)], JS_DIR, env, timings)
    tarball = tmp_path / packed.strip().splitlines()[-1]
    assert tarball.is_file(), packed
    create = [npm, "create", "--yes", CREATE_VITE, "app", "--"]
    run([*create, "--template", "react-ts", "--no-interactive"], tmp_path, env, timings)
    app = tmp_path / "app"
    run([npm, "install"], app, env, timings)
    run([npm, "install", str(tarball)], app, env, timings)
    installed = app / "node_modules" / "@tidings" / "client"
    assert installed.is_dir() and not installed.is_symlink()  # a copy, as from a registry
    (app / "src" / "App.tsx").write_text(APP)

    tsc = str(app / "node_modules" / ".bin" / "tsc")
    run([tsc, "-b"], app, env, timings)
    run([tsc, "-p", "tsconfig.app.json", "--skipLibCheck", "false"], app, env, timings)
    info = dev_stack.info()
    build_env = {
        **env,
        "VITE_TIDINGS_WS": info["gateway"]["ws"],
        "VITE_TIDINGS_TOKEN": info["token"],
    }
    run([str(app / "node_modules" / ".bin" / "vite"), "build"], app, build_env, timings)
    assert (app / "dist" / "index.html").is_file()
    built = time.monotonic() - began

    with preview(app, dev_stack.page_port, env, tmp_path / "preview.log") as origin:
        context = browser.new_context()
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(origin + "/")
            page.wait_for_selector("[data-testid=state][data-state=live]", timeout=15_000)
            title = f"Spill in hall 3 {uuid.uuid4().hex[:6]}"
            dev_stack.publish(tenant="demo", title=title, severity="warning")
            toast = page.locator(".tidings-toast")
            toast.wait_for(timeout=5_000)
            assert toast.locator(".tidings-toast__title").inner_text() == title
            assert toast.get_attribute("data-severity") == "warning"
            badge = page.locator(".tidings-bell__badge")
            wait_until(lambda: badge.count() == 1, timeout=5, what="the bell's badge")
            assert badge.inner_text() == "1"
            page.click(".tidings-bell__button")
            assert page.locator(".tidings-bell__title").first.inner_text() == title
            assert errors == []
        finally:
            context.close()
    summary = ", ".join(f"{step}: {seconds:.1f} s" for step, seconds in timings.items())
    print(f"\nvite app: installed and built in {built:.1f} s ({summary})")
