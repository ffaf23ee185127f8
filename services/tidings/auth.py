"""JSON Web Tokens: minting dev tokens and verifying what clients present.

Claims: a user (``sub`` by default), a tenant (claim name configurable, default ``tenant``),
``roles`` and ``rooms`` (named-room patterns the holder may join, ``*`` wildcards allowed).
Every id is checked with :func:`tidings.subjects.check_id` before it can reach a subject.

Keys are kept per algorithm family and chosen by the token's ``alg`` only after the allow-list
admitted it: an HMAC secret is never an RSA/EC key and the reverse, so a token "signed" with
the RS256 public key as an HS256 secret (algorithm confusion) cannot verify.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.types import Options

from tidings.errors import (
    ConfigError,
    Forbidden,
    IdentityChanged,
    JwksUnavailable,
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
from tidings.subjects import ID_RE, Audience, AudienceKind, check_id

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPrivateKeys

    from tidings.settings import AuthSettings

log = logging.getLogger(__name__)

DEV_AUDIENCE = "tidings"
DEV_ISSUER = "tidings-dev"
MIN_RSA_BITS = 2048
MAX_TOKEN_BYTES = 8 * 1024
MAX_ROOM_PATTERNS = 256
MAX_JWKS_BYTES = 1 << 20

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
JWK_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
OKP_ALGORITHMS = frozenset({"EdDSA"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_CURVES) | OKP_ALGORITHMS
JWKS_DEFAULT_ALGORITHMS = ("RS256", "ES256")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

ROOM_PATTERN_RE = re.compile(r"[A-Za-z0-9_*-]{1,64}")


# --- keys and algorithms ------------------------------------------------------------------


def load_public_key(path: Path) -> PublicKey:
    """The verification key in a PEM file (a public key or a certificate); refuse weak ones."""
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} holds no PEM public key or certificate ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES.values():
            raise ValueError(f"EC curve {key.curve.name} is not one of P-256, P-384, P-521")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed448.Ed448PublicKey):
        raise ValueError("Ed448 keys are not supported; use Ed25519, EC or RSA")
    raise ValueError(f"unsupported key type {type(key).__name__}; use RSA, EC or Ed25519")


def key_algorithms(key: PublicKey) -> frozenset[str]:
    """Every algorithm ``key`` can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset(a for a, c in EC_CURVES.items() if c == key.curve.name)
    return OKP_ALGORITHMS


def default_algorithms(key: PublicKey) -> list[str]:
    """The one algorithm assumed for a PEM key when none are configured."""
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256"]
    return sorted(key_algorithms(key))


def check_algorithms(
    algorithms: Sequence[str], *, secret: bool, public_key: PublicKey | None, jwks: bool
) -> list[str]:
    """The allow-list, or the default derived from the key sources; raise on a bad entry."""
    if not algorithms:
        derived: list[str] = ["HS256"] if secret else []
        if public_key is not None:
            derived += default_algorithms(public_key)
        if jwks:
            derived += [a for a in JWKS_DEFAULT_ALGORITHMS if a not in derived]
        return derived
    checked: list[str] = []
    for name in algorithms:
        if name.lower() == "none":
            raise ValueError("'none' is never allowed: tokens must be signed")
        if name not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"{name!r} is not one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        if name in HMAC_ALGORITHMS:
            usable = secret
        else:
            usable = jwks or (public_key is not None and name in key_algorithms(public_key))
        if not usable:
            raise ValueError(f"{name} is allowed but no configured key can verify it")
        if name not in checked:
            checked.append(name)
    return checked


# --- claims -------------------------------------------------------------------------------


def check_room_pattern(pattern: object, *, field: str = "rooms") -> str:
    """A named-room pattern: room-name characters plus ``*`` (any run of them)."""
    if not isinstance(pattern, str) or not ROOM_PATTERN_RE.fullmatch(pattern):
        raise TokenClaimInvalid(
            f"{pattern!r} is not a room pattern (1-64 of A-Z a-z 0-9 _ - *)", field=field
        )
    return pattern


