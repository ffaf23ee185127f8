"""`tidings quota …`: a tenant's publish limits, through a gateway's admin API.

Setting and resetting need the operator key (``--key``, default TIDINGS_GATEWAY_ADMIN_TOKEN); a
token with the admin role may read its own tenant's. Every publisher following the quotas bucket
applies a change within about a second. ``--json`` prints the API's answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from tidings.cli.admin import JsonOption, KeyOption, TokenOption, UrlOption, _call, _target
from tidings.cli.common import DirOption, out

quota_app = typer.Typer(
    help="Per-tenant publish quotas (rate, daily volume).", no_args_is_help=True
)

TenantArg = Annotated[str, typer.Argument(help="The tenant.")]


def _show(answer: dict[str, Any]) -> str:
    limits = answer["limits"]
    rate = (
        f"{limits['rate']:g}/s (burst {limits['burst'] or 'one second'})"
        if limits["rate"]
        else "unlimited"
    )
    daily = f"{limits['daily']}/day" if limits["daily"] else "unlimited"
    whose = "own" if answer.get("own") else "defaults"
    return f"{answer['tenant']}: rate {rate}, volume {daily} ({whose})"


@quota_app.command("set")
def quota_set(
    ctx: typer.Context,
    tenant: TenantArg,
    rate: Annotated[
        float | None, typer.Option(help="Notifications per second per publisher; 0: unlimited.")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Burst above the rate (bucket size).")] = None,
    daily: Annotated[
        int | None, typer.Option(help="Notifications per UTC day, all publishers; 0: unlimited.")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Give a tenant limits of its own (the options not given are 0: unlimited)."""
    base, credential = _target(ctx, url, key, None, dev_dir)
    body: dict[str, Any] = {"tenant": tenant}
    for name, value in (("rate", rate), ("burst", burst), ("daily", daily)):
        if value is not None:
            body[name] = value
    answer = _call("PUT", base, credential, "/api/admin/quota", content=orjson.dumps(body))
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    out.print(f"set {_show(answer)}", soft_wrap=True)


@quota_app.command("reset")
def quota_reset(
    ctx: typer.Context,
    tenant: TenantArg,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Put a tenant back on the defaults (TIDINGS_QUOTA_RATE, _BURST, _DAILY)."""
    base, credential = _target(ctx, url, key, None, dev_dir)
    answer = _call("DELETE", base, credential, "/api/admin/quota", params={"tenant": tenant})
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    out.print(f"reset {_show(answer)}", soft_wrap=True)


@quota_app.command("get")
def quota_get(
    ctx: typer.Context,
    tenant: TenantArg,
    url: UrlOption = None,
    key: KeyOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """A tenant's limits and its notifications today (UTC), summed over every publisher."""
    base, credential = _target(ctx, url, key, token, dev_dir)
    answer = _call("GET", base, credential, "/api/admin/quota", params={"tenant": tenant})
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    out.print(f"{_show(answer)}; {answer['used_today']} published today", soft_wrap=True)


@quota_app.command("list")
def quota_list(
    ctx: typer.Context,
    url: UrlOption = None,
    key: KeyOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """The defaults and every tenant with limits of its own."""
    base, credential = _target(ctx, url, key, token, dev_dir)
    answer = _call("GET", base, credential, "/api/admin/quotas")
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    out.print(_show({"tenant": "defaults", "limits": answer["defaults"], "own": False}))
    for row in answer["quotas"]:
        out.print("  " + _show({"tenant": row["tenant"], "limits": row, "own": True}))
