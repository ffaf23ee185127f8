"""Keys from an identity provider's JWKS URL, cached and refetched with care.

Symmetric keys in a key set are ignored (an HMAC secret must never come from a URL), and a key
is used only for the algorithm family it fits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from tidings.auth.keys import JWK_CURVES, OKP_ALGORITHMS, RSA_ALGORITHMS
from tidings.errors import JwksUnavailable, TokenInvalidSignature

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1 << 20


def _jwk_fits(jwk: Mapping[str, Any], algorithm: str) -> bool:
    """Whether a JWK may verify ``algorithm`` (symmetric keys from a JWKS never do)."""
    if jwk.get("use") not in (None, "sig"):
        return False
    if jwk.get("alg") not in (None, algorithm):
        return False
    kty = jwk.get("kty")
    if algorithm in RSA_ALGORITHMS:
        return kty == "RSA"
    if algorithm in JWK_CURVES:
        return kty == "EC" and jwk.get("crv") == JWK_CURVES[algorithm]
    if algorithm in OKP_ALGORITHMS:
        return kty == "OKP" and jwk.get("crv") == "Ed25519"
    return False


class JwksClient:
    """Keys from a JWKS URL: cached, refetched when stale or when a token names an unknown
    ``kid`` (at most once per ``refetch_interval``, one fetch for many waiting tokens).

    A failed refresh keeps serving the keys already known: an identity provider's short outage
    must not log everyone out.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        refetch_interval: float = 10.0,
        timeout: float = 5.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.refetch_interval = refetch_interval
        self._http = http
        self._own_http = http is None
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._jwks: list[dict[str, Any]] | None = None
        self._keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._last_error: str | None = None
        self.fetches = 0

    async def aclose(self) -> None:
        if self._http is not None and self._own_http:
            await self._http.aclose()
            self._http = None

    async def refresh(self) -> None:
        """Fetch the key set now (start-up, readiness); raise :class:`JwksUnavailable`."""
        async with self._lock:
            await self._fetch()
        if self._last_error is not None:
            raise JwksUnavailable(self._last_error)

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key that verifies a token with this ``kid`` and ``alg``."""
        now = self._clock()
        stale = now - self._fetched_at >= self.cache_seconds
        # With keys at hand a stale set is refreshed by one caller; the others go on meanwhile.
        if self._jwks is None or (stale and not self._lock.locked()):
            await self._fetch_once(now)
        if self._jwks is None:
            raise JwksUnavailable(f"the key set at {self.url} is unavailable: {self._last_error}")
        found = self._find(kid, algorithm)
        if found is None and kid is not None:
            await self._fetch_once(now)  # perhaps a rotated key
            found = self._find(kid, algorithm)
            if found is None and self._last_error is not None:
                raise JwksUnavailable(
                    f"no key {kid!r} and the key set at {self.url} is unavailable: "
                    f"{self._last_error}"
                )
        if found is None:
            what = f"kid {kid!r}" if kid is not None else "a token without kid"
            raise TokenInvalidSignature(f"the key set has no {algorithm} key for {what}")
        return found

    async def _fetch_once(self, since: float) -> None:
        """Fetch, unless a fetch began after ``since`` (its result serves this caller too) or
        the rate limit says not yet; waits for a fetch in flight."""
        async with self._lock:
            # The rate limit: tokens naming made-up kids must not become a flood of fetches.
            if self._attempted_at < since and self._clock() - self._attempted_at >= (
                self.refetch_interval
            ):
                await self._fetch()

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=self._timeout)
            response = await self._http.get(self.url, headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            body = response.json()
            keys = body.get("keys") if isinstance(body, dict) else None
            if not isinstance(keys, list):
                raise ValueError("not a JWK set (no keys array)")
        except (httpx.HTTPError, ValueError) as exc:
            self._last_error = str(exc) or type(exc).__name__
            log.warning("jwks fetch failed", extra={"url": self.url, "error": self._last_error})
            return
        self._jwks = [k for k in keys if isinstance(k, dict) and k.get("kty") != "oct"]
        self._keys = {}
        self._fetched_at = self._attempted_at
        self._last_error = None

    def _find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        cached = self._keys.get((kid, algorithm))
        if cached is not None:
            return cached
        candidates = [
            k
            for k in self._jwks or ()
            if (kid is None or k.get("kid") == kid) and _jwk_fits(k, algorithm)
        ]
        if len(candidates) != 1:
            return None
        try:
            key = jwt.PyJWK(candidates[0], algorithm=algorithm)
        except jwt.PyJWTError:
            return None
        self._keys[(kid, algorithm)] = key
        return key