def _pattern_regex(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts = ("[A-Za-z0-9_-]*".join(re.escape(p) for p in pat.split("*")) for pat in patterns)
    return re.compile("|".join(f"(?:{p})" for p in parts))


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its holder, every id already checked."""

    tenant: str
    user: str
    roles: frozenset[str] = frozenset()
    room_patterns: tuple[str, ...] = ()
    expires_at: float | None = None
    _rooms_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.tenant, field="tenant")
        check_id(self.user, field="user")
        roles = frozenset(self.roles)
        for role in roles:
            check_id(role, field="roles")
        patterns = tuple(self.room_patterns)
        for pattern in patterns:
            check_room_pattern(pattern)
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "room_patterns", patterns)
        object.__setattr__(self, "_rooms_re", _pattern_regex(patterns))

    def may_join(self, room_name: str) -> bool:
        """Whether a named room (``site-berlin``, not ``room:site-berlin``) is allowed."""
        if self._rooms_re is None or not ID_RE.fullmatch(room_name):
            return False
        return self._rooms_re.fullmatch(room_name) is not None

    def authorize(self, audience: Audience) -> Audience:
        """``audience`` if this holder may receive it, else :class:`Forbidden`."""
        kind, name = audience.kind, audience.name
        allowed = (
            kind in (AudienceKind.TENANT, AudienceKind.BROADCAST)
            or (kind is AudienceKind.USER and name == self.user)
            or (kind is AudienceKind.ROLE and name in self.roles)
            or (kind is AudienceKind.ROOM and self.may_join(name))
        )
        if not allowed:
            raise Forbidden(f"the token does not allow {audience.room}", field="room")
        return audience

    @property
    def default_rooms(self) -> tuple[str, ...]:
        """Rooms every connection of this holder joins without asking."""
        roles = tuple(f"role:{r}" for r in sorted(self.roles))
        return ("tenant", f"user:{self.user}", *roles, "broadcast")

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until ``exp`` (negative once passed), ``None`` for a token without one."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def ensure_same_identity(self, new: Claims) -> Claims:
        """``new`` if it names the same tenant and user (a refresh), else IdentityChanged."""
        if (new.tenant, new.user) != (self.tenant, self.user):
            raise IdentityChanged(
                f"the new token is for {new.tenant}/{new.user}, the connection is for "
                f"{self.tenant}/{self.user}",
                field="token",
            )
        return new


# --- JWKS ---------------------------------------------------------------------------------


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


# --- verification -------------------------------------------------------------------------

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


def _numeric_date(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenClaimInvalid("must be a number of seconds since the epoch", field=name)
    return float(value)


class Verifier:
    """Verifies tokens against the configured keys and turns them into :class:`Claims`.

    Built once per process from :class:`AuthSettings`; ``verify`` is safe to call concurrently.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.algorithms:
            raise ConfigError(
                "no token key configured: set TIDINGS_AUTH_JWT_SECRET, "
                "TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE or TIDINGS_AUTH_JWKS_URL",
                field="TIDINGS_AUTH_JWT_SECRET",
            )
        self.settings = settings
        self.algorithms = frozenset(settings.algorithms)
        self._secret = (
            settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
        )
        self._public_key = (
            load_public_key(settings.jwt_public_key_file) if settings.jwt_public_key_file else None
        )
        self.jwks = (
            JwksClient(
                settings.jwks_url,
                cache_seconds=settings.jwks_cache_seconds,
                refetch_interval=settings.jwks_refetch_interval,
                timeout=settings.jwks_timeout,
                http=http,
            )
            if settings.jwks_url
            else None
        )
        self._clock = clock
        self._jwt = jwt.PyJWT({"enforce_minimum_key_length": True})
        self._options: Options = {
            "verify_signature": True,
            "verify_exp": False,  # time claims are checked below, with typed errors
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": settings.audience is not None,
            "verify_iss": settings.issuer is not None,
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
        s = self.settings
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
        s = self.settings
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
        return Claims(tenant, user, frozenset(roles), tuple(dict.fromkeys(patterns)), exp)

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


# --- minting ------------------------------------------------------------------------------


def mint_token(
    secret: str | bytes | AllowedPrivateKeys,
    *,
    tenant: str,
    user: str,
    roles: Sequence[str] = (),
    rooms: Sequence[str] = (),
    ttl: float = 3600.0,
    audience: str = DEV_AUDIENCE,
    issuer: str = DEV_ISSUER,
    tenant_claim: str = "tenant",
    algorithm: str = "HS256",
    kid: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for development and tests; ids are validated like everywhere else.

    ``secret`` is the HMAC secret, or for RS/PS/ES/EdDSA the private key (PEM or a key
    object). ``claims`` are merged last; a ``None`` value removes a claim (to mint bad tokens).
    """
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": check_id(user, field="user"),
        tenant_claim: check_id(tenant, field="tenant"),
        "roles": [check_id(r, field="role") for r in roles],
        "rooms": list(rooms),
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl),
        "aud": audience,
        "iss": issuer,
    }
    for name, value in (claims or {}).items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, secret, algorithm=algorithm, headers=headers)
