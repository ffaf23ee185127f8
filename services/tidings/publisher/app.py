"""The publisher sidecar's HTTP API: validate, publish (or queue durably), answer.

Routes: ``POST /v1/notifications``, ``POST /v1/notifications/batch``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``, ``GET /openapi.json`` (:mod:`tidings.publisher.openapi`).
Validation is the core's ``publishing.prepare``, the same code the SDK runs; nothing reaches
NATS before every check passed. The lifespan opens the
outbox and starts the NATS link in the background, so the sidecar starts and accepts while NATS
is down.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from opentelemetry import propagate, trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.catalogue import Catalogue
from tidings.codes import ErrorCode
from tidings.errors import (
    ConfigError,
    InvalidField,
    Malformed,
    OutboxFull,
    PublishQuotaError,
    TidingsError,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
)
from tidings.jsondata import check_body
from tidings.lifecycle import Supervisor, absorb_exit_signals
from tidings.nats_link import NatsLink
from tidings.ports import port_in_use
from tidings.publisher.metrics import PublisherMetrics
from tidings.publisher.openapi import document
from tidings.publisher.outbox import Outbox
from tidings.publisher.relay import Relay
from tidings.publishing import (
    OutgoingMessage,
    PublishPolicy,
    PublishResult,
    prepare,
    prepare_batch,
)
from tidings.quotas.keeper import QuotaKeeper, build_quotas
from tidings.quotas.meter import Meter
from tidings.settings import PublisherSettings, Settings
from tidings.telemetry import setup_logging, setup_tracing
from tidings.variables import unknown_variables

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tidings.publisher")

# A publish route returns its 202 body and the outcome it is counted under.
Handler = Callable[[Request], Awaitable[tuple[Any, str]]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(exc: TidingsError) -> Response:
    """``{"error": {"code", "reason", "field"?}}`` with the error's status and headers."""
    headers: dict[str, str] = {}
    if isinstance(exc, OutboxFull | PublishQuotaError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="tidings-publisher"'
    return Response(error_body(exc), exc.http_status, headers, media_type="application/json")


@dataclass(slots=True)
class Sidecar:
    """The running parts of one sidecar, shared by its routes."""

    settings: Settings
    policy: PublishPolicy
    metrics: PublisherMetrics
    outbox: Outbox
    link: NatsLink
    relay: Relay
    supervisor: Supervisor
    quotas: tuple[Meter, QuotaKeeper] | None = None

    @classmethod
    def build(cls, settings: Settings) -> Sidecar:
        pub = settings.publisher
        catalogue = Catalogue.build(
            extra=settings.events.extra, allow_unknown=settings.events.allow_unknown
        )
        metrics = PublisherMetrics()
        outbox = Outbox(
            pub.outbox_dir,
            max_messages=pub.outbox_max_messages,
            max_bytes=pub.outbox_max_bytes,
            retry_after=pub.retry_after,
        )
        link = NatsLink(settings.nats, service="publisher")
        relay = Relay(
            link,
            outbox,
            stream=settings.stream.name,
            timeout=settings.nats.request_timeout,
            metrics=metrics,
        )
        metrics.bind(
            outbox_messages=lambda: outbox.depth,
            outbox_bytes=lambda: outbox.size,
            nats_connected=lambda: 1.0 if link.connected else 0.0,
        )
        policy = PublishPolicy(catalogue, pub.allow_broadcast, pub.source)
        quotas = None
        if settings.quota.enabled:
            quotas = build_quotas(
                settings,
                registry=metrics.registry,
                js=lambda: link.js,
                send=lambda msg: relay.submit([msg]),
                policy=policy,
            )
            quotas[1].track(link)
        return cls(settings, policy, metrics, outbox, link, relay, Supervisor(), quotas)

    @property
    def ready(self) -> bool:
        """Able to accept: NATS is up, or the outbox has room for what NATS cannot take."""
        return self.outbox.is_open and (self.link.connected or self.outbox.has_room)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.outbox.open()
        if self.outbox.depth:
            log.info(
                "outbox holds %d messages from before; draining once NATS is up",
                self.outbox.depth,
            )
        self.supervisor.start(self.link)
        self.supervisor.start(self.relay)
        if self.quotas is not None:
            self.supervisor.start(self.quotas[1])
        try:
            yield
        finally:
            await self.supervisor.stop()  # the relay first, then the link
            await self.outbox.close()

    # -- request reading ----------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        expected = self.settings.publisher.token
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("send Authorization: Bearer <token>", field="Authorization")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Unauthorized("the bearer token is not valid", field="Authorization")

    async def read_json(self, request: Request, *, limit: int) -> Any:
        """The decoded body; 415 unless JSON, 413 past ``limit`` (reads at most limit+1 bytes)."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")
        ):
            raise UnsupportedMediaType(
                f"send Content-Type: application/json, not {media or 'nothing'!r}",
                field="Content-Type",
            )
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Malformed("Content-Length is not a number", field="Content-Length")
            if int(declared) > limit:
                raise TooLarge(
                    f"the body is {declared} bytes; at most {limit} are accepted", field="body"
                )
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:  # a chunked or lying client: stop reading here
                raise TooLarge(f"the body exceeds {limit} bytes", field="body")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"not valid JSON: {exc}", field="body") from None
        check_body(raw)  # an integer orjson read as a float is refused, not stored changed
        return body

    # -- routes -------------------------------------------------------------------------------

    async def publish_one(self, request: Request) -> tuple[Any, str]:
        self.authorize(request)
        body = await self.read_json(request, limit=self.settings.publisher.max_body_bytes)
        with traced(request) as span:
            try:
                msg = prepare(body, self.policy)
            except Malformed as exc:
                exc.field = exc.field or "body"
                raise
            span.set_attribute("tidings.notifications", 1)
            (result,) = await self.submit([msg])
        return result.to_dict(), _outcome([result])

    async def publish_batch(self, request: Request) -> tuple[Any, str]:
        self.authorize(request)
        pub = self.settings.publisher
        body = await self.read_json(request, limit=pub.batch_max_bytes)
        if not isinstance(body, dict):
            raise Malformed(
                'expected {"notifications": [...]}, got ' + type(body).__name__, field="body"
            )
        extra = sorted(set(body) - {"notifications"})
        if extra:
            raise InvalidField("unknown field", field=extra[0])
        with traced(request) as span:
            msgs = prepare_batch(
                body.get("notifications"), self.policy, max_items=pub.batch_max_items
            )
            span.set_attribute("tidings.notifications", len(msgs))
            for i, msg in enumerate(msgs):
                # The single-request limit holds for each item too; NATS refuses huge messages.
                if len(msg.payload) > pub.max_body_bytes:
                    raise TooLarge(
                        f"encodes to {len(msg.payload)} bytes; "
                        f"at most {pub.max_body_bytes} per item",
                        field=f"notifications[{i}]",
                    )
            results = await self.submit(msgs)
        return {"results": [r.to_dict() for r in results]}, _outcome(results)

    async def submit(self, msgs: list[OutgoingMessage]) -> list[PublishResult]:
        if self.quotas is not None:  # refused here, before the outbox could accept it
            await self.quotas[0].admit_messages(msgs)
        try:
            results = await self.relay.submit(msgs)
        except OutboxFull:
            self.metrics.outbox_full.inc(len(msgs))
            if self.quotas is not None:
                self.quotas[0].release_messages(msgs)  # refused: not counted
            raise
        for r in results:
            outcome = "queued" if r.queued else "duplicate" if r.duplicate else "published"
            self.metrics.notifications.labels(outcome).inc()
        return results

    async def healthz(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        body = {
            "ready": self.ready,
            "nats": self.link.state.value,
            "outbox": {
                "messages": self.outbox.depth,
                "bytes": self.outbox.size,
                "max_messages": self.outbox.max_messages,
                "max_bytes": self.outbox.max_bytes,
            },
        }
        return json_response(body, 200 if self.ready else 503)

    async def metrics_page(self, _request: Request) -> Response:
        return Response(self.metrics.render(), headers={"Content-Type": self.metrics.content_type})

    def counted(self, route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Run a publish route: errors become JSON bodies; every outcome is counted."""

        async def endpoint(request: Request) -> Response:
            try:
                body, outcome = await handler(request)
            except TidingsError as exc:
                self.metrics.requests.labels(route, exc.code).inc()
                return error_response(exc)
            except ClientDisconnect:
                self.metrics.requests.labels(route, "disconnected").inc()
                return Response(status_code=400)
            except Exception:
                log.exception("publish request failed", extra={"route": route})
                self.metrics.requests.labels(route, "internal").inc()
                return error_response(TidingsError("internal error; see the sidecar's log"))
            self.metrics.requests.labels(route, outcome).inc()
            return json_response(body, 202)

        return endpoint


@contextmanager
def traced(request: Request) -> Iterator[trace.Span]:
    """A span continuing the caller's W3C trace context; ``prepare`` puts its context into
    the NATS headers and the envelope."""
    parent = propagate.extract(request.headers)
    with tracer.start_as_current_span(
        "tidings.publish", context=parent, kind=trace.SpanKind.SERVER
    ) as span:
        yield span


async def http_error(_request: Request, exc: Exception) -> Response:
    """404/405 and friends in the same JSON shape as every other error."""
    if not isinstance(exc, HTTPException):
        return error_response(TidingsError("internal error; see the sidecar's log"))
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.MALFORMED)
    body = error_body(code, exc.detail)
    return Response(body, exc.status_code, dict(exc.headers or {}), media_type="application/json")


