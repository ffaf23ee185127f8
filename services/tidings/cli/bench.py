"""`tidings bench`: load-test the real path against its peers (the work is in tidings.bench)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tidings.cli.common import err, fail
from tidings.cli.common import out as console
from tidings.errors import BenchFailed, InvalidField
from tidings.units import split_list


def bench(
    scenario: Annotated[
        str,
        typer.Option(
            help="one-room, hundred-rooms, big-room, idle, smoke, users, users-1000,"
            " users-each or users-smoke (presets)."
        ),
    ] = "one-room",
    systems: Annotated[
        str,
        typer.Option(
            help="Comma-separated: tidings, nats, nats-js (nats-server fed through a"
            " republishing stream), socketio-node, socketio-py"
            " (SYSTEM@c / SYSTEM@python pick its publisher, C jspub by default; nats:node /"
            " socketio-node:node receive with the peer's own Node client)."
        ),
    ] = "tidings,nats,socketio-node",
    clients: Annotated[int | None, typer.Option(help="WebSocket clients (preset).")] = None,
    rooms: Annotated[int | None, typer.Option(help="Tenant rooms (preset).")] = None,
    rates: Annotated[
        str | None, typer.Option(help="Notifications/s per step, comma-separated (preset).")
    ] = None,
    seconds: Annotated[float, typer.Option(help="Length of one step.")] = 5.0,
    rounds: Annotated[int, typer.Option(help="Interleaved sweeps per system (medians).")] = 1,
    p99_bound: Annotated[float, typer.Option(help="p99 bound (ms) of a passing step.")] = 50.0,
    user_share: Annotated[
        float | None, typer.Option(help="Share of publishes to user rooms (preset).")
    ] = None,
    publishers: Annotated[int, typer.Option(help="Publisher processes (at most rooms).")] = 2,
    publisher: Annotated[
        str, typer.Option(help="Tidings' publishers: c (jspub) or python (the SDK's path).")
    ] = "c",
    per_process: Annotated[int, typer.Option(help="Clients per load-client process.")] = 5000,
    idle_clients: Annotated[
        int | None, typer.Option(help="Idle connections for KB/connection; 0 skips.")
    ] = None,
    server_core: Annotated[int, typer.Option(help="Core of the server under test.")] = 0,
    generator_core: Annotated[int, typer.Option(help="Core of clients, publishers, brokers.")] = 1,
    nice: Annotated[int, typer.Option(help="Nice of every child (negative needs root).")] = -10,
    storage: Annotated[str, typer.Option(help="Stream storage: file or memory.")] = "file",
    window: Annotated[
        float | None, typer.Option(help="Gateway batch window, s (default: its own).")
    ] = None,
    max_minutes: Annotated[float, typer.Option(help="Wall-clock budget of the run.")] = 30.0,
    profile_rate: Annotated[
        float | None, typer.Option(help="py-spy the gateway during the step at this rate.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for the JSON and PNG.")] = Path(
        "benchmarks/results"
    ),
) -> None:
    """Load-test the real path against its peers in the same run: JSON, table and PNG."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tidings.bench.main import SCENARIOS, BenchConfig, run_bench

    if scenario not in SCENARIOS:
        fail(InvalidField(f"choose one of {', '.join(SCENARIOS)}", field="scenario"))
    if publisher not in ("c", "python"):
        fail(InvalidField("choose c or python", field="publisher"))
    preset = SCENARIOS[scenario]
    n, m = preset.clients, preset.rooms
    try:
        steps = [float(r) for r in split_list(rates)] if rates else preset.rates
    except ValueError:
        fail(InvalidField("is not a comma-separated list of numbers", field="rates"))
    idle = idle_clients if idle_clients is not None else (n if scenario == "idle" else 0)
    cfg = BenchConfig(
        scenario=scenario,
        clients=clients or n,
        rooms=rooms or m,
        rates=steps,
        seconds=seconds,
        systems=split_list(systems),
        rounds=rounds,
        p99_bound_ms=p99_bound,
        user_share=preset.user_share if user_share is None else user_share,
        publishers=publishers,
        publisher=publisher,
        per_process=per_process,
        server_core=server_core,
        gen_core=generator_core,
        nice=nice if os.geteuid() == 0 or nice >= 0 else 0,
        storage=storage,
        window=window,
        idle_clients=idle,
        idle_only=scenario == "idle",
        max_minutes=max_minutes,
        profile_rate=profile_rate,
        out=out,
    )
    try:
        cfg.layout  # noqa: B018 - validates clients and rooms
    except ValueError as exc:
        fail(InvalidField(str(exc), field="clients"))
    total = (0 if cfg.idle_only else rounds * len(cfg.systems) * len(steps)) + (
        len(cfg.systems) if idle else 0
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("starting", total=total)

        def progress(what: str, finished: bool) -> None:
            bar.update(task, description=what, advance=1 if finished else 0)
            if finished:
                bar.console.print(f"[dim]{escape(what)}[/]")

        try:
            result = run_bench(cfg, progress=progress, console=console)
        except BenchFailed as exc:
            fail(exc, 1)
    err.print(f"wrote {', '.join(result['files'].values())}")
    failures = [e for s in result["summary"].values() for e in s["errors"]]
    failures += [m["error"] for m in result["idle"] if "error" in m]
    if failures:
        raise typer.Exit(1)
