"""Logging (structured JSON) and tracing (OpenTelemetry) shared by every process.

A notification's trace starts at the publisher (or the producer that called it), travels in the
NATS headers and the envelope as W3C trace context, and the gateway continues it with one
delivery span per notification — never one per connection.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tidings.settings import LogSettings, TelemetrySettings

# Attributes every record has, plus uvicorn's ANSI-coloured duplicate of the message.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def setup_logging(settings: LogSettings) -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # uvicorn's access log duplicates our own request metrics; keep its errors only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # websockets (the Python client) and picows (the gateway's server, loggers picows.*) log
    # every connection at INFO: noise, and a cost, at gateway scale.
    for name in ("websockets", "picows"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))


_propagator = TraceContextTextMapPropagator()


def setup_tracing(settings: TelemetrySettings, *, process: str) -> None:
    """Install the SDK's tracer provider unless tracing is off (the API then costs nothing)."""
    if settings.exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter: SpanExporter
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name or f"tidings-{process}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def context_from(traceparent: str, tracestate: str = "") -> Context | None:
    """The remote parent carried by a notification, or None when it carries none."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier)


def tracing_enabled() -> bool:
    """True when a real (SDK) tracer provider is installed; the hot path checks it once."""
    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )
