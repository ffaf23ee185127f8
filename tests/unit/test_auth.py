"""Token verification: the auth matrix of the gateway issue, at the verifier level.

Every refused token must name its reason with a stable code and the close code the gateway
uses; good HS256, RS256 and ES256 tokens must pass; claim names are configurable.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

import tidings.auth
from tests.support.tokens import good_claims
from tidings.auth import DEV_AUDIENCE, DEV_ISSUER, Claims, Verifier, mint_token
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import (
    AUTH_ERRORS,
    AuthError,
    ConfigError,
    Forbidden,
    IdentityChanged,
    InvalidField,
    TokenClaimInvalid,
)
from tidings.settings import AuthSettings, load_settings
from tidings.subjects import Audience

SECRET = "dev-secret-that-is-long-enough-for-hs256!"
AUDIENCE = "tidings-gateway"
ISSUER = "https://idp.example.test"
payload = partial(good_claims, aud=AUDIENCE, iss=ISSUER)  # good claims for this verifier


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Keys:
    rsa_key: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    rsa_pem: Path
    ec_pem: Path
    rsa_public_pem: bytes


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (d / "rsa.pem").write_bytes(pem_public(rsa_key))
    (d / "ec.pem").write_bytes(pem_public(ec_key))
    return Keys(
        rsa_key=rsa_key,
        rsa_other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_key=ec_key,
        rsa_pem=d / "rsa.pem",
        ec_pem=d / "ec.pem",
        rsa_public_pem=pem_public(rsa_key),
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(body: dict[str, Any], alg: str = "none") -> str:
    """A token with ``alg: none`` (or any header) and an empty signature, as an attacker would."""
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(body).encode())}."


def hs256_with(key: bytes, body: dict[str, Any]) -> str:
    """HS256 computed by hand, so the RSA public key can be used as the 'secret' (PyJWT refuses)."""
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{b64(json.dumps(body).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def hs(body: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(body, secret, algorithm="HS256")


def settings(keys: Keys, **changes: Any) -> AuthSettings:
    base: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_public_key_file": keys.rsa_pem,
        "audience": AUDIENCE,
        "issuer": ISSUER,
    }
    base.update(changes)
    return AuthSettings(**base)


@pytest.fixture
async def verifier(keys: Keys) -> AsyncIterator[Verifier]:
    """Secret and RSA public key both configured: the case where confusion could bite."""
    async with Verifier(settings(keys)) as v:
        yield v


@pytest.fixture
async def rs_only(keys: Keys) -> AsyncIterator[Verifier]:
    async with Verifier(settings(keys, jwt_secret=None)) as v:
        yield v


# --- the matrix of refused tokens --------------------------------------------------------

Case = tuple[str, Callable[[Keys], Any], ErrorCode, CloseCode]
UNAUTHORIZED, EXPIRED = CloseCode.UNAUTHORIZED, CloseCode.TOKEN_EXPIRED
E = ErrorCode

BAD_TOKENS: list[Case] = [
    ("none", lambda k: None, E.TOKEN_MISSING, UNAUTHORIZED),
    ("empty", lambda k: "", E.TOKEN_MISSING, UNAUTHORIZED),
    ("blank", lambda k: "  ", E.TOKEN_MISSING, UNAUTHORIZED),
    ("not a string", lambda k: 42, E.TOKEN_MALFORMED, UNAUTHORIZED),
    ("garbage", lambda k: "not-a-jwt", E.TOKEN_MALFORMED, UNAUTHORIZED),
    ("three garbage segments", lambda k: "a!.b!.c!", E.TOKEN_MALFORMED, UNAUTHORIZED),
    ("header not JSON", lambda k: f"{b64(b'{')}.{b64(b'{}')}.", E.TOKEN_MALFORMED, UNAUTHORIZED),
    ("too long", lambda k: hs(payload(pad="x" * 9000)), E.TOKEN_MALFORMED, UNAUTHORIZED),
    ("alg none", lambda k: unsigned(payload()), E.TOKEN_ALGORITHM_NOT_ALLOWED, UNAUTHORIZED),
    (
        "alg NONE",
        lambda k: unsigned(payload(), "NONE"),
        E.TOKEN_ALGORITHM_NOT_ALLOWED,
        UNAUTHORIZED,
    ),
    (
        "alg not configured (HS512)",
        lambda k: jwt.encode(payload(), SECRET + SECRET, algorithm="HS512"),
        E.TOKEN_ALGORITHM_NOT_ALLOWED,
        UNAUTHORIZED,
    ),
    (
        "HS256 signed with the RS256 public key",
        lambda k: hs256_with(k.rsa_public_pem, payload()),
        E.TOKEN_INVALID_SIGNATURE,
        UNAUTHORIZED,
    ),
    (
        "HS256 wrong secret",
        lambda k: hs(payload(), "x" * 40),
        E.TOKEN_INVALID_SIGNATURE,
        UNAUTHORIZED,
    ),
    (
        "RS256 wrong key",
        lambda k: jwt.encode(payload(), k.rsa_other, algorithm="RS256"),
        E.TOKEN_INVALID_SIGNATURE,
        UNAUTHORIZED,
    ),
    (
        "signature of another token",
        lambda k: hs(payload()).rsplit(".", 1)[0] + "." + hs(payload(sub="bob")).rsplit(".", 1)[1],
        E.TOKEN_INVALID_SIGNATURE,
        UNAUTHORIZED,
    ),
    ("expired", lambda k: hs(payload(exp=int(time.time()) - 5)), E.TOKEN_EXPIRED, EXPIRED),
    (
        "nbf in the future",
        lambda k: hs(payload(nbf=int(time.time()) + 60)),
        E.TOKEN_NOT_YET_VALID,
        UNAUTHORIZED,
    ),
    (
        "iat in the future",
        lambda k: hs(payload(iat=int(time.time()) + 60)),
        E.TOKEN_NOT_YET_VALID,
        UNAUTHORIZED,
    ),
    # A validly signed date beyond a float's range must be a refusal, not an OverflowError (500).
    ("exp 10^400", lambda k: hs(payload(exp=10**400)), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("iat 10^400", lambda k: hs(payload(iat=10**400)), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("nbf -10^400", lambda k: hs(payload(nbf=-(10**400))), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("exp after 9999", lambda k: hs(payload(exp=10**12)), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("iat negative", lambda k: hs(payload(iat=-1)), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    (
        "exp not a number",
        lambda k: hs(payload(exp="tomorrow")),
        E.TOKEN_CLAIM_INVALID,
        UNAUTHORIZED,
    ),
    ("no exp", lambda k: hs(payload(exp=None)), E.TOKEN_CLAIM_MISSING, UNAUTHORIZED),
    ("wrong aud", lambda k: hs(payload(aud="another-app")), E.TOKEN_BAD_AUDIENCE, UNAUTHORIZED),
    ("no aud", lambda k: hs(payload(aud=None)), E.TOKEN_BAD_AUDIENCE, UNAUTHORIZED),
    ("wrong iss", lambda k: hs(payload(iss="https://evil.test")), E.TOKEN_BAD_ISSUER, UNAUTHORIZED),
    ("no iss", lambda k: hs(payload(iss=None)), E.TOKEN_BAD_ISSUER, UNAUTHORIZED),
    ("no tenant claim", lambda k: hs(payload(tenant=None)), E.TOKEN_CLAIM_MISSING, UNAUTHORIZED),
    (
        "tenant with a dot",
        lambda k: hs(payload(tenant="acme.globex")),
        E.TOKEN_CLAIM_INVALID,
        UNAUTHORIZED,
    ),
    ("tenant with a star", lambda k: hs(payload(tenant="*")), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("tenant with >", lambda k: hs(payload(tenant="acme>")), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("tenant not a string", lambda k: hs(payload(tenant=7)), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    ("no sub", lambda k: hs(payload(sub=None)), E.TOKEN_CLAIM_MISSING, UNAUTHORIZED),
    ("sub with a space", lambda k: hs(payload(sub="al ice")), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    (
        "roles not an array",
        lambda k: hs(payload(roles="admin")),
        E.TOKEN_CLAIM_INVALID,
        UNAUTHORIZED,
    ),
    ("role with a dot", lambda k: hs(payload(roles=["a.b"])), E.TOKEN_CLAIM_INVALID, UNAUTHORIZED),
    (
        "room pattern with a dot",
        lambda k: hs(payload(rooms=["site.*"])),
        E.TOKEN_CLAIM_INVALID,
        UNAUTHORIZED,
    ),
    (
        "room pattern with >",
        lambda k: hs(payload(rooms=[">"])),
        E.TOKEN_CLAIM_INVALID,
        UNAUTHORIZED,
    ),
]


@pytest.mark.parametrize(
    ("make", "code", "close"),
    [pytest.param(make, code, close, id=name) for name, make, code, close in BAD_TOKENS],
)
async def test_a_bad_token_is_refused_with_its_code(
    verifier: Verifier, keys: Keys, make: Callable[[Keys], Any], code: ErrorCode, close: CloseCode
) -> None:
    with pytest.raises(AuthError) as info:
        await verifier.verify(make(keys))
    assert info.value.code == code.value, info.value
    assert info.value.code is code
    assert info.value.code.close_code == close
    assert info.value.http_status == 401


async def test_hs256_signed_with_the_public_key_is_refused_when_only_rs256_is_allowed(
    rs_only: Verifier, keys: Keys
) -> None:
    assert rs_only.algorithms == {"RS256"}
    with pytest.raises(AuthError) as info:
        await rs_only.verify(hs256_with(keys.rsa_public_pem, payload()))
    assert info.value.code is ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED
    assert info.value.code.close_code == CloseCode.UNAUTHORIZED


async def test_an_rs256_header_on_an_es256_signature_does_not_verify(
    verifier: Verifier, keys: Keys
) -> None:
    good = jwt.encode(payload(), keys.ec_key, algorithm="ES256")
    _header, body, sig = good.split(".")
    rs256 = b64(b'{"alg":"RS256","typ":"JWT"}')
    forged = f"{rs256}.{body}.{sig}"
    with pytest.raises(AuthError) as info:
        await verifier.verify(forged)
    assert info.value.code is ErrorCode.TOKEN_INVALID_SIGNATURE


# --- rooms the token does not allow ------------------------------------------------------


@pytest.mark.parametrize("room", ["room:hq", "room:sitex", "user:bob", "role:auditor"])
async def test_a_room_the_token_does_not_allow_is_forbidden(verifier: Verifier, room: str) -> None:
    claims = await verifier.verify(hs(payload()))  # rooms ["site-*"], role admin, user alice
    with pytest.raises(Forbidden) as info:
        claims.authorize(Audience.from_room(room))
    assert info.value.code == "forbidden"
    assert info.value.code.close_code == CloseCode.FORBIDDEN
    assert info.value.http_status == 403
    assert room in info.value.reason


@pytest.mark.parametrize(
    "room", ["tenant", "broadcast", "user:alice", "role:admin", "room:site-berlin", "room:site-"]
)
async def test_rooms_the_token_allows(verifier: Verifier, room: str) -> None:
    claims = await verifier.verify(hs(payload()))
    audience = Audience.from_room(room)
    assert claims.authorize(audience) is audience


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        (["*"], "anything-at-all", True),
        (["site-*"], "site-berlin", True),
        (["site-*"], "hq", False),
        (["site-*"], "xsite-berlin", False),
        (["*-berlin"], "site-berlin", True),
        (["a*b*c"], "a-x-b-y-c", True),
        (["a*b*c"], "a-x-b-y-d", False),
        (["exact"], "exact", True),
        (["exact"], "exactly", False),
        (["hq", "site-*"], "hq", True),
        ([], "hq", False),
        (["*"], "site.berlin", False),  # not a room name at all
        (["*"], "room:site", False),  # the wire form, not a name
        (["*"], "", False),
    ],
)
def test_may_join_matches_star_patterns(patterns: list[str], name: str, allowed: bool) -> None:
    assert Claims("acme", "alice", room_patterns=tuple(patterns)).may_join(name) is allowed


@pytest.mark.parametrize("pattern", ["site.*", "site?", "[ab]", "", "x" * 65, "room:x", "a b"])
def test_a_room_pattern_is_validated(pattern: str) -> None:
    with pytest.raises(TokenClaimInvalid):
        Claims("acme", "alice", room_patterns=(pattern,))


@pytest.mark.parametrize(
    ("tenant", "user", "roles"),
    [("a.b", "alice", ()), ("*", "alice", ()), ("acme", "al>ce", ()), ("acme", "alice", ("r.x",))],
)
def test_claims_ids_are_checked(tenant: str, user: str, roles: tuple[str, ...]) -> None:
    with pytest.raises(InvalidField):
        Claims(tenant, user, frozenset(roles))


def test_claims_are_frozen_and_know_their_default_rooms() -> None:
    c = Claims("acme", "alice", frozenset({"b", "a"}), ("site-*",), expires_at=1000.0)
    assert c.default_rooms == ("tenant", "user:alice", "role:a", "role:b", "broadcast")
    assert c.expires_in(now=400.0) == 600.0
    assert Claims("acme", "alice").expires_in() is None
    with pytest.raises(AttributeError):
        c.tenant = "globex"  # type: ignore[misc]
    assert c == Claims("acme", "alice", frozenset({"a", "b"}), ("site-*",), 1000.0)


def test_a_refresh_must_keep_tenant_and_user() -> None:
    old = Claims("acme", "alice", frozenset({"admin"}))
    new = Claims("acme", "alice", frozenset())
    assert old.ensure_same_identity(new) is new
    for other in (Claims("globex", "alice"), Claims("acme", "bob")):
        with pytest.raises(IdentityChanged) as info:
            old.ensure_same_identity(other)
        assert info.value.code == "identity_changed"
        assert info.value.code.close_code == CloseCode.FORBIDDEN


# --- good tokens -------------------------------------------------------------------------


async def test_a_good_hs256_token(verifier: Verifier) -> None:
    exp = int(time.time()) + 600
    claims = await verifier.verify(hs(payload(exp=exp, roles=["admin", "ops", "admin"])))
    assert claims == Claims("acme", "alice", frozenset({"admin", "ops"}), ("site-*",), float(exp))


async def test_a_good_rs256_token(verifier: Verifier, keys: Keys) -> None:
    claims = await verifier.verify(jwt.encode(payload(), keys.rsa_key, algorithm="RS256"))
    assert (claims.tenant, claims.user) == ("acme", "alice")


async def test_a_good_es256_token(keys: Keys) -> None:
    s = settings(keys, jwt_secret=None, jwt_public_key_file=keys.ec_pem)
    assert s.algorithms == ["ES256"]
    async with Verifier(s) as v:
        claims = await v.verify(jwt.encode(payload(), keys.ec_key, algorithm="ES256"))
        assert claims.user == "alice"
        with pytest.raises(AuthError) as info:  # an RSA-signed token has no key here
            await v.verify(jwt.encode(payload(), keys.rsa_key, algorithm="RS256"))
        assert info.value.code is ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED


async def test_ps256_and_eddsa_when_allowed(keys: Keys, tmp_path: Path) -> None:
    async with Verifier(settings(keys, algorithms="RS256,PS256")) as v:
        assert (
            await v.verify(jwt.encode(payload(), keys.rsa_key, algorithm="PS256"))
        ).user == "alice"
    ed = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "ed.pem").write_bytes(pem_public(ed))  # type: ignore[arg-type]
    async with Verifier(
        settings(keys, jwt_secret=None, jwt_public_key_file=tmp_path / "ed.pem")
    ) as v:
        assert v.algorithms == {"EdDSA"}
        assert (await v.verify(jwt.encode(payload(), ed, algorithm="EdDSA"))).user == "alice"


async def test_a_certificate_file_works_as_the_public_key(keys: Keys, tmp_path: Path) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(keys.rsa_key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    async with Verifier(settings(keys, jwt_public_key_file=tmp_path / "cert.pem")) as v:
        assert (
            await v.verify(jwt.encode(payload(), keys.rsa_key, algorithm="RS256"))
        ).user == "alice"


async def test_leeway_accepts_small_clock_skew(keys: Keys) -> None:
    late = hs(payload(exp=int(time.time()) - 5))
    early = hs(payload(nbf=int(time.time()) + 5))
    async with Verifier(settings(keys, leeway="30s")) as v:
        await v.verify(late)
        await v.verify(early)


async def test_exp_can_be_optional(keys: Keys) -> None:
    async with Verifier(settings(keys, require_exp=False)) as v:
        assert (await v.verify(hs(payload(exp=None)))).expires_at is None


async def test_aud_and_iss_are_not_checked_when_not_configured(keys: Keys) -> None:
    async with Verifier(settings(keys, audience=None, issuer=None)) as v:
        claims = await v.verify(hs(payload(aud="whatever", iss="whoever")))
        assert claims.tenant == "acme"


async def test_aud_may_be_a_list(verifier: Verifier) -> None:
    assert (await verifier.verify(hs(payload(aud=["other", AUDIENCE])))).user == "alice"


async def test_claim_names_are_configurable(keys: Keys) -> None:
    s = settings(
        keys,
        user_claim="uid",
        tenant_claim="https://acme.example/tenant",  # namespaced claims hold dots
        roles_claim="realm_access.roles",  # a nested claim (Keycloak)
        rooms_claim="allowed_rooms",
    )
    body = payload(sub="ignored.sub-with-dot", tenant=None, roles=None, rooms=None)
    body |= {
        "uid": "bob",
        "https://acme.example/tenant": "globex",
        "realm_access": {"roles": ["auditor"]},
        "allowed_rooms": ["hq"],
    }
    async with Verifier(s) as v:
        claims = await v.verify(hs(body))
        assert claims == Claims("globex", "bob", frozenset({"auditor"}), ("hq",), claims.expires_at)
        with pytest.raises(AuthError) as info:
            await v.verify(hs(payload()))  # the default names are not read any more
        assert info.value.code is ErrorCode.TOKEN_CLAIM_MISSING
        assert info.value.field == "https://acme.example/tenant"  # the tenant comes first


async def test_the_missing_claim_is_named(verifier: Verifier) -> None:
    with pytest.raises(AuthError) as info:
        await verifier.verify(hs(payload(tenant=None)))
    assert info.value.field == "tenant"
    assert "tenant" in info.value.reason


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("TIDINGS_AUTH_JWT_SECRET", "short", "at least 32"),
        ("TIDINGS_AUTH_JWT_SECRET", "-----BEGIN PUBLIC KEY-----" + "x" * 40, "looks like a key"),
        ("TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem", "not a readable file"),
        ("TIDINGS_AUTH_JWKS_URL", "ftp://idp/jwks", "not an http(s) URL"),
        ("TIDINGS_AUTH_ALGORITHMS", "none", "never allowed"),
        ("TIDINGS_AUTH_ALGORITHMS", "HS256,XS999", "not one of"),
        ("TIDINGS_AUTH_ALGORITHMS", "RS256", "no configured key can verify it"),
        ("TIDINGS_AUTH_LEEWAY", "a while", "not a duration"),
        ("TIDINGS_AUTH_TENANT_CLAIM", "", "at least 1 character"),
    ],
)
def test_a_bad_auth_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv("TIDINGS_AUTH_JWT_SECRET", SECRET)
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{var}: " in str(info.value)
    assert needle in str(info.value)


def test_a_bad_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    (tmp_path / "weak.pem").write_bytes(pem_public(weak))
    for name, needle in (("junk.pem", "no PEM public key"), ("weak.pem", "1024 bits")):
        with pytest.raises(ValueError, match=needle):
            AuthSettings(jwt_public_key_file=tmp_path / name)


def test_algorithms_are_derived_from_the_key_sources(keys: Keys) -> None:
    assert AuthSettings(jwt_secret=SecretStr(SECRET)).algorithms == ["HS256"]
    assert settings(keys).algorithms == ["HS256", "RS256"]
    assert AuthSettings(jwt_public_key_file=keys.ec_pem).algorithms == ["ES256"]
    assert AuthSettings(jwks_url="https://idp/jwks").algorithms == ["RS256", "ES256"]
    explicit = AuthSettings(jwks_url="https://idp/jwks", algorithms=["ES256", "ES256"])
    assert explicit.algorithms == ["ES256"]


def test_the_env_loads_auth_settings(monkeypatch: pytest.MonkeyPatch, keys: Keys) -> None:
    monkeypatch.setenv("TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE", str(keys.rsa_pem))
    monkeypatch.setenv("TIDINGS_AUTH_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("TIDINGS_AUTH_ROLES_CLAIM", "groups")
    s = load_settings().auth
    assert (s.algorithms, s.audience, s.roles_claim, s.issuer) == (
        ["RS256"],
        AUDIENCE,
        "groups",
        None,
    )


def test_a_verifier_needs_a_key_source() -> None:
    s = load_settings().auth  # without keys the other services still load their settings
    assert not s.configured
    with pytest.raises(ConfigError) as info:
        Verifier(s)
    assert "TIDINGS_AUTH_JWT_SECRET" in str(info.value)
    assert "TIDINGS_AUTH_JWKS_URL" in str(info.value)


def test_the_secret_is_not_shown() -> None:
    assert SECRET not in repr(AuthSettings(jwt_secret=SecretStr(SECRET)))


# --- minting -----------------------------------------------------------------------------


async def test_mint_token_keeps_working_for_dev(keys: Keys) -> None:
    token = mint_token(SECRET, tenant="acme", user="alice", roles=["ops"], rooms=["site-*"])
    s = AuthSettings(jwt_secret=SecretStr(SECRET), audience=DEV_AUDIENCE, issuer=DEV_ISSUER)
    async with Verifier(s) as v:
        claims = await v.verify(token)
    assert claims.roles == {"ops"}
    assert claims.may_join("site-1")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


async def test_mint_token_signs_rs256_and_es256_with_a_kid(keys: Keys) -> None:
    rs = mint_token(keys.rsa_key, tenant="acme", user="alice", algorithm="RS256", kid="k1")
    assert jwt.get_unverified_header(rs) == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    es = mint_token(keys.ec_key, tenant="acme", user="alice", algorithm="ES256")
    async with Verifier(settings(keys, audience=DEV_AUDIENCE, issuer=DEV_ISSUER)) as v:
        assert (await v.verify(rs)).user == "alice"
    ec_settings = settings(
        keys, jwt_public_key_file=keys.ec_pem, audience=DEV_AUDIENCE, issuer=DEV_ISSUER
    )
    async with Verifier(ec_settings) as v:
        assert (await v.verify(es)).user == "alice"


def test_mint_token_claims_override_and_remove() -> None:
    token = mint_token(SECRET, tenant="acme", user="alice", claims={"tenant": None, "org": "x"})
    body = jwt.decode(token, options={"verify_signature": False})
    assert "tenant" not in body
    assert body["org"] == "x"
    with pytest.raises(InvalidField):
        mint_token(SECRET, tenant="a.b", user="alice")


def test_every_auth_error_has_a_row_in_the_wire_table() -> None:
    for cls in AUTH_ERRORS:
        assert ErrorCode(cls.code) is cls.code
        assert cls.code.close_code in CloseCode
    expired = [cls for cls in AUTH_ERRORS if cls.code.close_code == CloseCode.TOKEN_EXPIRED]
    assert [cls.code for cls in expired] == [ErrorCode.TOKEN_EXPIRED]


def test_the_key_checks_are_a_leaf_that_settings_imports() -> None:
    """settings checks key files and the alg allow-list at load time by importing
    ``tidings.auth.keys``; neither that leaf nor the rest of auth may import settings back."""
    auth_dir = Path(tidings.auth.__file__).parent

    def tidings_imports(path: Path) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        return {name for name in found if name.split(".")[0] == "tidings"}

    assert tidings_imports(auth_dir / "keys.py") <= {"tidings.errors", "tidings.codes"}
    for module in auth_dir.glob("*.py"):
        assert "tidings.settings" not in tidings_imports(module), module.name


# --- TIDINGS_AUTH_MAX_TOKEN_LIFETIME (issue 14 item 3) -----------------------------------------

WEEK = 7 * 86400


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        (lambda now: {"exp": now + WEEK}, True),  # exactly the bound (exp - iat)
        (lambda now: {"exp": now + WEEK + 1}, False),  # one second over
        (lambda now: {"iat": now - WEEK, "exp": now + 60}, False),  # exp - iat too long
        (lambda now: {"iat": None, "exp": now + WEEK + 60}, False),  # no iat: exp - now counts
        (lambda now: {"iat": None, "exp": now + 3600}, True),
        (lambda now: {"exp": now + 315360000}, False),  # ten years
    ],
)
async def test_a_token_living_longer_than_the_bound_is_refused_naming_exp(
    keys: Keys, changes: Callable[[int], dict[str, Any]], accepted: bool
) -> None:
    body = payload(**changes(int(time.time())))
    async with Verifier(settings(keys)) as v:
        if accepted:
            await v.verify(hs(body))
            return
        with pytest.raises(TokenClaimInvalid) as caught:
            await v.verify(hs(body))
    assert caught.value.field == "exp"
    assert "TIDINGS_AUTH_MAX_TOKEN_LIFETIME" in str(caught.value)


async def test_a_lifetime_bound_of_zero_accepts_a_decade(keys: Keys) -> None:
    body = payload(exp=int(time.time()) + 315360000)
    async with Verifier(settings(keys, max_token_lifetime=0)) as v:
        assert (await v.verify(hs(body))).user == "alice"


async def test_holders_of_the_same_roles_share_one_role_set(verifier: Verifier) -> None:
    """A gateway keeps a Claims per connection: the same roles are one frozenset, not one per
    connection (an empty one alone is 216 bytes); the rule reads them the same."""
    alice = await verifier.verify(hs(payload()))
    bob = await verifier.verify(hs({**payload(), "sub": "bob", "roles": ["admin"]}))
    assert alice.roles == bob.roles == {"admin"} and alice.roles is bob.roles
    no_roles = [await verifier.verify(hs({**payload(), "sub": u, "roles": []})) for u in "cd"]
    assert no_roles[0].roles is no_roles[1].roles
    assert not no_roles[0].allows(Audience.from_room("role:admin"))
    assert bob.allows(Audience.from_room("role:admin"))
