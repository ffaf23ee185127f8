"""`tidings publisher` and `tidings gateway`: the two deployables, each one blocking call.

The dev tools are wired in here and nowhere else: a gateway with ``TIDINGS_GATEWAY_DEMO`` on is
handed the demo's pages; the gateway itself never imports the demo.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tidings.cli.common import (
    EnvFileOption,
    HostOption,
    LogLevelOption,
    NatsUrlOption,
    PortOption,
    apply_env,
    settings_of,
)
from tidings.telemetry import setup_logging

log = logging.getLogger("tidings.gateway")


def publisher(
    ctx: typer.Context,
    env_file: EnvFileOption = None,
    nats_url: NatsUrlOption = None,
    host: HostOption = None,
    port: PortOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the publisher sidecar (HTTP → JetStream, with the durable outbox). Every setting is
    a TIDINGS_PUBLISHER_* variable (docs/configuration.md); the flags set the common ones."""
    from tidings.publisher.app import serve

    apply_env(
        env_file,
        {
            "TIDINGS_NATS_URLS": nats_url,
            "TIDINGS_PUBLISHER_HOST": host,
            "TIDINGS_PUBLISHER_PORT": port,
            "TIDINGS_LOG_LEVEL": log_level,
        },
    )
    serve(settings_of(ctx))


def gateway(
    ctx: typer.Context,
    env_file: EnvFileOption = None,
    nats_url: NatsUrlOption = None,
    host: HostOption = None,
    port: Annotated[
        int | None, typer.Option(help="Data port: /ws and probes.", show_default=False)
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="API port: the status API.", show_default=False)
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(help="Origin allowed to open /ws; repeat for more.", show_default=False),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the WebSocket gateway (browsers ⇄ NATS, with resume and drain). Every setting is a
    TIDINGS_GATEWAY_* / TIDINGS_AUTH_* variable (docs/configuration.md); the flags set the
    common ones."""
    from tidings.gateway.service import serve_gateway

    apply_env(
        env_file,
        {
            "TIDINGS_NATS_URLS": nats_url,
            "TIDINGS_GATEWAY_HOST": host,
            "TIDINGS_GATEWAY_PORT": port,
            "TIDINGS_GATEWAY_API_PORT": api_port,
            "TIDINGS_GATEWAY_ALLOWED_ORIGINS": ",".join(allow_origin) if allow_origin else None,
            "TIDINGS_LOG_LEVEL": log_level,
        },
    )
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
