"""The demo page's servers without a browser: where the dev-only endpoints exist (and where they
must not), what they check, and that the page serves the SDK of clients/js itself."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from nats.js import JetStreamContext

from tests.e2e.harness import JS_DIR, REPO, DevStack
from tests.support.wsclient import RawClient
from tidings.dev import demo
from tidings.gateway.service import Gateway
from tidings.settings import GatewaySettings, Settings

DEMO_DIR = REPO / "services" / "tidings" / "dev" / "demo"
SDK = {name: JS_DIR / "src" / name for name in demo.SDK_FILES}
VENDORED = {  # the page's copy -> its source of truth (React only: the SDK is served, not copied)
    "react.production.min.js": JS_DIR / "node_modules/react/umd/react.production.min.js",
    "react-dom.production.min.js": JS_DIR
    / "node_modules/react-dom/umd/react-dom.production.min.js",
    "LICENSE-react.txt": JS_DIR / "node_modules/react/LICENSE",
}


@pytest.fixture
async def demo_gateway(js: JetStreamContext, gateway_settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway with TIDINGS_GATEWAY_DEMO=true."""
    flagged = gateway_settings.gateway.model_copy(update={"demo": True})
    settings = Settings(nats=gateway_settings.nats, auth=gateway_settings.auth, gateway=flagged)
    gw = Gateway(settings, pages=demo.gateway_pages(settings))  # what `tidings gateway` passes
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def base(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.port}"


# --- the dev-only endpoints exist only in dev mode ---------------------------------------------


async def test_a_gateway_without_the_dev_flag_has_no_demo_and_mints_nothing(
    gateway: Gateway,
) -> None:
    assert GatewaySettings().demo is False  # off unless asked for
    async with httpx.AsyncClient(base_url=base(gateway)) as http:
        for path in ("/demo", "/demo/", "/demo/config.json", "/demo/tidings.js"):
            assert (await http.get(path)).status_code == 404, path
        answer = await http.get("/demo/api/token", params={"tenant": "acme", "user": "root"})
        assert answer.status_code == 404
        assert "eyJ" not in answer.text


def test_in_a_dev_stack_only_the_demo_server_mints_tokens(dev_stack: DevStack) -> None:
    query = {"tenant": "acme", "user": "root", "roles": "admin"}
    for service in (dev_stack.publisher, dev_stack.gateway):
        answer = httpx.get(service + "/demo/api/token", params=query)
        assert answer.status_code == 404, service
        assert "eyJ" not in answer.text  # no JWT in any form
    assert httpx.get(dev_stack.demo + "api/token", params=query).status_code == 200


# --- the gateway's demo mode ---------------------------------------------------------------------


async def test_the_flagged_gateway_serves_the_page_and_mints_tokens_it_accepts(
    demo_gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=base(demo_gateway)) as http:
        moved = await http.get("/demo")
        assert (moved.status_code, moved.headers["location"]) == (302, "/demo/")
        page = await http.get("/demo/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Tidings" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        sdk = await http.get("/demo/tidings.js")
        assert sdk.headers["content-type"].startswith("text/javascript")
        assert sdk.content == SDK["tidings.js"].read_bytes()
        for name in ("tidings-inbox.js", "tidings-react.js", "tidings-toast.js"):
            assert (await http.get(f"/demo/{name}")).content == SDK[name].read_bytes()

        config = (await http.get("/demo/config.json")).json()
        assert config["ws"] is None  # same origin
        assert config["publish"] is False  # the gateway answers GET only: no publishing here
        assert config["mint"] is True
        answer = await http.get(
            "/demo/api/token", params={"tenant": "acme", "user": "bob", "roles": "ops,admin"}
        )
        assert answer.status_code == 200
        minted = answer.json()
    assert minted["claims"] == {
        "tenant": "acme", "user": "bob", "roles": ["ops", "admin"], "rooms": ["*"],
    }  # fmt: skip
    for token in (minted["token"], config["token"]):
        async with RawClient(f"ws://127.0.0.1:{demo_gateway.port}/ws") as client:
            welcome = await client.hello(token)
            assert welcome["type"] == "welcome"
    assert welcome["tenant"] == "demo"  # the config's default identity


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"tenant": "a.b", "user": "bob"}, "tenant"),
        ({"tenant": "acme", "user": ""}, "user"),
        ({"tenant": "acme", "user": "bob", "roles": "ops,a*b"}, "roles"),
        ({"tenant": "acme", "user": "bob", "rooms": "site.*"}, "rooms"),
        ({"tenant": "acme", "user": "bob", "ttl": "30d"}, "ttl"),
        ({"tenant": "acme", "user": "bob", "ttl": "1s"}, "ttl"),
    ],
)
async def test_dev_tokens_are_checked_like_the_gateway_checks_claims(
    demo_gateway: Gateway, query: dict[str, str], field: str
) -> None:
    async with httpx.AsyncClient(base_url=base(demo_gateway)) as http:
        answer = await http.get("/demo/api/token", params=query)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == field


