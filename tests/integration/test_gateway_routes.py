"""The data port's routes on their own: a real picows server on 127.0.0.1 with the handshake
hook wired to a registry and stand-ins (no NATS, no gateway): the upgrade checks, probes,
404s, and the injected page handler."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from tidings.gateway.registry import Registry
from tidings.gateway.routes import PageAnswer, Routes
from tidings.protocol import SUBPROTOCOL
from tidings.settings import GatewaySettings

SUB = [Subprotocol(SUBPROTOCOL)]


@dataclasses.dataclass
class Page:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Accepted(WSListener):
    """Stands in for a session: it only says that the upgrade went through."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:  # the client is done: answer and hang up
            transport.send_close()
            transport.disconnect()


class Served:
    def __init__(self, routes: Routes, port: int) -> None:
        self.routes = routes
        self.port = port
        self.accepted = 0
        self.asked: list[tuple[str, str]] = []

    @property
    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    def pages(path: str, query: str) -> PageAnswer | None:
        box.asked.append((path, query))
        if path == "/demo/missing":
            return None
        return Page(200, b"<h1>demo</h1>", "text/html", {"X-Page": path})

    def session() -> WSListener:
        box.accepted += 1
        return Accepted()

    settings = GatewaySettings(allowed_origins=["https://app.example"])
    routes = Routes(
        settings,
        Registry(),
        session=session,
        api_port=lambda: 8083,
        metrics_port=lambda: 9464,
        pages=pages,
    )
    server = await ws_create_server(routes, "127.0.0.1", 0)
    box = Served(routes, int(server.sockets[0].getsockname()[1]))
    try:
        yield box
    finally:
        server.close()


async def refused(url: str, **options: Any) -> tuple[int, dict[str, Any]]:
    try:
        async with connect(url, **options):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, orjson.loads(exc.response.body)
    raise AssertionError("the upgrade was accepted")


