"""`tidings publisher` and `tidings gateway`: the two deployables, each one blocking call.

The dev tools are wired in here and nowhere else: a gateway with ``TIDINGS_GATEWAY_DEMO`` on is
handed the demo's pages; the gateway itself never imports the demo.
"""

from __future__ import annotations

import logging

import typer

from tidings.cli.common import settings_of
from tidings.telemetry import setup_logging

log = logging.getLogger("tidings.gateway")


def publisher(ctx: typer.Context) -> None:
    """Run the publisher sidecar (HTTP → JetStream, with the durable outbox)."""
    from tidings.publisher.app import serve

    serve(settings_of(ctx))


def gateway(ctx: typer.Context) -> None:
    """Run the WebSocket gateway (browsers ⇄ NATS, with resume and drain)."""
    from tidings.gateway.service import serve_gateway

    settings = settings_of(ctx)
    pages = None
    if settings.gateway.demo:
        from tidings.dev.demo import gateway_pages

        setup_logging(settings.log)  # the warning below goes out formatted like the rest
        log.warning(
            "TIDINGS_GATEWAY_DEMO is on: /demo/api/token mints tokens for any tenant;"
            " development only"
        )
        pages = gateway_pages(settings)
    serve_gateway(settings, pages=pages)
