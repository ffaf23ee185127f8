"""Run the fault scenarios on the production shape and write the report.

``python -m benchmarks.faults`` runs every scenario in turn, each on a fresh stack (3 clustered
nats-servers with the stream at R3, 3 gateways, the sidecar, nginx; all on loopback, the
partition's nodes in network namespaces it creates) under steady load (publishers through the
sidecar and the SDK at ``--rate``; ``--clients`` SDK clients through nginx over ``--tenants``
tenants, user, role and named rooms mixed, each checking its own sequence). It writes
``--out``.json and ``--out``.md and exits 1 if any scenario lost, duplicated or reordered
anything, stored an acknowledged publish other than once, failed, or left a process or
namespace behind. Every scenario is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.faults import report
from benchmarks.faults.scenarios import SCENARIOS, Scenario
from tidings.dev.netns import unavailable_reason

HERE = Path(__file__).resolve().parent


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def _sizes(args: argparse.Namespace, name: str) -> dict[str, Any]:
    if name == "storm":
        return {
            "clients": args.storm_clients,
            "processes": args.storm_processes,
            "rate": args.storm_rate,
            "tenants": args.tenants,
            "client": args.storm_client,
        }
    return {"clients": args.clients, "tenants": args.tenants, "rate": args.rate}


async def _one(scenario: Scenario, directory: Path, size: dict[str, Any], timeout: float) -> Any:
    async with asyncio.timeout(timeout):
        return await scenario.run(directory, **size)


def run_one(scenario: Scenario, work: Path, size: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One scenario on a fresh stack: its row, with ``problems`` (and ``error`` if it failed)."""
    directory = work / scenario.NAME
    directory.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()[0]
    began = time.monotonic()
    row: dict[str, Any] = {"scenario": scenario.NAME, **size}
    if scenario.NAME == "partition" and (reason := unavailable_reason()) is not None:
        row["error"] = f"not run: {reason}"
        return row
    try:
        got, problems = asyncio.run(_one(scenario, directory, size, timeout))
        row.update(got)
        row["problems"] = problems
    except Exception as exc:  # the report names it; the other scenarios still run
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        row["problems"] = [row["error"]]
    row["fault"] = scenario.FAULT
    row["seconds"] = round(time.monotonic() - began)
    row["load_avg"] = [round(before, 1), round(os.getloadavg()[0], 1)]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, in this order by default: {','.join(SCENARIOS)}",
    )
    parser.add_argument("--clients", type=int, default=1000, help="SDK clients (not the storm)")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=30.0, help="notifications/s (not storm)")
    parser.add_argument("--storm-clients", type=int, default=10000)
    parser.add_argument("--storm-processes", type=int, default=5)
    parser.add_argument("--storm-rate", type=float, default=20.0)
    parser.add_argument(
        "--storm-client",
        choices=("sdk", "light"),
        default="sdk",
        help="storm clients: SDK subscribers, or the light protocol clients (picows)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per scenario, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "report", help="writes OUT.json/.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    commit = _commit()  # before the run: the code that ran
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="tidings-faults-"))
    rows = []
    try:
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            row = run_one(SCENARIOS[name], work, _sizes(args, name), args.timeout)
            print(report.markdown_row(row), file=sys.stderr, flush=True)
            rows.append(row)
    finally:
        if args.keep:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count()
    doc = {
        "run": {
            "date": started,
            "command": shlex.join(["python", "-m", "benchmarks.faults", *(argv or sys.argv[1:])]),
            "commit": commit,
            "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        },
        "scenarios": rows,
    }
    js, md = report.write(doc, args.out)
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 1 if any(row.get("problems") or row.get("error") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
