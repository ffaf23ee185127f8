"""The `tidings` command line: wiring only; the work happens in the services, the core and the
dev tools. This module assembles the commands onto one Typer app (in the order ``tidings --help``
shows them) and is the console script's entry; each group of commands is a module of its own,
and none of them imports this one.

Human output goes through rich (on stderr for logs and errors); machine output (a token, a
publish answer) is plain on stdout so scripts can capture it. Exit codes: 0 ok, 1 failed,
2 bad input or configuration, 3 the stream needs an operator's decision.
"""

from __future__ import annotations

import sys

import typer

from tidings.cli.admin import presence, revoke
from tidings.cli.bench import bench
from tidings.cli.common import exit_code, show_error
from tidings.cli.dev import dev
from tidings.cli.events import events
from tidings.cli.inbox import inbox_app
from tidings.cli.inbox_user import inbox_counts_command, inbox_list, inbox_mark
from tidings.cli.publish import publish
from tidings.cli.quota import quota_app
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
app.add_typer(inbox_app, name="inbox")
app.add_typer(quota_app, name="quota")


@app.callback()
def _root() -> None:
    """Tidings: multi-tenant real-time notifications on NATS JetStream."""


for command in (token, publish, tail, bench, publisher, gateway, revoke, presence, events, dev):
    app.command()(command)
for name, command in (("list", inbox_list), ("counts", inbox_counts_command), ("mark", inbox_mark)):
    inbox_app.command(name)(command)


def main() -> None:
    """Console-script entry point; a deliberate error prints one line, never a traceback."""
    try:
        app(prog_name="tidings")
    except TidingsError as exc:
        show_error(exc)
        sys.exit(exit_code(exc))
