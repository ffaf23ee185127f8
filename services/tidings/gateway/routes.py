"""The gateway's HTTP side, served on the WebSocket port: probes, metrics, status, /ws checks.

websockets calls ``process_request`` before every handshake; returning a response answers a
plain HTTP request, returning ``None`` lets the WebSocket handshake go on.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tidings import protocol as p
from tidings.auth import AuthError

if TYPE_CHECKING:
    from tidings.gateway.service import Gateway

log = logging.getLogger(__name__)


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            # websockets closes the connection after any non-101 response: say so, or a
            # keep-alive client (a Prometheus scraper, httpx) reuses it and fails.
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def json_response(status: HTTPStatus, body: Any) -> Response:
    return _response(status, orjson.dumps(body), "application/json")


def error_response(status: HTTPStatus, code: str, reason: str) -> Response:
    return json_response(status, {"error": {"code": code, "reason": reason}})


class Routes:
    """``/healthz``, ``/readyz``, ``/metrics``, ``/api/notifications/status`` and ``/ws``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        if gateway.settings.gateway.demo:
            log.warning(
                "TIDINGS_GATEWAY_DEMO is on: /demo/api/token mints tokens for any tenant;"
                " development only"
            )

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == p.PATH:
            return self._check_websocket(request)
        if path == "/healthz":
            return _response(HTTPStatus.OK, b"ok\n", "text/plain")
        if path == "/readyz":
            return self._ready()
        if path == "/metrics":
            return _response(
                HTTPStatus.OK, generate_latest(self.gw.metrics.registry), CONTENT_TYPE_LATEST
            )
        if path == "/api/notifications/status":
            return await self._status(request)
        if self.gw.settings.gateway.demo and (path == "/demo" or path.startswith("/demo/")):
            return self._demo(request)
        return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route {path}")

    def _demo(self, request: Request) -> Response:
        """Development only (``TIDINGS_GATEWAY_DEMO``): the demo page, its config, dev tokens."""
        from tidings import demo

        minter = demo.Minter.from_settings(self.gw.settings.auth)
        url = urlsplit(request.path)
        answer = demo.answer_get(
            url.path,
            dict(parse_qsl(url.query)),
            config=lambda: demo.gateway_config(minter),
            minter=minter,
        )
        assert answer is not None  # only called for /demo paths
        response = _response(answer.status, answer.body, answer.content_type)
        for name, value in answer.headers.items():
            if name not in response.headers:
                response.headers[name] = value
        return response

    def _ready(self) -> Response:
        gw = self.gw
        body = {"nats": gw.nats_connected, "draining": gw.draining, "connections": len(gw.sessions)}
        ok = gw.nats_connected and not gw.draining
        return json_response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _check_websocket(self, request: Request) -> Response | None:
        if self.gw.draining:
            return error_response(
                HTTPStatus.SERVICE_UNAVAILABLE, "restarting", "this gateway is draining"
            )
        origin = request.headers.get("Origin")
        if not self.origin_allowed(origin, request.headers.get("Host")):
            return error_response(
                HTTPStatus.FORBIDDEN, "origin_forbidden", f"origin {origin!r} is not allowed"
            )
        offered = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if p.SUBPROTOCOL not in {s.strip() for s in offered.split(",")}:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "subprotocol_required",
                f"offer the WebSocket subprotocol {p.SUBPROTOCOL}",
            )
        if "token" in urlsplit(request.path).query:
            return error_response(
                HTTPStatus.BAD_REQUEST,
                "token_in_url",
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

    async def _status(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            response = error_response(
                HTTPStatus.UNAUTHORIZED, "token_missing", "send Authorization: Bearer <jwt>"
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        try:
            claims = await self.gw.verifier.verify(token.strip())
        except AuthError as exc:
            self.gw.metrics.auth_failures.labels(exc.code).inc()
            return error_response(HTTPStatus(exc.http_status), exc.code, exc.reason)
        status = await self.gw.cluster_status(claims.tenant, claims.user)
        return json_response(HTTPStatus.OK, status)
