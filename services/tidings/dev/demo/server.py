"""The demo server `tidings dev` runs beside the gateway: the page, dev tokens, publishing.

It is a child of `tidings dev` (one row of its service table) and exists nowhere else. The page
it serves connects to the gateway directly (`tidings dev` puts this server's origin on the
gateway's allow-list) and publishes through ``POST /demo/api/publish``, which forwards to the
publisher sidecar — so the publisher needs no CORS, and no secret ever reaches the page except
dev tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tidings.codes import ErrorCode
from tidings.dev import demo
from tidings.dev.info import load_secret, read_info
from tidings.errors import ConfigError, Malformed, Unavailable
from tidings.settings import AuthSettings, load_settings
from tidings.telemetry import setup_logging

log = logging.getLogger(__name__)

MAX_PUBLISH_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Where the dev stack's parts are (`tidings dev` passes them on the command line)."""

    dev_dir: Path
    host: str
    port: int
    gateway_ws: str
    publisher_url: str
    inbox_api: str | None = None  # the inbox REST API's base URL; None: the page has no inbox

    @property
    def origins(self) -> set[str]:
        """The addresses a browser may use for this server (the Host check below)."""
        names = {self.host, "localhost", "127.0.0.1"} if _loopback(self.host) else {self.host}
        return {f"{name}:{self.port}" for name in names}


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _response(answer: demo.Answer) -> Response:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=answer.content_type,
        headers=dict(answer.headers),
    )


def _refuse(code: ErrorCode, reason: str) -> Response:
    return _response(demo.Answer.error(code, reason))


class DemoServer:
    """The routes; ``http`` forwards publishes to the publisher sidecar."""

    def __init__(self, options: DemoOptions, minter: demo.Minter) -> None:
        self.options = options
        self.minter = minter
        self.http: httpx.AsyncClient | None = None
        gateway = urlsplit(options.gateway_ws)
        self.connect_src = f"'self' {gateway.scheme}://{gateway.netloc}"
        if options.inbox_api:  # the page calls the inbox API itself (CORS, bearer token)
            api = urlsplit(options.inbox_api)
            self.connect_src += f" {api.scheme}://{api.netloc}"

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            self.http = http
            yield

    def _trusted(self, request: Request) -> bool:
        # DNS rebinding: a page on another site that resolves to 127.0.0.1 sends its own Host.
        return request.headers.get("host", "") in self.options.origins

    async def get(self, request: Request) -> Response:
        if not self._trusted(request):
            return _refuse(ErrorCode.FORBIDDEN, "unexpected Host header")
        answer = demo.answer_get(
            request.url.path,
            request.query_params,
            config=self.config,
            minter=self.minter,
            connect_src=self.connect_src,
        )
        if answer is None:
            return _refuse(ErrorCode.NOT_FOUND, f"no route {request.url.path}")
        return _response(answer)

    def config(self) -> demo.Answer:
        info = read_info(self.options.dev_dir)
        if info is None:
            return demo.Answer.error(Unavailable("the dev stack is still starting; retry"))
        return demo.Answer.json(
            {
                "served_by": "tidings dev",
                "ws": self.options.gateway_ws,
                "token": info.get("token"),  # the dev token `tidings dev` minted
                "claims": info.get("claims"),
                "mint": True,
                "publish": True,
                "inbox": self.options.inbox_api,
                "events": demo.events(),
            }
        )

    async def publish(self, request: Request) -> Response:
        """Forward one notification to the publisher sidecar and return its answer as is."""
        if not self._trusted(request):
            return _refuse(ErrorCode.FORBIDDEN, "unexpected Host header")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc not in self.options.origins:
            return _refuse(ErrorCode.FORBIDDEN, f"origin {origin!r} is not allowed")
        # JSON only: a cross-site form cannot send it without a CORS preflight, which fails.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _refuse(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        body = await request.body()
        if len(body) > MAX_PUBLISH_BYTES:
            return _refuse(ErrorCode.TOO_LARGE, "body too large")
        assert self.http is not None
        try:
            answer = await self.http.post(
                self.options.publisher_url + "/v1/notifications",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            error = Unavailable(f"the publisher at {self.options.publisher_url} did not answer")
            log.warning("publish forward failed", extra={"error": repr(exc)})
            return _response(demo.Answer.error(error))
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )

    async def healthz(self, _request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def root(self, _request: Request) -> Response:
        return RedirectResponse(demo.PREFIX + "/", status_code=HTTPStatus.FOUND)


def create_app(options: DemoOptions, minter: demo.Minter) -> Starlette:
    server = DemoServer(options, minter)
    return Starlette(
        routes=[
            Route("/", server.root, methods=["GET"]),
            Route("/healthz", server.healthz, methods=["GET"]),
            Route(demo.PREFIX + "/api/publish", server.publish, methods=["POST"]),
            Route(demo.PREFIX, server.get, methods=["GET"]),
            Route(demo.PREFIX + "/{name:path}", server.get, methods=["GET"]),
        ],
        lifespan=server.lifespan,
    )


def parse_args(argv: list[str] | None = None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="python -m tidings.dev.demo", description="The demo page of `tidings dev`."
    )
    parser.add_argument("--dir", type=Path, required=True, help="the `tidings dev` data dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway", required=True, help="the gateway's WebSocket URL")
    parser.add_argument("--publisher", required=True, help="the publisher sidecar's URL")
    parser.add_argument("--inbox-api", help="the inbox REST API's base URL (none: no inbox)")
    args = parser.parse_args(argv)
    inbox_api = args.inbox_api.rstrip("/") if args.inbox_api else None
    return DemoOptions(
        args.dir, args.host, args.port, args.gateway, args.publisher.rstrip("/"), inbox_api
    )


def serve(options: DemoOptions, auth: AuthSettings) -> None:
    """Run until SIGTERM/SIGINT (uvicorn's own handling)."""
    secret = load_secret(auth, options.dev_dir)
    if secret is None:
        raise ConfigError(
            "no JWT secret: run me from `tidings dev`", field="TIDINGS_AUTH_JWT_SECRET"
        )
    config = uvicorn.Config(
        create_app(options, demo.Minter(auth, secret)),
        host=options.host,
        port=options.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log)
        serve(options, settings.auth)
    except (ConfigError, Malformed) as exc:
        print(f"error: {exc.field + ': ' if exc.field else ''}{exc.reason}")
        raise SystemExit(2) from None
