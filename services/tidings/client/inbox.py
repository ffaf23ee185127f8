"""The inbox API from Python: the history, counts, marks and preferences of the token's user.

    async with InboxClient("http://127.0.0.1:8085", token) as inbox:
        page = await inbox.list(Filter(status="unread"), limit=20)
        await inbox.mark([page.items[0].id], read=True)
        print((await inbox.counts()).unread)

The same calls as the browser SDK's ``InboxClient`` (clients/js). ``token`` is a JWT or an async
function returning one: it is called for the first call, when the token it gave is about to
expire, and once more after a 401. Every refusal of the API is read by the client's one error
reader (:func:`tidings.client.errors.gateway_error`): a :class:`~tidings.client.errors.Refused`
whose ``error`` is the API's code (``not_found``, ``invalid_field``, ``forbidden``…) and
``status`` its HTTP status; a server that does not answer is
:class:`~tidings.client.errors.Unreachable`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from tidings.client.errors import Unreachable, gateway_error
from tidings.client.inbox_items import Counts, Filter, InboxItem, MarkResult, Page, Preferences
from tidings.errors import InvalidField, Malformed

TokenSource = str | Callable[[], Awaitable[str]]
Params = list[tuple[str, str]]  # a query, repeatable keys repeated
TOKEN_LEAD = 30.0  # seconds: ask the token function for a new one this long before `exp`
NO_FILTER = Filter()


def inbox_base(url: str) -> str:
    """The API's base with its routes' prefix: ``http://h:8085`` → ``http://h:8085/v1/inbox/``
    (an ingress's path prefix is kept; a URL already ending in ``/v1/inbox`` is left so)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidField(f"need an http(s) URL, got {url!r}", field="base_url")
    if "token=" in parts.query:
        raise InvalidField("never put the token in the URL; pass token", field="base_url")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if not path.endswith("/v1/inbox/"):
        path += "v1/inbox/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (unix seconds), unverified: only to know when to ask again."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError, orjson.JSONDecodeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _marks(read: bool | None, seen: bool | None, archived: bool | None) -> dict[str, bool]:
    marks = {
        k: v for k, v in (("read", read), ("seen", seen), ("archived", archived)) if v is not None
    }
    if not marks:
        raise InvalidField("give read, seen or archived", field="set")
    return marks


class InboxClient:
    """One user's inbox over HTTP (httpx, async). Close it, or use ``async with``."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = inbox_base(base_url)
        if isinstance(token, str):
            if not token:
                raise InvalidField("give a token", field="token")
            self._token: str | None = token
            self._get_token: Callable[[], Awaitable[str]] | None = None
        else:
            self._token, self._get_token = None, token
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self.timeout = timeout
        self._token_lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the HTTP client this inbox client made (not one it was given)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> InboxClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the calls -------------------------------------------------------------------------------

    async def list(
        self, filter: Filter = NO_FILTER, *, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        """A page of the inbox, newest first (``limit`` 1 to 100, default 20)."""
        query = filter.query()
        if limit is not None:
            query.append(("limit", str(limit)))
        if cursor is not None:
            query.append(("cursor", cursor))
        return Page.from_json(await self._call("GET", "notifications", params=query))

    async def items(
        self, filter: Filter = NO_FILTER, *, page_size: int = 100
    ) -> AsyncIterator[InboxItem]:
        """Every item ``filter`` selects, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list(filter, limit=page_size, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get(self, notification_id: str) -> InboxItem:
        """One item; ``not_found`` for an id this user may not see (another tenant's too)."""
        if not notification_id:
            raise InvalidField("give a notification id", field="id")
        path = "notifications/" + quote(notification_id, safe="")
        return InboxItem.from_json(await self._call("GET", path))

    async def counts(self) -> Counts:
        return Counts.from_json(await self._call("GET", "counts"))

    async def mark(
        self,
        ids: Iterable[str],
        *,
        read: bool | None = None,
        seen: bool | None = None,
        archived: bool | None = None,
    ) -> MarkResult:
        """Set flags on ``ids`` (at most 1000), all or nothing: one id the user may not see
        refuses the call with ``not_found`` and changes nothing."""
        body = {"ids": list(ids), **_marks(read, seen, archived)}
        return MarkResult.from_json(await self._call("POST", "state", json=body))

    async def mark_all(
        self,
        filter: Filter | None = None,
        *,
        read: bool = False,
        seen: bool = False,
        archived: bool = False,
    ) -> Counts:
        """Mark everything (or what ``filter`` selects) read / seen / archived."""
        body: dict[str, Any] = _marks(read or None, seen or None, archived or None)
        if filter is not None:
            body["filter"] = filter.body()
        answer = await self._call("POST", "mark-all", json=body)
        return Counts.from_json(answer.get("counts") if isinstance(answer, Mapping) else None)

    async def preferences(self) -> Preferences:
        return Preferences.from_json(await self._call("GET", "preferences"))

    async def set_preferences(
        self, domains: Mapping[str, Mapping[str, bool | None]]
    ) -> Preferences:
        """Override channels per domain (``None`` removes an override)."""
        body = {"domains": {d: dict(c) for d, c in domains.items()}}
        return Preferences.from_json(await self._call("PUT", "preferences", json=body))

    async def preference_defaults(self) -> Preferences:
        return Preferences.from_json(await self._call("GET", "preferences/defaults"))

    async def set_preference_defaults(
        self, domains: Mapping[str, Mapping[str, bool | None]]
    ) -> Preferences:
        """The tenant's defaults; needs the admin role (else ``forbidden``)."""
        body = {"domains": {d: dict(c) for d, c in domains.items()}}
        return Preferences.from_json(await self._call("PUT", "preferences/defaults", json=body))

    # -- plumbing --------------------------------------------------------------------------------

    async def _bearer(self, fresh: bool) -> str:
        if self._get_token is None:
            assert self._token is not None
            return self._token
        async with self._token_lock:  # concurrent calls share one call of the function
            exp = token_expiry(self._token) if self._token else None
            stale = exp is not None and exp - time.time() < TOKEN_LEAD
            if fresh or self._token is None or stale:
                token = await self._get_token()
                if not isinstance(token, str) or not token:
                    raise InvalidField("the token function returned no token", field="token")
                self._token = token
            return self._token

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
    ) -> Any:
        for attempt in (0, 1):
            token = await self._bearer(fresh=attempt > 0)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            try:
                response = await self._http.request(
                    method,
                    self.base_url + path,
                    params=tuple(params or ()),
                    content=None if json is None else orjson.dumps(json),
                    headers=headers
                    | ({"Content-Type": "application/json"} if json is not None else {}),
                    timeout=self.timeout,
                )
            except httpx.TimeoutException:
                raise Unreachable(f"no answer from the inbox API in {self.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise Unreachable(f"the inbox API did not answer: {exc!r}") from None
            if response.status_code == 401 and self._get_token is not None and attempt == 0:
                continue  # an expired token: ask the function for a new one, once
            if response.is_error:
                raise gateway_error(response.content, status=response.status_code)
            if response.status_code == 204 or not response.content:
                return None
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise Malformed(f"the inbox API answered {method} {path} with no JSON") from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
