"""The token a subscriber's next ``hello`` carries, and when ``get_token`` is asked for another.

A fixed ``token`` is used as is. With ``get_token`` a fresh one is fetched for the first hello,
when the current one is about to expire, after the gateway refused one (a limited number of
times: a second 4001 after a fresh token means asking again will not help), and ahead of expiry
on a live connection (``refresh``), so a long connection never drops for its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tidings import protocol as p
from tidings.client.errors import Refused
from tidings.client.options import GetToken
from tidings.errors import InvalidField, TidingsError

log = logging.getLogger(__name__)

Refresh = Callable[[str], Awaitable[p.ServerFrame]]  # sends `refresh` with a token, gets the answer


class Unavailable(Exception):
    """No token this time (``get_token`` failed); a later attempt may get one."""


class Credentials:
    def __init__(self, token: str | None, get_token: GetToken | None, max_auth_retries: int):
        if token is None and get_token is None:
            raise InvalidField("give a token or get_token", field="token")
        self.token = token
        self.get_token = get_token
        self.expires_at: float | None = None  # unix seconds, from welcome and refreshed
        self._max_auth_retries = max_auth_retries
        self._need_token = token is None
        self._auth_failures = 0
        self._refresher: asyncio.Task[None] | None = None

    async def for_hello(self) -> str:
        """The token to send now; raises :class:`Refused` when ``get_token`` says the user may
        not have one, :class:`Unavailable` when it failed otherwise."""
        expiring = self.expires_at is not None and self.expires_at - time.time() < 1.0
        if self.get_token is not None and (self._need_token or expiring or self.token is None):
            try:
                token = await self.get_token()
            except asyncio.CancelledError:
                raise
            except TidingsError as exc:
                if exc.code in ("unauthorized", "forbidden"):
                    raise Refused(f"get_token: {exc.reason}", error=exc.code) from exc
                raise Unavailable(f"get_token failed: {exc}") from exc
            except Exception as exc:
                raise Unavailable(f"get_token failed: {exc!r}") from exc
            self.token, self.expires_at, self._need_token = token, None, False
        assert self.token is not None
        return self.token

    def welcomed(self, expires_at: float | None) -> None:
        self.expires_at = expires_at
        self._auth_failures = 0

    def refused(self) -> bool:
        """The gateway refused the token (4001, 4401): True when a fresh one is worth a try."""
        if self.get_token is None:
            return False
        self._auth_failures += 1
        if self._auth_failures > self._max_auth_retries:
            return False
        self._need_token = True
        return True

    def refresh_ahead(self, refresh: Refresh, *, lead: float) -> None:
        """Keep the token fresh on this connection (until :meth:`stop_refresh`), when it expires
        and ``get_token`` can make another."""
        self.stop_refresh()
        if self.get_token is not None and self.expires_at is not None:
            self._refresher = asyncio.create_task(self._keep_fresh(refresh, lead=lead))

    def stop_refresh(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def _keep_fresh(self, refresh: Refresh, *, lead: float) -> None:
        """Send ``refresh`` ahead of ``exp``: a third of the lifetime left, at most ``lead``
        seconds early; failures retry until the token expires (then the gateway closes 4401
        and the reconnect asks ``get_token`` again)."""
        assert self.get_token is not None
        while self.expires_at is not None:
            expires = self.expires_at
            remaining = expires - time.time()
            await asyncio.sleep(max(0.0, remaining - min(lead, remaining / 3)))
            try:
                token = await self.get_token()
                reply = await refresh(token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                left = expires - time.time()
                log.warning("token refresh failed", extra={"error": repr(exc), "left": left})
                if left <= 0:
                    return
                await asyncio.sleep(min(1.0, left / 4))
                continue
            assert isinstance(reply, p.Refreshed)
            self.token = token
            self.expires_at = reply.expires_at
