"""The gateway's HTTP side.

The data port (picows) answers every request in its handshake hook, synchronously: ``/ws``
checks (then the upgrade), probes, and ``/demo`` when a page handler is injected (development
only; production code never imports the demo). The one route that must wait on NATS,
``GET /api/notifications/status``, lives on the API port, a small Starlette app (picows cannot
answer a request after its hook returns). ``/metrics`` has a port of its own, never routed by an
ingress: what it tells (connection counts, error rates) is for the operator's scraper only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import uvicorn
from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings import protocol as p
from tidings.auth import Claims, Verifier
from tidings.auth.urls import credential_in_query
from tidings.codes import ErrorCode
from tidings.errors import AuthError, InvalidField, TidingsError, Unavailable, error_body
from tidings.gateway.origins import PROBE_HEADERS, OriginLog
from tidings.gateway.registry import Registry
from tidings.settings import GatewaySettings

_NO_STORE = {"Cache-Control": "no-store"}


class PageAnswer(Protocol):
    """What an injected page handler answers (e.g. the demo's ``Answer``)."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


# (path, raw query string) -> the answer, or None: not one of its pages (404).
Pages = Callable[[str, str], PageAnswer | None]


def _response(
    status: int,
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
        response.status = HTTPStatus(status)  # 200, or the demo's 302
    else:
        response = WSUpgradeResponse.create_error_response(
            HTTPStatus(status), body, extra_headers=extra
        )
    return response


def _json(status: HTTPStatus, body: Any) -> WSUpgradeResponse:
    return _response(status, orjson.dumps(body), "application/json")


def _error(
    code: ErrorCode, reason: str, headers: Mapping[str, str] | None = None
) -> WSUpgradeResponse:
    return _response(code.http_status, error_body(code, reason), "application/json", headers)


class Routes:
    """The data port's handshake hook: ``/ws`` (checks, then a session), probes, and ``/demo``
    when ``pages`` is given."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: Registry,
        *,
        session: Callable[[], WSListener],
        api_port: Callable[[], int],
        metrics_port: Callable[[], int],
        pages: Pages | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.session = session  # a new session for an accepted upgrade
        self.api_port = api_port
        self.metrics_port = metrics_port
        self.pages = pages
        self.origin_log = OriginLog(settings.allowed_origins)

    def __call__(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        """picows calls this for every request, before it validates an upgrade."""
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
        if path == p.PATH:
            refused = self._check_websocket(request, url.query)
            if refused is not None:
                return WSUpgradeResponseWithListener(refused, None)
            upgrade = WSUpgradeResponse.create_101_response(
                extra_headers={"Sec-WebSocket-Protocol": p.SUBPROTOCOL}
            )
            return WSUpgradeResponseWithListener(upgrade, self.session())
        return WSUpgradeResponseWithListener(self._http(path, url.query), None)

    def _http(self, path: str, query: str) -> WSUpgradeResponse:
        if path == "/healthz":
            return _response(HTTPStatus.OK, b"ok\n", "text/plain")
        if path == "/readyz":
            return self._ready()
        if path == "/metrics":
            port = self.metrics_port()
            return _error(ErrorCode.NOT_FOUND, f"metrics are on the metrics port ({port})")
        if path == "/api/notifications/status":
            port = self.api_port()
            return _error(ErrorCode.NOT_FOUND, f"the status API is on the API port ({port})")
        if self.pages is not None and (path == "/demo" or path.startswith("/demo/")):
            answer = self.pages(path, query)
            if answer is not None:
                return _response(answer.status, answer.body, answer.content_type, answer.headers)
        return _error(ErrorCode.NOT_FOUND, f"no route {path}")

    def _ready(self) -> WSUpgradeResponse:
        """200 only when the gateway can deliver: NATS connected, the heal for this connection
        done (every hosted tenant armed), and not draining."""
        registry = self.registry
        connected, healed, draining = registry.nats_connected, registry.healed, registry.draining
        body = {
            "nats": connected,
            "healed": healed,
            "draining": draining,
            "connections": len(registry.sessions),
        }
        ok = connected and healed and not draining
        return _json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _check_websocket(self, request: WSUpgradeRequest, query: str) -> WSUpgradeResponse | None:
        if self.registry.draining:
            return _error(ErrorCode.RESTARTING, "this gateway is draining")
        headers = request.headers
        origin = headers.get("Origin")
        if not self.origin_allowed(origin, headers.get("Host")):
            self.origin_log.refused_origin(str(origin))
            # Readable by the page (PROBE_HEADERS): the JS client's probe after a refused upgrade.
            reason = f"origin {origin!r} is not allowed (TIDINGS_GATEWAY_ALLOWED_ORIGINS)"
            return _error(ErrorCode.ORIGIN_FORBIDDEN, reason, PROBE_HEADERS)
        offered = ",".join(headers.getall("Sec-WebSocket-Protocol", []))
        if p.SUBPROTOCOL not in {s.strip() for s in offered.split(",")}:
            return _error(
                ErrorCode.SUBPROTOCOL_REQUIRED,
                f"offer the WebSocket subprotocol {p.SUBPROTOCOL}",
                PROBE_HEADERS,  # the probe's answer for an allowed origin: not an origin problem
            )
        if credential_in_query(query):
            return _error(
                ErrorCode.TOKEN_IN_URL,
                "send the token in the hello frame, never in the URL (it would be logged)",
            )
        return None

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Allow-list, ``*``, or by default same-origin (and non-browser clients)."""
        allowed = self.settings.allowed_origins
        if origin is None:
            return True  # not a browser: no cross-site risk
        if "*" in allowed:
            return True
        if allowed:
            return origin in allowed
        return urlsplit(origin).netloc == (host or "")


def api_app(
    verifier: Verifier,
    auth_failures: Counter,
    cluster_status: Callable[[str, str], Awaitable[dict[str, Any]]],
    *,
    allowed_origins: Sequence[str] = (),
    extra: Sequence[Route] = (),
    on_refused: Callable[[str, str], None] | None = None,
    revoked: Callable[[Claims], None] | None = None,
) -> Starlette:
    """The API port: ``GET /api/notifications/status`` (it scatters a request over NATS),
    the probes, so the port can be checked on its own, and ``extra`` (the admin API);
    ``on_refused(code, token)`` hears of each refused token (the audit log), ``revoked(claims)``
    raises for a revoked one. A page on an allowed origin may call the status: CORS preflights
    for ``GET`` with ``Authorization`` are answered for those origins."""

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
            claims = await verifier.verify(token.strip())
            if revoked is not None:
                revoked(claims)  # TokenRevoked: the same list hello checks
        except AuthError as exc:
            auth_failures.labels(exc.code).inc()
            if on_refused is not None:
                on_refused(exc.code.value, token)
            return err(exc)
        if request.query_params:  # it answers about the token's own user: nothing to choose
            return err(InvalidField("takes no query parameters", field="query"))
        answer = await cluster_status(claims.tenant, claims.user)
        return Response(orjson.dumps(answer), 200, _NO_STORE, "application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"ok\n", 200, _NO_STORE, "text/plain")

    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_methods=["GET"],
        allow_headers=["Authorization"],
        max_age=600,
    )
    return Starlette(
        routes=[
            Route("/api/notifications/status", status),
            Route("/healthz", healthz),
            *extra,
        ],
        middleware=[cors] if allowed_origins else [],
    )


def metrics_app(metrics: CollectorRegistry) -> Starlette:
    """The metrics port: ``GET /metrics`` in Prometheus' text format, nothing else."""

    async def scrape(request: Request) -> Response:
        return Response(generate_latest(metrics), 200, _NO_STORE, CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", scrape)])


class ApiServer:
    """A Starlette port as a supervised part (the API port, the metrics port): uvicorn in this
    event loop, with the process's own signal handlers (uvicorn's ``serve()`` would replace
    them); ``field`` is the setting named when the port cannot be bound."""

    def __init__(
        self,
        app: Starlette,
        *,
        host: str,
        port: int,
        name: str = "api-server",
        field: str = "TIDINGS_GATEWAY_API_PORT",
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        config.load()
        self.name = name
        self.field = field
        self.host = host
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)

    async def open(self) -> None:
        """Bind the port; :class:`Unavailable` naming the setting when it cannot."""
        try:
            await self.server.startup()
        except SystemExit:  # uvicorn logged why (e.g. the port is taken)
            port = self.server.config.port
            raise Unavailable(f"cannot listen on {self.host}:{port}", field=self.field) from None

    @property
    def port(self) -> int:
        """The port as bound."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.server.config.port

    async def run(self) -> None:
        try:
            await self.server.main_loop()
        finally:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await self.server.shutdown()