_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def _outcome(results: list[PublishResult]) -> str:
    return "queued" if any(r.queued for r in results) else "published"


def create_app(settings: Settings) -> Starlette:
    """The sidecar as an ASGI app; its lifespan opens the outbox and starts the NATS link."""
    sidecar = Sidecar.build(settings)
    spec = orjson.dumps(
        document(sidecar.policy.catalogue, allow_broadcast=sidecar.policy.allow_broadcast)
    )

    async def openapi(_request: Request) -> Response:
        return Response(spec, media_type="application/json")

    routes = [
        Route(
            "/v1/notifications",
            sidecar.counted("/v1/notifications", sidecar.publish_one),
            methods=["POST"],
        ),
        Route(
            "/v1/notifications/batch",
            sidecar.counted("/v1/notifications/batch", sidecar.publish_batch),
            methods=["POST"],
        ),
        Route("/healthz", sidecar.healthz, methods=["GET"]),
        Route("/readyz", sidecar.readyz, methods=["GET"]),
        Route("/metrics", sidecar.metrics_page, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=sidecar.lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.sidecar = sidecar
    return app


def check_exposure(pub: PublisherSettings) -> None:
    """Refuse to start where anyone could publish to any tenant: no bearer token on an address
    other than loopback (a sidecar beside its producer, as the chart runs it, is reachable by
    its own pod only), unless ``TIDINGS_PUBLISHER_ALLOW_ANONYMOUS`` says so (issue 14)."""
    if pub.token or pub.allow_anonymous or is_loopback(pub.host):
        return
    raise ConfigError(
        f"TIDINGS_PUBLISHER_TOKEN is not set and the sidecar listens on {pub.host}: anyone who "
        "reaches it could publish to every tenant. Set TIDINGS_PUBLISHER_TOKEN, bind "
        "TIDINGS_PUBLISHER_HOST=127.0.0.1 (beside its producer), or set "
        "TIDINGS_PUBLISHER_ALLOW_ANONYMOUS=true on a network you trust",
        field="TIDINGS_PUBLISHER_TOKEN",
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: where it resolves to is not ours to guess


def serve(settings: Settings) -> None:
    """Run the sidecar until SIGTERM/SIGINT; finishes in-flight requests, then closes cleanly."""
    setup_logging(settings.log)
    setup_tracing(settings.telemetry, process="publisher")
    for name in unknown_variables():
        log.warning("unknown setting %s is ignored", name)
    pub = settings.publisher
    # Fail fast with a message naming the variable, before uvicorn's generic start-up error.
    if pub.port and port_in_use(pub.port, pub.host):
        raise ConfigError(
            f"{pub.host}:{pub.port} is already in use; choose another port",
            field="TIDINGS_PUBLISHER_PORT",
        )
    check_exposure(pub)
    Outbox.check_directory(pub.outbox_dir)
    app = create_app(settings)
    sidecar: Sidecar = app.state.sidecar
    config = uvicorn.Config(
        app,
        host=pub.host,
        port=pub.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # In-flight requests wait at most one PubAck timeout; then shutdown goes on regardless.
        timeout_graceful_shutdown=math.ceil(settings.nats.request_timeout) + 2,
    )
    server = uvicorn.Server(config)
    # A part that dies (the link, the relay) stops the sidecar with an error, not silently.
    sidecar.supervisor.on_failure = lambda _failure: setattr(server, "should_exit", True)
    with absorb_exit_signals() as received:
        server.run()
    failure = sidecar.supervisor.failure
    if failure is not None:
        log.error("publisher stopped: %s", failure.reason)
        print(f"tidings publisher: {failure}", file=sys.stderr)
        raise SystemExit(1)
    if received:
        log.info("publisher stopped", extra={"signal": signal.Signals(received[0]).name})
