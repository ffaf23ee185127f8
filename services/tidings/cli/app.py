"""The `tidings` application: every command wired onto one Typer app, and the console script.

Each group of commands lives in its own module; this one only assembles them, so the command
list reads in one place (and in the order ``tidings --help`` shows it).
"""

from __future__ import annotations

import sys

import typer

from tidings.cli.bench import bench
from tidings.cli.common import exit_code, show_error
from tidings.cli.dev import dev
from tidings.cli.events import events
from tidings.cli.publish import publish
from tidings.cli.services import gateway, publisher
from tidings.cli.stream import nats_app
from tidings.cli.tail import tail
from tidings.cli.token import token
from tidings.errors import TidingsError

app = typer.Typer(
    name="tidings",
    help="Tidings: multi-tenant real-time notifications on NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(nats_app, name="nats")


@app.callback()
def _root() -> None:
    """Tidings: multi-tenant real-time notifications on NATS JetStream."""


for command in (token, publish, tail, bench, publisher, gateway, events, dev):
    app.command()(command)


def main() -> None:
    """Console-script entry point; a deliberate error prints one line, never a traceback."""
    try:
        app(prog_name="tidings")
    except TidingsError as exc:
        show_error(exc)
        sys.exit(exit_code(exc))