def code(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


async def test_an_upgrade_that_passes_every_check_gets_a_session(served: Served) -> None:
    async with connect(served.ws, subprotocols=SUB, origin=Origin("https://app.example")) as ws:
        assert ws.subprotocol == SUBPROTOCOL
    async with connect(served.ws, subprotocols=SUB):  # no Origin: not a browser
        pass
    assert served.accepted == 2


async def test_the_handshake_refuses_with_the_code_of_each_check(served: Served) -> None:
    status, body = await refused(served.ws, subprotocols=SUB, origin=Origin("https://evil.test"))
    assert (status, code(body)) == (403, "origin_forbidden")
    status, body = await refused(served.ws)
    assert (status, code(body)) == (400, "subprotocol_required")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    for query in ("token=abc", "TOKEN=abc", "jwt=abc", "v=1&Access_Token=x", "a=" + jwt, "bearer"):
        status, body = await refused(f"{served.ws}?{query}", subprotocols=SUB)
        assert (status, code(body)) == (400, "token_in_url"), query
    served.routes.registry.draining = True
    status, body = await refused(served.ws, subprotocols=SUB)
    assert (status, code(body)) == (503, "restarting")
    assert served.accepted == 0


async def test_names_that_merely_contain_a_credentials_name_pass(served: Served) -> None:
    async with connect(f"{served.ws}?author=ann&tokens_left=3", subprotocols=SUB):
        pass
    assert served.accepted == 1


async def test_same_origin_is_the_default(served: Served) -> None:
    served.routes.settings = GatewaySettings()
    host = f"127.0.0.1:{served.port}"
    async with connect(served.ws, subprotocols=SUB, origin=Origin(f"http://{host}")):
        pass
    status, body = await refused(served.ws, subprotocols=SUB, origin=Origin("http://other:1"))
    assert (status, code(body)) == (403, "origin_forbidden")


async def test_readiness_follows_the_registry(served: Served) -> None:
    registry = served.routes.registry
    async with served.http as http:
        assert (await http.get("/healthz")).text == "ok\n"
        not_yet = await http.get("/readyz")
        assert not_yet.status_code == 503
        assert not_yet.json() == {
            "nats": False,
            "healed": False,
            "draining": False,
            "connections": 0,
        }
        registry.nats_connected = True
        # Connected is not enough: until the heal re-armed every tenant it cannot deliver.
        assert (await http.get("/readyz")).status_code == 503
        registry.set_healed(True)
        assert (await http.get("/readyz")).status_code == 200
        registry.set_healed(False)
        assert (await http.get("/readyz")).json()["healed"] is False
        assert (await http.get("/readyz")).status_code == 503
        registry.set_healed(True)
        registry.draining = True
        assert (await http.get("/readyz")).json()["draining"] is True
        assert (await http.get("/readyz")).status_code == 503


async def test_unknown_paths_and_the_status_api_are_404s_that_say_why(served: Served) -> None:
    async with served.http as http:
        missing = await http.get("/nope")
        assert (missing.status_code, code(missing.json())) == (404, "not_found")
        assert missing.headers["cache-control"] == "no-store"
        moved = await http.get("/api/notifications/status")
        assert moved.status_code == 404
        assert "(8083)" in moved.json()["error"]["reason"]
        # Metrics are never on the public data port (the ingress routes it): only a pointer.
        scrape = await http.get("/metrics")
        assert (scrape.status_code, code(scrape.json())) == (404, "not_found")
        assert "metrics port (9464)" in scrape.json()["error"]["reason"]
        assert b"tidings_" not in scrape.content


async def test_demo_paths_go_to_the_injected_pages_and_nothing_else_does(served: Served) -> None:
    async with served.http as http:
        page = await http.get("/demo/index.html?tenant=acme&user=bob")
        assert (page.status_code, page.text) == (200, "<h1>demo</h1>")
        assert page.headers["x-page"] == "/demo/index.html"
        assert (await http.get("/demo")).status_code == 200
        assert (await http.get("/demo/missing")).status_code == 404  # None: not one of its pages
        assert (await http.get("/demonstration")).status_code == 404
        served.routes.pages = None
        assert (await http.get("/demo/index.html")).status_code == 404
    assert served.asked == [
        ("/demo/index.html", "tenant=acme&user=bob"),
        ("/demo", ""),
        ("/demo/missing", ""),
    ]


async def test_a_pages_plain_get_of_ws_reads_the_origin_refusal_and_the_log_names_the_setting(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The JS client's probe after a socket closed before it opened (docs/decisions.md): the
    refusal is readable cross-origin, and the operator's log names the origin once."""
    caplog.set_level("WARNING", logger="tidings.gateway.origins")
    async with served.http as http:
        for _ in range(3):
            answer = await http.get("/ws", headers={"Origin": "http://localhost:5173"})
            assert answer.status_code == 403
            assert answer.headers["access-control-allow-origin"] == "*"
            assert code(answer.json()) == "origin_forbidden"
            assert "TIDINGS_GATEWAY_ALLOWED_ORIGINS" in answer.json()["error"]["reason"]
        allowed = await http.get("/ws", headers={"Origin": "https://app.example"})
        assert (allowed.status_code, code(allowed.json())) == (400, "subprotocol_required")
        assert allowed.headers["access-control-allow-origin"] == "*"
    status, _ = await refused(served.ws, subprotocols=SUB, origin=Origin("http://localhost:5173"))
    assert status == 403
    lines = [r.getMessage() for r in caplog.records if "refused a WebSocket" in r.getMessage()]
    assert len(lines) == 1, lines  # five refusals of one origin within a minute: one line
    assert "'http://localhost:5173'" in lines[0]
    assert "TIDINGS_GATEWAY_ALLOWED_ORIGINS" in lines[0]
    assert "--allow-origin http://localhost:5173" in lines[0]
    assert served.routes.origin_log.refused == 4
