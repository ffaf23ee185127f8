"""`tidings revoke` and `tidings presence`: the gateways' admin API from the terminal.

Either command talks to one gateway's API port (``--url``; default: the gateway of a running
`tidings dev`, else TIDINGS_GATEWAY_API_PORT on this host); that gateway acts for all of them.
The credential is the operator key (``--key``, default TIDINGS_GATEWAY_ADMIN_TOKEN) or a token
with the admin role (``--token``: its own tenant only). ``--json`` prints the API's answer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from tidings.cli.common import DirOption, err, fail, out, settings_of
from tidings.dev.info import read_info
from tidings.errors import ConfigError, InvalidField, TidingsError
from tidings.units import parse_duration

BAD_INPUT = ("malformed", "missing_field", "invalid_field", "too_large")  # exit 2

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="A gateway's API base URL; default: `tidings dev`'s, else TIDINGS_GATEWAY_API_PORT.",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="The operator key; default: TIDINGS_GATEWAY_ADMIN_TOKEN.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="A JWT with the admin role (its own tenant).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="The API's JSON answer on stdout.")]


def _target(
    ctx: typer.Context, url: str | None, key: str | None, token: str | None, dev_dir: Path
) -> tuple[str, str]:
    settings = settings_of(ctx)
    if url is None:
        info = read_info(dev_dir) or {}
        for name in ("gateway", "gateway-1"):
            found = (info.get(name) or {}).get("api")
            if found:
                url = str(found)
                break
    if url is None:
        host = settings.gateway.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a wildcard bind: ask locally
        url = f"http://{host}:{settings.gateway.api_port}"
    credential = token or key or settings.gateway.admin_token
    if not credential:
        fail(
            ConfigError(
                "no credential: pass --key (or set TIDINGS_GATEWAY_ADMIN_TOKEN), or --token"
                " with a JWT that has the admin role",
                field="key",
            )
        )
    return url.rstrip("/"), credential


def _call(method: str, url: str, credential: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The API's JSON answer; a refusal exits with its code (2 for bad input, else 1)."""
    headers = {"Authorization": f"Bearer {credential}"}
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=15, **kwargs)
    except httpx.HTTPError as exc:
        fail(TidingsError(f"cannot reach the gateway's API at {url}: {exc}"), 1)
    try:
        body = response.json()
    except ValueError:
        fail(TidingsError(f"{url} answered {response.status_code} without JSON"), 1)
    if response.status_code != 200:
        error = (body or {}).get("error") or {}
        code, reason = error.get("code", "error"), error.get("reason", "")
        where = f"{error['field']}: " if error.get("field") else ""
        fail(TidingsError(f"{code}: {where}{reason}"), 2 if code in BAD_INPUT else 1)
    answer: dict[str, Any] = body
    return answer


def _when(unix: float | None) -> str:
    if unix is None:
        return "until lifted"
    return "until " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def revoke(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant (alone: every token of it).")],
    user: Annotated[str | None, typer.Option(help="One user of the tenant.")] = None,
    jti: Annotated[str | None, typer.Option(help="One token, by its `jti` claim.")] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="How long (90s, 2h, 7d); default and most: TIDINGS_AUTH_MAX_TOKEN_LIFETIME."
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept with it, audit log).")] = None,
    lift: Annotated[bool, typer.Option("--lift", help="End the revocation now.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Disconnect a user, a token (jti) or a tenant on every gateway, and refuse it from now on.

    A user's or a tenant's revocation refuses the tokens issued before it (a new login works);
    a token's refuses that token. Each ends by itself after --ttl (the longest lifetime a token
    can have by default), or with --lift.
    """
    base, credential = _target(ctx, url, key, token, dev_dir)
    body: dict[str, Any] = {"tenant": tenant}
    if user is not None:
        body["user"] = user
    if jti is not None:
        body["jti"] = jti
    if reason is not None:
        body["reason"] = reason
    if ttl is not None:
        try:
            body["ttl"] = parse_duration(ttl)
        except ValueError as exc:
            fail(InvalidField(str(exc), field="ttl"))
    method = "DELETE" if lift else "POST"
    answer = _call(method, base, credential, "/api/admin/revoke", content=orjson.dumps(body))
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    what = answer["lifted" if lift else "revoked"]
    name = {"tenant": tenant, "user": f"{tenant}/{user}", "jti": f"{tenant} jti {jti}"}
    label = f"{what['scope']} {name[what['scope']]}"
    if lift:
        out.print(f"lifted {label} on {answer['gateways']} gateway(s)", soft_wrap=True)
        return
    out.print(
        f"revoked {label}: {answer['closed']} connection(s) closed on {answer['gateways']}"
        f" gateway(s); {_when(what.get('until'))}",
        soft_wrap=True,
    )
    if answer.get("applied", 0) < answer["gateways"]:
        err.print("[yellow]warning:[/] not every gateway confirmed in time; they apply it on load")


def presence(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option(help="One tenant (its users); none: every tenant.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="One user of --tenant.")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    dev_dir: DirOption = Path(".tidings"),
) -> None:
    """Who is connected, summed over every gateway: tenants, a tenant's users, or one user."""
    base, credential = _target(ctx, url, key, token, dev_dir)
    params = {k: v for k, v in (("tenant", tenant), ("user", user)) if v is not None}
    answer = _call("GET", base, credential, "/api/admin/presence", params=params)
    if as_json:
        print(orjson.dumps(answer).decode())
        return
    gateways = f"{answer['gateways']} gateway(s)"
    if user is not None:
        out.print(f"{tenant}/{user}: {answer['connections']} connection(s) on {gateways}")
        return
    kind = "users" if "users" in answer else "tenants"
    key_name = "user" if kind == "users" else "tenant"
    scope = f"tenant {tenant}" if tenant else "all tenants"
    out.print(f"{scope}: {answer['connections']} connection(s) on {gateways}")
    for row in answer[kind]:
        out.print(f"  {row[key_name]:<40} {row['connections']}")
    if answer.get("truncated"):
        err.print("[yellow]warning:[/] a gateway listed only its first entries (truncated)")
