"""How the command line shows things: a notification line, a connection event, a stream report.

Renderers only: they print to the consoles of :mod:`tidings.cli.common` and decide nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rich.markup import escape
from rich.table import Table

from tidings.cli.common import log, out
from tidings.errors import StreamConflict
from tidings.settings import Settings
from tidings.units import format_duration, format_size

if TYPE_CHECKING:  # nats-py and the WebSocket client load lazily: `tidings token` needs neither
    from tidings.client.inbox_items import Counts, InboxItem
    from tidings.client.subscriber_events import Event
    from tidings.nats import ProvisionReport

# --- tail -----------------------------------------------------------------------------------


class Shown(Protocol):
    """The fields of a notification a line shows (the client's notification frame has them)."""

    @property
    def time(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def severity(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def room(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def message(self) -> str: ...


_SEVERITY_STYLE = {"success": "green", "warning": "yellow", "error": "red", "critical": "bold red"}


def notification_line(n: Shown) -> None:
    """One notification on stdout, one line, coloured by severity."""
    style = _SEVERITY_STYLE.get(n.severity, "blue")
    out.print(
        f"[dim]{escape(n.time)} #{n.seq}[/] [{style}]{escape(n.severity)}[/]"
        f" {escape(n.event)} [cyan]{escape(n.room)}[/] [bold]{escape(n.title)}[/]"
        + (f" — {escape(n.message)}" if n.message else "")
    )


def connection_event(event: Event) -> None:
    """Connection changes on stderr, so stdout stays notifications only."""
    from tidings.client import subscriber_events as ws

    if isinstance(event, ws.StateChanged):
        if event.state is ws.State.CONNECTED and event.welcome is not None:
            w = event.welcome
            resumed = " (resumed, nothing missed)" if w.recovered else ""
            log(
                f"connected to {event.url} as {w.tenant}/{w.user}: epoch {w.epoch},"
                f" seq {w.seq}{resumed}"
            )
        elif event.state is ws.State.DISCONNECTED:
            log(
                f"disconnected ({event.close_code or 'no connection'}: {event.reason});"
                f" retrying in {event.delay or 0:.1f}s"
            )
    elif isinstance(event, ws.Reset):
        log(
            f"reset ({event.reason}): notifications up to seq {event.seq} may be missing;"
            f" epoch {event.epoch}"
        )
    elif isinstance(event, ws.RoomRemoved):
        log(f"left {event.room} ({event.reason})")
    elif isinstance(event, ws.ServerError):
        log(f"gateway error {event.error.code}: {event.error.reason}")


# --- nats init ------------------------------------------------------------------------------


def _show(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("max_age", "duplicate_window"):
        return format_duration(float(value))
    if name in ("max_bytes", "max_msg_size") and int(value) >= 0:
        return format_size(int(value))
    if name == "republish":
        src, dest = (value[0], value[1]) if isinstance(value, tuple) else (value.src, value.dest)
        return f"{src} → {dest}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(getattr(value, "value", value))


_CREATED_FIELDS = (
    "subjects",
    "storage",
    "num_replicas",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "duplicate_window",
    "republish",
)


def stream_report(report: ProvisionReport, settings: Settings) -> None:
    """What `tidings nats init` did to the stream, field by field."""
    name = escape(report.stream)
    if report.unchanged:
        out.print(f"stream [bold]{name}[/] unchanged (epoch {report.epoch})")
        return
    table = Table("field", "before", "after", "status")
    if report.created:
        from tidings.nats import desired_config

        want = desired_config(settings.stream)
        for field in _CREATED_FIELDS:
            table.add_row(field, "", escape(_show(field, getattr(want, field))), "created")
    for field, (old, new) in report.changed.items():
        table.add_row(field, escape(_show(field, old)), escape(_show(field, new)), "changed")
    for field, (old, new) in report.conflicts.items():
        table.add_row(
            field,
            escape(_show(field, old)),
            escape(_show(field, new)),
            "[red]cannot change in place[/]",
        )
    verb = "created" if report.created else "updated"
    if not (report.created or report.changed):
        verb = "kept"
    out.print(f"stream [bold]{name}[/] {verb} (epoch {report.epoch})")
    out.print(table)


def stream_conflict(report: ProvisionReport, settings: Settings) -> StreamConflict:
    """The operator's choice when JetStream cannot apply a field in place, as one error."""
    fields = ", ".join(report.conflicts)
    keep = [
        f"TIDINGS_STREAM_{f.upper()}={_show(f, old)}"
        for f, (old, _new) in report.conflicts.items()
        if f"{f}" in type(settings.stream).model_fields
    ]
    hint = f" To keep the stream as it is, set {' '.join(keep)}." if keep else ""
    return StreamConflict(
        f"stream {report.stream}: JetStream cannot change {fields} in place. To apply it,"
        f" recreate the stream, which DELETES every stored notification (clients see a new"
        f" epoch): `nats stream rm {report.stream}`, then `tidings nats init`.{hint}"
    )


# --- inbox ------------------------------------------------------------------------------------


def inbox_page(items: Sequence[InboxItem], next_cursor: str | None) -> None:
    """A page of the inbox as a table, newest first; where the next page starts on stderr."""
    table = Table("", "time", "severity", "event", "room", "title")
    table.add_column("id", no_wrap=True, min_width=max((len(i.id) for i in items), default=2))
    for item in items:
        style = _SEVERITY_STYLE.get(item.severity, "blue")
        state = "[bold]●[/]" if not item.read else ("[dim]a[/]" if item.archived else "")
        table.add_row(
            state,
            f"[dim]{escape(item.time[:19].replace('T', ' '))}[/]",
            f"[{style}]{escape(item.severity)}[/]",
            escape(item.event),
            f"[cyan]{escape(item.room)}[/]",
            ("[bold]" if not item.read else "")
            + escape(item.title)
            + ("[/]" if not item.read else ""),
            f"[dim]{escape(item.id)}[/]",
        )
    out.print(table if items else "[dim]nothing here[/]")
    if next_cursor is not None:
        log(f"more: --cursor {next_cursor}")


def inbox_counts(counts: Counts, title: str = "inbox") -> None:
    """The counts in one table: total, unread, unseen, then unread by severity."""
    table = Table(title=escape(title), show_header=True)
    for name in ("total", "unread", "unseen", *counts.unread_by_severity):
        table.add_column(name, justify="right")
    table.add_row(
        str(counts.total),
        str(counts.unread),
        str(counts.unseen),
        *(str(n) for n in counts.unread_by_severity.values()),
    )
    out.print(table)
