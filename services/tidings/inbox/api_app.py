"""The inbox API process (`tidings inbox api`): the REST routes, probes and ``/metrics`` on
``TIDINGS_INBOX_API_HOST:TIDINGS_INBOX_API_PORT``, and the NATS side (``changed``, ``session``).

The lifespan checks the schema (or migrates with ``TIDINGS_INBOX_MIGRATE``), then starts the
NATS link under a supervisor. HTTP never waits for NATS: while it is down the API answers as
usual and ``changed`` messages are dropped and counted; ``/readyz`` follows the database only.
CORS follows the gateway's Origin allow-list (``TIDINGS_GATEWAY_ALLOWED_ORIGINS``): the same
pages that may open the WebSocket may call the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.auth import Verifier
from tidings.auth.claims import Claims
from tidings.codes import ErrorCode
from tidings.errors import ConfigError, TidingsError
from tidings.inbox import queries
from tidings.inbox.announce import Announcer, SessionResponder
from tidings.inbox.api import PREFIX, InboxApi
from tidings.inbox.api_metrics import ApiMetrics
from tidings.inbox.app import prepare_schema
from tidings.inbox.http import error_response, json_response
from tidings.inbox.openapi import document
from tidings.inbox.retention import Limits
from tidings.inbox.store import Store, database_url, retrying
from tidings.lifecycle import Supervisor, absorb_exit_signals
from tidings.nats_link import NatsLink
from tidings.ports import port_in_use
from tidings.settings import Settings
from tidings.telemetry import setup_logging
from tidings.variables import unknown_variables

log = logging.getLogger(__name__)

_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


@dataclass(slots=True)
class InboxApiProcess:
    """The running parts of one inbox API process."""

    settings: Settings
    store: Store
    verifier: Verifier
    link: NatsLink
    announcer: Announcer
    responder: SessionResponder
    metrics: ApiMetrics
    api: InboxApi
    supervisor: Supervisor

    @classmethod
    def build(cls, settings: Settings) -> InboxApiProcess:
        metrics = ApiMetrics()
        store = Store.open(settings.inbox.database_url, pre_ping=False)  # retrying() instead
        verifier = Verifier(settings.auth)
        link = NatsLink(settings.nats, service="inbox")  # replies under _INBOX_inbox
        announcer = Announcer(link, metrics)

        async def bell(claims: Claims) -> dict[str, Any]:
            async def read() -> dict[str, Any]:
                async with store.reads.connect() as conn:  # one statement
                    return await queries.bell(conn, claims)

            return await retrying(read)

        responder = SessionResponder(link, bell, metrics)
        link.on_up(responder.arm)
        metrics.bind(nats_connected=lambda: 1.0 if link.connected else 0.0)
        api = InboxApi(
            store,
            verifier,
            announcer,
            metrics,
            admin_role=settings.inbox.admin_role,
            limits=Limits.of(settings.inbox),
        )
        return cls(
            settings, store, verifier, link, announcer, responder, metrics, api, Supervisor()
        )

    async def start(self) -> None:
        await prepare_schema(self.store, migrating=self.settings.inbox.migrate)
        self.supervisor.start(self.link)

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self.responder.close()
        await self.verifier.aclose()
        await self.store.close()

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            await self.start()
        except BaseException:
            await self.store.close()
            raise
        try:
            yield
        finally:
            await self.stop()

    async def healthz(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        database = await self.store.reachable()
        body = {"ready": database, "database": database, "nats": self.link.state.value}
        return json_response(body, 200 if database else 503)

    async def metrics_page(self, _request: Request) -> Response:
        return Response(self.metrics.render(), headers={"Content-Type": self.metrics.content_type})

    async def openapi(self, _request: Request) -> Response:
        return json_response(document())


async def http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the one error shape."""
    if not isinstance(exc, HTTPException):
        return error_response(TidingsError("internal error; see the inbox API's log"))
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.MALFORMED)
    response = error_response(code, exc.detail)
    response.headers.update(dict(exc.headers or {}))
    return response


def create_app(settings: Settings) -> Starlette:
    process = InboxApiProcess.build(settings)
    origins = list(settings.gateway.allowed_origins)
    app = Starlette(
        routes=[
            *process.api.routes(),
            Route(f"{PREFIX}/openapi.json", process.openapi, methods=["GET"]),
            Route("/healthz", process.healthz, methods=["GET"]),
            Route("/readyz", process.readyz, methods=["GET"]),
            Route("/metrics", process.metrics_page, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=process.lifespan,
    )
    app.state.process = process
    return app


async def _preflight(store: Store, *, migrating: bool) -> None:
    try:
        await prepare_schema(store, migrating=migrating)
    finally:
        await store.engine.dispose()  # its connections belong to this loop; uvicorn runs another


def serve(settings: Settings) -> None:
    """Run the inbox API until SIGTERM/SIGINT."""
    setup_logging(settings.log)
    for name in unknown_variables():
        log.warning("unknown setting %s is ignored", name)
    cfg = settings.inbox
    database_url(cfg.database_url)  # a bad URL stops here, naming the variable
    if cfg.api_port and port_in_use(cfg.api_port, cfg.api_host):
        raise ConfigError(
            f"{cfg.api_host}:{cfg.api_port} is already in use", field="TIDINGS_INBOX_API_PORT"
        )
    app = create_app(settings)
    process: InboxApiProcess = app.state.process
    asyncio.run(_preflight(process.store, migrating=cfg.migrate))
    config = uvicorn.Config(
        app, host=cfg.api_host, port=cfg.api_port, lifespan="on", log_config=None,
        access_log=False, server_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    process.supervisor.on_failure = lambda _failure: setattr(server, "should_exit", True)
    with absorb_exit_signals():
        server.run()
    failure = process.supervisor.failure
    if failure is not None:
        print(f"tidings inbox api: {failure}", file=sys.stderr)
        raise SystemExit(1)
