"""The fault run's report: one JSON document and one Markdown table from the scenario rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

COLUMNS = (
    "scenario",
    "fault",
    "clients (tenants)",
    "rate /s",
    "lost / dup / reordered",
    "acked / stored (once)",
    "recovery p50 / p99 / max, s",
    "publish→client p99 / max, s",
    "JetStream reads",
    "peak gateway RSS, MB",
    "load avg",
    "runner CPU",
)


def _reads(row: dict[str, Any]) -> str:
    calls = row.get("jetstream_calls") or {}
    creations = calls.get("CONSUMER.CREATE", 0)
    return (
        f"{creations} consumer creations, {row.get('backfills', 0)} backfills"
        f" (≤ {row.get('most_backfills_per_gateway_tenant', 0)} per gateway and tenant)"
    )


def _cells(row: dict[str, Any]) -> list[str]:
    if row.get("error"):
        return [row["scenario"], row.get("fault", ""), "—", "—", f"**failed**: {row['error']}"]
    acked = row.get("acknowledged", 0)
    return [
        row["scenario"],
        row.get("fault", "") + (f" ({row['fault_detail']})" if row.get("fault_detail") else ""),
        f"{row.get('clients', 0):,} ({row.get('tenants', 0)})",
        f"{row.get('rate', 0):g}",
        f"{row.get('lost', '?')} / {row.get('duplicated', '?')} / {row.get('reordered', '?')}",
        f"{acked} / {row.get('stored', '?')} ({'yes' if row.get('stored_once') else '**no**'})",
        f"{row.get('recovery_p50', 0):.2f} / {row.get('recovery_p99', 0):.2f}"
        f" / {row.get('recovery_max', 0):.2f} ({row.get('recovery_is', '')})",
        f"{row['publish_to_client_p99']:.2f} / {row['publish_to_client_max']:.2f}"
        if "publish_to_client_max" in row
        else "—",
        _reads(row),
        " / ".join(str(m) for m in row.get("peak_rss_mb", [])) or "—",
        " → ".join(f"{v:.1f}" for v in row.get("load_avg", [])),
        f"{row['load_generator_cpu']:.0%}" if row.get("load_generator_cpu") is not None else "—",
    ]


STEPS = {
    "lost": "kill → the client saw its socket close",
    "backoff": "socket lost → first reconnect attempt (the backoff draws 0 to 0.5 s; the rest is"
    " the client process's own delay)",
    "retrying": "first → last attempt (attempts that failed between)",
    "upgrade": "attempt → 101 (TCP, nginx, the gateway's upgrade)",
    "hello": "101 → welcome (hello sent, token checked)",
    "resume": "welcome → synced (resume: backfill and replay)",
    "attempts": "connection attempts",
}


def _breakdown(row: dict[str, Any]) -> list[str]:
    """The storm's outage step by step (light clients), and where the CPU went."""
    phases = row.get("phases") or {}
    if not phases:
        return []
    lines = [
        "",
        f"**{row['scenario']}, step by step** (p50 / p99 / max over clients, seconds; the"
        " light clients time each step of their last outage):",
        "",
        "| step | p50 / p99 / max |",
        "|---|---|",
    ]
    for name, meaning in STEPS.items():
        if name in phases:
            lines.append(f"| {meaning} | {' / '.join(f'{v:g}' for v in phases[name])} |")
    if row.get("cpu_s_kill_to_all_back"):
        cpu = ", ".join(f"{k} {v:g}" for k, v in row["cpu_s_kill_to_all_back"].items())
        lines += [
            "",
            f"CPU seconds from the kill until the last client was live: {cpu}; this run's"
            f" processes {row.get('run_cpu_s', 0):g} s; the machine's cores were"
            f" {row.get('machine_busy', 0):.0%} busy meanwhile (anyone's processes).",
        ]
    if row.get("client_loop_lag_s"):
        lag = "; ".join(
            f"p99 {x.get('p99', 0):g} s, max {x.get('max', 0):g} s"
            for x in row["client_loop_lag_s"]
        )
        lines.append(f"Client processes' event-loop lag (a 0.1 s timer run late by): {lag}.")
    if row.get("client_gc"):
        pauses = "; ".join(
            f"{x.get('collections', 0):g} collections, {x.get('total_s', 0):g} s in all,"
            f" longest {x.get('max_s', 0):g} s"
            for x in row["client_gc"]
        )
        lines.append(f"Client processes' garbage collector, after the fill: {pauses}.")
    return lines


def markdown_row(row: dict[str, Any]) -> str:
    return "| " + " | ".join(_cells(row)) + " |"


def markdown(report: dict[str, Any]) -> str:
    """The table, what the run was, and each scenario's problems (if any)."""
    meta = report["run"]
    lines = [
        f"# Fault scenarios: {meta['date']}",
        "",
        f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['machine']}.",
        "Lost / dup / reordered are summed over every client (each checks its own sequence",
        "against what JetStream stored for its rooms); acked = publishes acknowledged (sidecar",
        "202 or SDK PubAck), stored = notifications JetStream holds for the run. Recovery is per",
        "client, p50 / p99 / max over clients: *disconnected→live* = from losing its socket to",
        "synced on another gateway (gateway faults; over the clients that lost theirs);",
        "*stored→client* = the longest a notification the stream had stored waited to reach it",
        "(node faults: clients keep their socket while their gateway heals). publish→client",
        "includes the election, when nothing can be stored and publishers retry. Runner CPU: the",
        "share of one core the runner process (every SDK client but the storm's, the",
        "publishers) used from the fault to the end: near 100 % the load generator was the limit",
        "(a low share does not rule out that other processes starved it).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += [markdown_row(row) for row in report["scenarios"]]
    for row in report["scenarios"]:
        lines += _breakdown(row)
    for row in report["scenarios"]:
        if row.get("problems"):
            lines += ["", f"**{row['scenario']}**: {len(row['problems'])} problem(s):", ""]
            lines += [f"- `{p}`" for p in row["problems"][:10]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``out``.json and ``out``.md; their paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    js.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    md.write_text(markdown(report))
    return js, md
