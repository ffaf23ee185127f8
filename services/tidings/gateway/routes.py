"""The gateway's HTTP side.

The data port (picows) answers every request in its handshake hook, synchronously: ``/ws``
checks (then the upgrade), probes, metrics and the demo page. The one route that must wait on
NATS, ``GET /api/notifications/status``, lives on the API port, a small Starlette app (picows
cannot answer a request after its hook returns).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings import protocol as p
from tidings.codes import ErrorCode
from tidings.errors import AuthError, TidingsError, error_body

if TYPE_CHECKING:
    from tidings.gateway.service import Gateway

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}


def _response(
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> WSUpgradeResponse:
    """A plain HTTP answer on the data port (picows adds Content-Length and Connection: close:
    it serves one request per connection)."""
    extra = {"Content-Type": content_type, **_NO_STORE, **(headers or {})}
    response: WSUpgradeResponse
    if status < HTTPStatus.BAD_REQUEST:
        response = WSUpgradeResponse.create_ok_response(body, extra_headers=extra)
        response.status = status  # 200, or the demo's 302
    else:
        response = WSUpgradeResponse.create_error_response(status, body, extra_headers=extra)
    return response


def _json(status: HTTPStatus, body: Any) -> WSUpgradeResponse:
    return _response(status, orjson.dumps(body), "application/json")


def _error(code: ErrorCode, reason: str) -> WSUpgradeResponse:
    return _response(code.http_status, error_body(code, reason), "application/json")


class Routes:
    """The data port's handshake hook: ``/ws`` (checks, then a session), probes, metrics, demo."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        if gateway.settings.gateway.demo:
            log.warning(
                "TIDINGS_GATEWAY_DEMO is on: /demo/api/token mints tokens for any tenant;"
                " development only"
            )

    def __call__(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        """picows calls this for every request, before it validates an upgrade."""
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
        if path == p.PATH:
            refused = self._check_websocket(request, url.query)
            if refused is not None:
                return WSUpgradeResponseWithListener(refused, None)
            from tidings.gateway.session import Session

            upgrade = WSUpgradeResponse.create_101_response(
                extra_headers={"Sec-WebSocket-Protocol": p.SUBPROTOCOL}
            )
            return WSUpgradeResponseWithListener(upgrade, Session(self.gw))
        return WSUpgradeResponseWithListener(self._http(path, url.query), None)

    def _http(self, path: str, query: str) -> WSUpgradeResponse:
        if path == "/healthz":
            return _response(HTTPStatus.OK, b"ok\n", "text/plain")
        if path == "/readyz":
            return self._ready()
        if path == "/metrics":
            return _response(
                HTTPStatus.OK, generate_latest(self.gw.metrics.registry), CONTENT_TYPE_LATEST
            )
        if path == "/api/notifications/status":
            port = self.gw.api_port
            return _error(ErrorCode.NOT_FOUND, f"the status API is on the API port ({port})")
        if self.gw.settings.gateway.demo and (path == "/demo" or path.startswith("/demo/")):
            return self._demo(path, query)
        return _error(ErrorCode.NOT_FOUND, f"no route {path}")

    def _demo(self, path: str, query: str) -> WSUpgradeResponse:
        """Development only (``TIDINGS_GATEWAY_DEMO``): the demo page, its config, dev tokens."""
        from tidings import demo

        minter = demo.Minter.from_settings(self.gw.settings.auth)
        answer = demo.answer_get(
            path,
            dict(parse_qsl(query)),
            config=lambda: demo.gateway_config(minter),
            minter=minter,
        )
        assert answer is not None  # only called for /demo paths
        return _response(answer.status, answer.body, answer.content_type, answer.headers)

    def _ready(self) -> WSUpgradeResponse:
        gw = self.gw
        body = {"nats": gw.nats_connected, "draining": gw.draining, "connections": len(gw.sessions)}
        ok = gw.nats_connected and not gw.draining
        return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _check_websocket(self, request: WSUpgradeRequest, query: str) -> WSUpgradeResponse | None:
        if self.gw.draining:
            return _error(ErrorCode.RESTARTING, "this gateway is draining")
        headers = request.headers
        origin = headers.get("Origin")
        if not self.origin_allowed(origin, headers.get("Host")):
            return _error(ErrorCode.ORIGIN_FORBIDDEN, f"origin {origin!r} is not allowed")
        offered = ",".join(headers.getall("Sec-WebSocket-Protocol", []))
        if p.SUBPROTOCOL not in {s.strip() for s in offered.split(",")}:
            return _error(
                ErrorCode.SUBPROTOCOL_REQUIRED,
                f"offer the WebSocket subprotocol {p.SUBPROTOCOL}",
            )
        if "token" in query:
            return _error(
                ErrorCode.TOKEN_IN_URL,
                "send the token in the hello frame, never in the URL (it would be logged)",
            )
        return None

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Allow-list, ``*``, or by default same-origin (and non-browser clients)."""
        allowed = self.gw.settings.gateway.allowed_origins
        if origin is None:
            return True  # not a browser: no cross-site risk
        if "*" in allowed:
            return True
        if allowed:
            return origin in allowed
        return urlsplit(origin).netloc == (host or "")


def api_app(gateway: Gateway) -> Starlette:
    """The API port: ``GET /api/notifications/status`` (it scatters a request over NATS) and
    the probes, so the port can be checked on its own."""

    def err(error: TidingsError | ErrorCode, reason: str = "", **headers: str) -> Response:
        code = error if isinstance(error, ErrorCode) else error.code
        body = error_body(error, reason or None)
        return Response(body, code.http_status, {**_NO_STORE, **headers}, "application/json")

    async def status(request: Request) -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return err(
                ErrorCode.TOKEN_MISSING,
                "send Authorization: Bearer <jwt>",
                **{"WWW-Authenticate": "Bearer"},
            )
        try:
            claims = await gateway.verifier.verify(token.strip())
        except AuthError as exc:
            gateway.metrics.auth_failures.labels(exc.code).inc()
            return err(exc)
        answer = await gateway.cluster_status(claims.tenant, claims.user)
        return Response(orjson.dumps(answer), 200, _NO_STORE, "application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"ok\n", 200, _NO_STORE, "text/plain")

    return Starlette(
        routes=[
            Route("/api/notifications/status", status),
            Route("/healthz", healthz),
        ]
    )
