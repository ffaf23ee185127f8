"""The inbox process: the writer and its NATS link under one supervisor, and a small HTTP
server for ``/healthz``, ``/readyz`` and ``/metrics`` (the REST API will join these routes).

The lifespan opens the store (migrating first when ``TIDINGS_INBOX_MIGRATE`` is on, else
refusing a database that is not at this version's schema), then starts the link and the
writer; NATS may be down at start: the writer binds once it is up.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.errors import ConfigError, TidingsError, Unavailable
from tidings.inbox import migrate
from tidings.inbox.metrics import InboxMetrics
from tidings.inbox.retention import RetentionJob
from tidings.inbox.store import Store, database_url
from tidings.inbox.writer import InboxWriter
from tidings.lifecycle import Supervisor, absorb_exit_signals
from tidings.nats_link import NatsLink
from tidings.ports import port_in_use
from tidings.settings import Settings
from tidings.telemetry import setup_logging
from tidings.variables import unknown_variables

log = logging.getLogger(__name__)


async def prepare_schema(store: Store, *, migrating: bool) -> None:
    """Migrate when asked, then refuse a schema this version does not know (ConfigError);
    an unreachable database is :class:`Unavailable`, naming the variable."""
    try:
        if migrating:
            before, after = await migrate.upgrade(store.engine)
            if before != after:
                log.info("inbox database migrated", extra={"from": before, "to": after})
        await migrate.check_current(store.engine)
    except TidingsError:
        raise
    except (OSError, SQLAlchemyError) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise Unavailable(
            f"cannot use the inbox database: {reason}", field="TIDINGS_INBOX_DATABASE_URL"
        ) from None


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


@dataclass(slots=True)
class Inbox:
    """The running parts of one inbox process."""

    settings: Settings
    store: Store
    link: NatsLink
    writer: InboxWriter
    retention: RetentionJob
    metrics: InboxMetrics
    supervisor: Supervisor

    @classmethod
    def build(cls, settings: Settings) -> Inbox:
        metrics = InboxMetrics()
        store = Store.open(settings.inbox.database_url)
        link = NatsLink(settings.nats, service="inbox")  # replies under _INBOX_inbox
        writer = InboxWriter(link, store, metrics, settings.inbox, stream=settings.stream.name)
        retention = RetentionJob(store, metrics, settings.inbox)
        metrics.bind(nats_connected=lambda: 1.0 if link.connected else 0.0)
        return cls(settings, store, link, writer, retention, metrics, Supervisor())

    async def start(self) -> None:
        """Check (or migrate) the schema, then start the link, the writer and retention."""
        await prepare_schema(self.store, migrating=self.settings.inbox.migrate)
        self.supervisor.start(self.link)
        self.supervisor.start(self.writer)
        self.supervisor.start(self.retention)

    async def stop(self) -> None:
        await self.supervisor.stop()  # retention, the writer, then the link
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
        return _json({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        ready = self.writer.ready
        body = {"ready": ready, "nats": self.link.state.value, "consumer": self.writer.epoch != ""}
        return _json(body, 200 if ready else 503)

    async def metrics_page(self, _request: Request) -> Response:
        return Response(self.metrics.render(), headers={"Content-Type": self.metrics.content_type})


def create_app(settings: Settings) -> Starlette:
    inbox = Inbox.build(settings)
    app = Starlette(
        routes=[
            Route("/healthz", inbox.healthz, methods=["GET"]),
            Route("/readyz", inbox.readyz, methods=["GET"]),
            Route("/metrics", inbox.metrics_page, methods=["GET"]),
        ],
        lifespan=inbox.lifespan,
    )
    app.state.inbox = inbox
    return app


async def _preflight(store: Store, *, migrating: bool) -> None:
    try:
        await prepare_schema(store, migrating=migrating)
    finally:
        await store.engine.dispose()  # its connections belong to this loop; uvicorn runs another


def serve(settings: Settings) -> None:
    """Run the writer (and its probes and /metrics) until SIGTERM/SIGINT."""
    setup_logging(settings.log)
    for name in unknown_variables():
        log.warning("unknown setting %s is ignored", name)
    cfg = settings.inbox
    database_url(cfg.database_url)  # a bad URL stops here, naming the variable
    if cfg.port and port_in_use(cfg.port, cfg.host):
        raise ConfigError(f"{cfg.host}:{cfg.port} is already in use", field="TIDINGS_INBOX_PORT")
    app = create_app(settings)
    inbox: Inbox = app.state.inbox
    # Schema problems stop here with one line (exit 2), not inside uvicorn's start-up.
    asyncio.run(_preflight(inbox.store, migrating=cfg.migrate))
    config = uvicorn.Config(
        app, host=cfg.host, port=cfg.port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    inbox.supervisor.on_failure = lambda _failure: setattr(server, "should_exit", True)
    with absorb_exit_signals():
        server.run()
    failure = inbox.supervisor.failure
    if failure is not None:
        print(f"tidings inbox: {failure}", file=sys.stderr)
        raise SystemExit(1)
