"""The demo page: its static files (package data beside this module) and its dev-only endpoints.

Two servers answer for it, both development tools only — the token endpoint mints a token for
any tenant and user, so it must never be reachable in a real deployment:

- the demo server that `tidings dev` runs (:mod:`tidings.dev.demo.server`): the page, its config
  (the dev token `tidings dev` minted), dev tokens, and publishing through the publisher;
- a gateway started with ``TIDINGS_GATEWAY_DEMO=true``: the page, its config and dev tokens
  (GET only: the gateway's HTTP side answers nothing else, so the page cannot publish there).
  The gateway knows nothing of the demo: the command line injects :func:`gateway_pages`.

The page loads the browser SDK from ``clients/js/src`` itself (no copy here): a built wheel
carries ``tidings.js``, ``tidings-inbox.js``, ``tidings-react.js`` and ``tidings-toast.js``
under ``sdk/`` (``setup.py`` copies them at build time), and a checkout serves them straight from
``clients/js/src``. React's UMD builds are
vendored here from the npm packages (``npm run vendor`` in clients/js; a test keeps them equal),
so the page needs no build step and no network.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from tidings.auth import ROOM_PATTERN_RE
from tidings.codes import ErrorCode
from tidings.dev.info import mint_dev_token
from tidings.errors import InvalidField, TidingsError, error_body
from tidings.settings import AuthSettings, Settings
from tidings.subjects import check_id
from tidings.units import parse_duration, split_list

PREFIX = "/demo"
HERE = Path(__file__).parent
# clients/js/src, the one source of the SDK
SDK_FILES = ("tidings.js", "tidings-inbox.js", "tidings-react.js", "tidings-toast.js")
CHECKOUT_SDK = HERE.parents[3] / "clients" / "js" / "src"  # services/tidings/dev/demo -> repo
ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
MIN_TTL, MAX_TTL, DEFAULT_TTL = 5.0, 7 * 86400.0, 8 * 3600.0
IMPORT_MAP_RE = re.compile(rb'<script type="importmap">(.*?)</script>', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Answer:
    """A framework-neutral HTTP answer; each server turns it into its own response type."""

    status: HTTPStatus
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, body: Any, status: HTTPStatus = HTTPStatus.OK) -> Answer:
        return cls(status, orjson.dumps(body), "application/json")

    @classmethod
    def error(cls, error: TidingsError | ErrorCode, reason: str | None = None) -> Answer:
        code = error if isinstance(error, ErrorCode) else error.code
        return cls(code.http_status, error_body(error, reason), "application/json")


@dataclass(frozen=True, slots=True)
class Identity:
    """Whom a dev token speaks for."""

    tenant: str
    user: str
    roles: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ("*",)
    ttl: float = DEFAULT_TTL

    def claims(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "user": self.user,
            "roles": list(self.roles),
            "rooms": list(self.rooms),
        }


DEFAULT_IDENTITY = Identity(tenant="demo", user="alice", roles=("admin",), rooms=("*",))


def identity_from_query(params: Mapping[str, str]) -> Identity:
    """``?tenant=&user=&roles=a,b&rooms=site-*&ttl=1h`` checked like the gateway checks claims."""
    tenant = check_id(params.get("tenant", ""), field="tenant")
    user = check_id(params.get("user", ""), field="user")
    roles = tuple(check_id(r, field="roles") for r in split_list(params.get("roles", "")))
    rooms = tuple(split_list(params.get("rooms", "*")))
    for pattern in rooms:
        if not ROOM_PATTERN_RE.fullmatch(pattern):
            raise InvalidField(f"{pattern!r} is not a room pattern", field="rooms")
    try:
        ttl = parse_duration(params.get("ttl") or DEFAULT_TTL)
    except ValueError as exc:
        raise InvalidField(str(exc), field="ttl") from None
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidField(f"must be between {MIN_TTL:.0f}s and 7d", field="ttl")
    return Identity(tenant, user, roles, rooms, ttl)


class Minter:
    """Mints dev tokens that a gateway with the same auth settings accepts (HS256 only)."""

    def __init__(self, auth: AuthSettings, secret: str) -> None:
        self.auth = auth
        self.secret = secret

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> Minter | None:
        """``None`` when the gateway verifies with keys it cannot sign with (PEM, JWKS)."""
        if auth.jwt_secret is None:
            return None
        return cls(auth, auth.jwt_secret.get_secret_value())

    def mint(self, identity: Identity) -> str:
        return mint_dev_token(
            self.auth,
            self.secret,
            tenant=identity.tenant,
            user=identity.user,
            roles=identity.roles,
            rooms=identity.rooms,
            ttl=identity.ttl,
        )

    def answer(self, params: Mapping[str, str]) -> Answer:
        try:
            identity = identity_from_query(params)
        except TidingsError as exc:
            return Answer.error(exc)
        return Answer.json({"token": self.mint(identity), "claims": identity.claims()})


def events() -> list[dict[str, str]]:
    """The event types the page offers in its publish form."""
    from tidings.catalogue import BUILTIN_EVENTS

    return [{"name": k, "description": v} for k, v in sorted(BUILTIN_EVENTS.items())]


@cache
def _import_map_hash() -> str:
    # The import map is the page's only inline script; the CSP allows exactly it, by hash.
    match = IMPORT_MAP_RE.search((HERE / "index.html").read_bytes())
    digest = hashlib.sha256(match.group(1) if match else b"").digest()
    return "sha256-" + base64.b64encode(digest).decode()


def security_headers(connect_src: str = "'self'") -> dict[str, str]:
    """The page loads only its own files and talks only to itself and the gateway."""
    csp = "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' '{_import_map_hash()}'",
            "style-src 'self' 'unsafe-inline'",  # the bell injects its default stylesheet
            "img-src 'self' data:",
            f"connect-src {connect_src}",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def asset(name: str) -> tuple[bytes, str] | None:
    """A file of the page by its name under ``/demo/`` (``""`` is the page); nothing else —
    no subdirectories, no dotfiles, no Python sources."""
    name = name or "index.html"
    content_type = ASSET_TYPES.get(Path(name).suffix)
    if content_type is None or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = sdk_file(name) if name in SDK_FILES else HERE / name
    if path is None or not path.is_file():
        return None
    return path.read_bytes(), content_type


def sdk_file(name: str) -> Traversable | None:
    """One of the SDK's files: the copy a built wheel carries, else the checkout's source."""
    packaged = resources.files(__name__) / "sdk" / name
    if packaged.is_file():
        return packaged
    source = CHECKOUT_SDK / name
    return source if source.is_file() else None


def answer_get(
    path: str,
    params: Mapping[str, str],
    *,
    config: Callable[[], Answer],
    minter: Minter | None,
    connect_src: str = "'self'",
) -> Answer | None:
    """The GET routes both servers share; ``None`` when ``path`` is not under ``/demo/``."""
    if path == PREFIX:
        return Answer(HTTPStatus.FOUND, b"", "text/plain", {"Location": PREFIX + "/"})
    if not path.startswith(PREFIX + "/"):
        return None
    name = path.removeprefix(PREFIX + "/")
    if name == "config.json":
        return config()
    if name == "api/token":
        if minter is None:
            return Answer.error(ErrorCode.NOT_FOUND, "this gateway cannot mint tokens")
        return minter.answer(params)
    found = asset(name)
    if found is None:
        return Answer.error(ErrorCode.NOT_FOUND, f"no file {name!r}")
    body, content_type = found
    headers = security_headers(connect_src) if content_type.startswith("text/html") else {}
    return Answer(HTTPStatus.OK, body, content_type, {"Cache-Control": "no-store", **headers})


def gateway_config(minter: Minter | None) -> Answer:
    """The page's config when a gateway serves it: same-origin WebSocket, a default dev token."""
    identity = DEFAULT_IDENTITY
    token = minter.mint(identity) if minter is not None else None
    return Answer.json(
        {
            "served_by": "gateway",
            "ws": None,  # same origin: /ws
            "token": token,
            "claims": identity.claims() if token else None,
            "mint": minter is not None,
            "publish": False,
            "inbox": None,  # the inbox API runs beside `tidings dev`, not in a gateway
            "events": events(),
        }
    )


PageAnswers = Callable[[str, str], Answer | None]


def gateway_pages(settings: Settings) -> PageAnswers:
    """What a gateway with ``TIDINGS_GATEWAY_DEMO`` on answers under ``/demo``: (path, raw query
    string) to an answer, ``None`` outside ``/demo``. It mints with the gateway's own secret."""
    minter = Minter.from_settings(settings.auth)

    def pages(path: str, query: str) -> Answer | None:
        return answer_get(
            path,
            dict(parse_qsl(query)),
            config=lambda: gateway_config(minter),
            minter=minter,
        )

    return pages
