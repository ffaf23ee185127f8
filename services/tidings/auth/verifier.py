"""Verifying what clients present: a JWT in, :class:`Claims` out, or a typed refusal.

Claims: a user (``sub`` by default), a tenant (claim name configurable, default ``tenant``),
``roles`` and ``rooms`` (named-room patterns the holder may join, ``*`` wildcards allowed).
Every id is checked with :func:`tidings.subjects.check_id` before it can reach a subject.

The verifier reads its configuration through :class:`TokenPolicy`, which
:class:`tidings.settings.AuthSettings` satisfies: auth needs no import of settings, and
settings imports only the leaf :mod:`tidings.auth.keys`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from jwt.types import Options
from pydantic import SecretStr

from tidings.auth.claims import Claims, check_room_pattern
from tidings.auth.jwks import JwksClient
from tidings.auth.keys import HMAC_ALGORITHMS, key_algorithms, load_public_key
from tidings.errors import (
    ConfigError,
    TidingsError,
    TokenAlgorithmNotAllowed,
    TokenBadAudience,
    TokenBadIssuer,
    TokenClaimInvalid,
    TokenClaimMissing,
    TokenExpired,
    TokenInvalidSignature,
    TokenMalformed,
    TokenMissing,
    TokenNotYetValid,
)
from tidings.subjects import check_id

MAX_TOKEN_BYTES = 8 * 1024
MAX_ROOM_PATTERNS = 256


class TokenPolicy(Protocol):
    """What the verifier reads from its configuration (``AuthSettings`` in a process)."""

    algorithms: list[str]
    jwt_secret: SecretStr | None
    jwt_public_key_file: Path | None
    jwks_url: str | None
    jwks_cache_seconds: float
    jwks_refetch_interval: float
    jwks_timeout: float
    audience: str | None
    issuer: str | None
    leeway: float
    user_claim: str
    tenant_claim: str
    roles_claim: str
    rooms_claim: str
    require_exp: bool
    max_token_lifetime: float


_MISSING = object()


def claim(payload: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a name absent as a key but holding dots is a path (``realm.roles``)."""
    if name in payload:
        return payload[name]
    if "." not in name:
        return _MISSING
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


# The last second of year 9999: a later (or negative) NumericDate is a forged or broken token,
# and an integer beyond a float's range would raise OverflowError in any comparison with time.
MAX_NUMERIC_DATE = 253_402_300_799