async def test_only_the_pages_own_files_are_served(demo_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=base(demo_gateway)) as http:
        for path in (
            "/demo/__init__.py",
            "/demo/server.py",
            "/demo/.hidden.js",
            "/demo/..%2fsettings.py",
            "/demo/../settings.py",
            "/demo/LICENSE-react.txt",
            "/demo/nope.js",
        ):
            assert (await http.get(path)).status_code == 404, path


# --- the demo server of `tidings dev` ------------------------------------------------------------


def test_dev_json_names_the_demo_page_and_its_config_carries_the_dev_token(
    dev_stack: DevStack,
) -> None:
    info = dev_stack.info()
    assert urlsplit(info["demo"]["url"]).path == "/demo/"
    assert "demo" in info["pids"]
    config = httpx.get(dev_stack.demo + "config.json").json()
    assert config["token"] == info["token"]
    assert config["ws"] == info["gateway"]["ws"]
    assert (config["mint"], config["publish"]) == (True, True)
    root = httpx.get(dev_stack.demo.removesuffix("demo/"), follow_redirects=True)
    assert root.status_code == 200 and root.url.path == "/demo/"  # / redirects to the page


def test_the_page_csp_allows_exactly_its_import_map() -> None:
    html = (DEMO_DIR / "index.html").read_bytes()
    scripts = re.findall(rb"<script[^>]*>(.*?)</script>", html, re.DOTALL)
    inline = [s for s in scripts if s.strip()]
    assert len(inline) == 1  # the import map, nothing else inline
    digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
    csp = demo.security_headers()["Content-Security-Policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in csp


def test_publishing_from_the_page_reaches_the_publisher_and_nothing_else_can(
    dev_stack: DevStack,
) -> None:
    url = dev_stack.demo + "api/publish"
    body = {"tenant": "demo", "event": "system.notification", "title": "T", "message": "M"}
    ok = httpx.post(url, json=body)
    assert ok.status_code == 202, ok.text
    assert isinstance(ok.json()["seq"], int)
    invalid = httpx.post(url, json={**body, "tenant": "a.b"})
    assert invalid.status_code == 400
    assert invalid.json()["error"]["field"] == "tenant"  # the publisher's own answer
    # What a hostile page in the same browser could try: a form post, or its own origin.
    form = httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    foreign = httpx.post(url, json=body, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    # DNS rebinding: a name of the attacker's resolving to 127.0.0.1 still sends its own Host.
    port = urlsplit(dev_stack.demo).port
    for path in ("api/token?tenant=a&user=b", "config.json"):
        rebound = httpx.get(dev_stack.demo + path, headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 403, path


# --- no copy of the SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_the_page_ships_exactly_the_sdk_and_react_of_clients_js(name: str) -> None:
    source = VENDORED[name]
    if not source.is_file():
        pytest.fail(f"{source} is missing: run `npm ci` in {JS_DIR} (as .ci/run does)")
    assert (DEMO_DIR / name).read_bytes() == source.read_bytes(), (
        f"services/tidings/dev/demo/{name} differs from {source.relative_to(REPO)}:"
        " run `npm run vendor` in clients/js"
    )


def test_the_page_files_are_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "dev/demo/*" in pyproject["tool"]["setuptools"]["package-data"]["tidings"]
    for name in ("index.html", "demo.js", "demo.css", *VENDORED):
        assert (DEMO_DIR / name).is_file(), name


def test_the_page_holds_no_copy_of_the_sdk_and_serves_the_source() -> None:
    for name, source in SDK.items():
        assert not (DEMO_DIR / name).exists(), name  # clients/js/src is the one source
        assert demo.asset(name) == (source.read_bytes(), "text/javascript; charset=utf-8")