def _numeric_date(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenClaimInvalid("must be a number of seconds since the epoch", field=name)
    if not 0 <= value <= MAX_NUMERIC_DATE:  # int compares exactly; NaN fails too
        raise TokenClaimInvalid(
            f"must be a number of seconds between 0 and {MAX_NUMERIC_DATE} (year 9999)",
            field=name,
        )
    return float(value)


class Verifier:
    """Verifies tokens against the configured keys and turns them into :class:`Claims`.

    Built once per process from its :class:`TokenPolicy`; ``verify`` is safe to call concurrently.
    """

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not policy.algorithms:
            raise ConfigError(
                "no token key configured: set TIDINGS_AUTH_JWT_SECRET, "
                "TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE or TIDINGS_AUTH_JWKS_URL",
                field="TIDINGS_AUTH_JWT_SECRET",
            )
        self.policy = policy
        self.algorithms = frozenset(policy.algorithms)
        self._secret = policy.jwt_secret.get_secret_value().encode() if policy.jwt_secret else None
        self._public_key = (
            load_public_key(policy.jwt_public_key_file) if policy.jwt_public_key_file else None
        )
        self.jwks = (
            JwksClient(
                policy.jwks_url,
                cache_seconds=policy.jwks_cache_seconds,
                refetch_interval=policy.jwks_refetch_interval,
                timeout=policy.jwks_timeout,
                http=http,
            )
            if policy.jwks_url
            else None
        )
        self._clock = clock
        self._jwt = jwt.PyJWT({"enforce_minimum_key_length": True})
        self._options: Options = {
            "verify_signature": True,
            "verify_exp": False,  # time claims are checked below, with typed errors
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": policy.audience is not None,
            "verify_iss": policy.issuer is not None,
            "verify_sub": True,
            "verify_jti": True,
            "require": [],
        }

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def verify(self, token: str | None) -> Claims:
        """The claims of a valid token; an :class:`AuthError` saying why not otherwise."""
        if token is None or (isinstance(token, str) and not token.strip()):
            raise TokenMissing("no token was sent", field="token")
        if not isinstance(token, str):
            raise TokenMalformed("the token must be a string", field="token")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenMalformed(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenMalformed(f"not a JWT: {exc}", field="token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            allowed = ", ".join(sorted(self.algorithms))
            raise TokenAlgorithmNotAllowed(
                f"alg {algorithm!r} is not allowed (allowed: {allowed})", field="alg"
            )
        key = await self._key_for(algorithm, header.get("kid"))
        payload = self._decode(token, key, algorithm)
        return self._claims(payload)

    async def _key_for(self, algorithm: str, kid: object) -> Any:
        if algorithm in HMAC_ALGORITHMS:
            if self._secret is None:
                raise TokenAlgorithmNotAllowed(f"no secret verifies {algorithm}", field="alg")
            return self._secret
        if kid is not None and not isinstance(kid, str):
            raise TokenMalformed("kid must be a string", field="kid")
        pem_fits = self._public_key is not None and algorithm in key_algorithms(self._public_key)
        if self.jwks is not None and (kid is not None or not pem_fits):
            return await self.jwks.key(kid, algorithm)
        if pem_fits:
            return self._public_key
        raise TokenAlgorithmNotAllowed(f"no configured key verifies {algorithm}", field="alg")

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        s = self.policy
        try:
            return self._jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options=self._options,
                audience=s.audience,
                issuer=s.issuer,
            )
        except jwt.InvalidSignatureError:
            raise TokenInvalidSignature("the signature does not verify") from None
        except jwt.InvalidAudienceError as exc:
            raise TokenBadAudience(f"aud: {exc}", field="aud") from None
        except jwt.InvalidIssuerError as exc:
            raise TokenBadIssuer(f"iss: {exc}", field="iss") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise TokenBadAudience("the token has no aud claim", field="aud") from None
            if exc.claim == "iss":
                raise TokenBadIssuer("the token has no iss claim", field="iss") from None
            raise TokenClaimMissing(f"no {exc.claim} claim", field=exc.claim) from None
        except jwt.exceptions.InvalidSubjectError as exc:
            raise TokenClaimInvalid(str(exc), field="sub") from None
        except jwt.exceptions.InvalidJTIError as exc:
            raise TokenClaimInvalid(str(exc), field="jti") from None
        except jwt.InvalidAlgorithmError as exc:
            raise TokenAlgorithmNotAllowed(str(exc), field="alg") from None
        except jwt.InvalidKeyError as exc:
            raise TokenInvalidSignature(f"the key cannot verify it: {exc}") from None
        except jwt.PyJWTError as exc:
            raise TokenMalformed(f"not a valid JWT: {exc}", field="token") from None

    def _claims(self, payload: dict[str, Any]) -> Claims:
        s = self.policy
        now, leeway = self._clock(), s.leeway
        exp = _numeric_date(payload, "exp")
        if exp is None and s.require_exp:
            raise TokenClaimMissing("the token has no exp claim", field="exp")
        if exp is not None and exp <= now - leeway:
            raise TokenExpired(f"the token expired {now - exp:.0f}s ago", field="exp")
        nbf = _numeric_date(payload, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise TokenNotYetValid(f"the token is valid in {nbf - now:.0f}s", field="nbf")
        iat = _numeric_date(payload, "iat")
        if iat is not None and iat > now + leeway:
            raise TokenNotYetValid("the token was issued in the future", field="iat")
        longest = s.max_token_lifetime
        if longest and exp is not None:
            # A bound on how long a stolen token works and on what a connection holds.
            lives = max(exp - iat if iat is not None else 0.0, exp - now - leeway)
            if lives > longest:
                raise TokenClaimInvalid(
                    f"the token lives {lives:.0f}s; at most {longest:.0f}s are accepted"
                    " (TIDINGS_AUTH_MAX_TOKEN_LIFETIME)",
                    field="exp",
                )

        tenant = self._id_claim(payload, s.tenant_claim)
        user = self._id_claim(payload, s.user_claim)
        roles = self._list_claim(payload, s.roles_claim)
        for role in roles:
            self._check(check_id, role, s.roles_claim)
        patterns = self._list_claim(payload, s.rooms_claim)
        if len(patterns) > MAX_ROOM_PATTERNS:
            raise TokenClaimInvalid(f"more than {MAX_ROOM_PATTERNS} patterns", field=s.rooms_claim)
        for pattern in patterns:
            check_room_pattern(pattern, field=s.rooms_claim)
        jti = payload.get("jti")  # PyJWT checked it is a string when present
        return Claims(
            tenant,
            user,
            frozenset(roles),
            tuple(dict.fromkeys(patterns)),
            exp,
            jti=jti if isinstance(jti, str) and jti else None,
            issued_at=iat,
        )

    @staticmethod
    def _check(checker: Callable[..., str], value: object, name: str) -> str:
        try:
            return checker(value, field=name)
        except TidingsError as exc:
            raise TokenClaimInvalid(exc.reason, field=name) from None

    def _id_claim(self, payload: Mapping[str, Any], name: str) -> str:
        value = claim(payload, name)
        if value is _MISSING or value is None:
            raise TokenClaimMissing(f"the token has no {name} claim", field=name)
        return self._check(check_id, value, name)

    @staticmethod
    def _list_claim(payload: Mapping[str, Any], name: str) -> list[str]:
        value = claim(payload, name)
        if value is _MISSING or value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TokenClaimInvalid("must be an array of strings", field=name)
        return value
