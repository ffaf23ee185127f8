"""Auth matrix over a real WebSocket: every bad token is refused with its documented code.

The token matrix runs against a gateway *process* that verifies HS256 (secret) and RS256 (an
RSA public key file) with ``aud`` and ``iss`` required, next to good HS256 and RS256 tokens
that must pass; algorithm confusion is also tried against a gateway that knows only the RSA
key. The rest (hello timeout, first frame, expiry during the connection, refresh) runs on the
in-process gateway.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.js import JetStreamContext

from tests.support.gateway_process import GatewayProcess
from tests.support.tokens import JWT_SECRET
from tests.support.tokens import good_claims as claims
from tests.support.wsclient import RawClient, ws_url
from tidings.auth import DEV_AUDIENCE, DEV_ISSUER, mint_token
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.service import Gateway

Mint = Callable[..., str]
HELLO_TIMEOUT = 0.5
# The in-process gateway of this module requires ``aud``/``iss`` and a quick hello.
pytestmark = pytest.mark.settings(
    auth={"audience": DEV_AUDIENCE, "issuer": DEV_ISSUER},
    gateway={"hello_timeout": HELLO_TIMEOUT},
)


# --- hand-made tokens (PyJWT refuses to make these, which is the point) ---------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS built by hand: HMAC-SHA256 with ``key``, or no signature at all."""
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@dataclass(frozen=True)
class Keys:
    rsa_key: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    public_pem: bytes
    public_file: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "rsa-public.pem"
    path.write_bytes(pem)
    return Keys(key, other, pem, path)


def hs(**changes: Any) -> str:
    """An HS256 token with the gateway's secret (``claims`` overrides via ``changes``)."""
    return mint_token(JWT_SECRET, tenant="acme", user="alice", claims={**claims(), **changes})


def bad_tokens(keys: Keys) -> list[tuple[str, dict[str, Any], str, int]]:
    """(case, hello frame, error code, close code) — at least the issue's twelve, and more."""
    good_rs = mint_token(keys.rsa_key, tenant="acme", user="alice", algorithm="RS256")
    header, _, signature = good_rs.split(".")
    too_long = hs(padding="x" * 9000)

    def hello(token: Any, **extra: Any) -> dict[str, Any]:
        return {"type": "hello", "token": token, **extra}

    return [
        ("no token", {"type": "hello"}, "token_missing", 4001),
        ("empty token", hello(""), "token_missing", 4001),
        ("garbage", hello("not-a-jwt"), "token_malformed", 4001),
        ("three garbage segments", hello("a.b.c"), "token_malformed", 4001),
        ("token is a number", hello(42), "invalid_field", 4000),
        ("longer than 8 KiB", hello(too_long), "token_malformed", 4001),
        (
            "alg none",
            hello(raw_token({"alg": "none", "typ": "JWT"}, claims(), None)),
            "token_algorithm_not_allowed",
            4001,
        ),
        (
            "alg None",
            hello(raw_token({"alg": "None", "typ": "JWT"}, claims(), None)),
            "token_algorithm_not_allowed",
            4001,
        ),
        (
            "HS256 signed with the RS256 public key",
            hello(raw_token({"alg": "HS256", "typ": "JWT"}, claims(), keys.public_pem)),
            "token_invalid_signature",
            4001,
        ),
        (
            "HS256 with another secret",
            hello(mint_token("another-secret-0123456789abcdef-xyz", tenant="acme", user="alice")),
            "token_invalid_signature",
            4001,
        ),
        (
            "RS256 with another key",
            hello(mint_token(keys.rsa_other, tenant="acme", user="alice", algorithm="RS256")),
            "token_invalid_signature",
            4001,
        ),
        (
            "RS256 header, payload swapped",
            hello(f"{header}.{_b64(orjson.dumps(claims(tenant='globex')))}.{signature}"),
            "token_invalid_signature",
            4001,
        ),
        (
            "HS512 not on the allow-list",
            hello(
                mint_token(JWT_SECRET + "x" * 32, tenant="acme", user="alice", algorithm="HS512")
            ),
            "token_algorithm_not_allowed",
            4001,
        ),
        ("expired", hello(hs(exp=int(time.time()) - 60)), "token_expired", 4401),
        ("nbf in the future", hello(hs(nbf=int(time.time()) + 600)), "token_not_yet_valid", 4001),
        ("iat in the future", hello(hs(iat=int(time.time()) + 600)), "token_not_yet_valid", 4001),
        ("wrong aud", hello(hs(aud="someone-else")), "token_bad_audience", 4001),
        ("no aud", hello(hs(aud=None)), "token_bad_audience", 4001),
        ("wrong iss", hello(hs(iss="https://evil.example")), "token_bad_issuer", 4001),
        ("no iss", hello(hs(iss=None)), "token_bad_issuer", 4001),
        ("no tenant claim", hello(hs(tenant=None)), "token_claim_missing", 4001),
        ("no sub", hello(hs(sub=None)), "token_claim_missing", 4001),
        ("no exp", hello(hs(exp=None)), "token_claim_missing", 4001),
        ("tenant with a dot", hello(hs(tenant="acme.globex")), "token_claim_invalid", 4001),
        ("tenant *", hello(hs(tenant="*")), "token_claim_invalid", 4001),
        ("tenant >", hello(hs(tenant=">")), "token_claim_invalid", 4001),
        ("tenant acme.*", hello(hs(tenant="acme.*")), "token_claim_invalid", 4001),
        ("tenant with a space", hello(hs(tenant="acme x")), "token_claim_invalid", 4001),
        ("tenant not a string", hello(hs(tenant=7)), "token_claim_invalid", 4001),
        ("user with a dot", hello(hs(sub="alice.bob")), "token_claim_invalid", 4001),
        ("role with a wildcard", hello(hs(roles=["admin", "*"])), "token_claim_invalid", 4001),
        ("room pattern with a dot", hello(hs(rooms=["site.>"])), "token_claim_invalid", 4001),
        ("roles not an array", hello(hs(roles="admin")), "token_claim_invalid", 4001),
        (
            "a room the token does not allow",
            hello(hs(), rooms=["room:hq"]),
            "forbidden",
            4003,
        ),
        (
            "an allowed room next to a forbidden one",
            hello(hs(), rooms=["room:site-berlin", "room:secret"]),
            "forbidden",
            4003,
        ),
    ]


async def refused(url: str, hello: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, Any]]:
    """The error frame and the (close code, reason) a hello gets."""
    async with RawClient(url) as client:
        await client.send(hello)
        error = await client.next("error")
        return error, await client.closed()


async def welcomed(url: str, token: str) -> dict[str, Any]:
    async with RawClient(url) as client:
        return await client.hello(token, rooms=["room:site-berlin"])


async def test_every_bad_token_is_refused_with_its_code(
    nats_server: EmbeddedNats, js: JetStreamContext, keys: Keys, tmp_path: Path
) -> None:
    env = {
        "TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE": str(keys.public_file),
        "TIDINGS_AUTH_AUDIENCE": DEV_AUDIENCE,
        "TIDINGS_AUTH_ISSUER": DEV_ISSUER,
    }
    both = GatewayProcess(nats_server.url, log_file=tmp_path / "both.log", env=env, name="both")
    rsa_only = GatewayProcess(
        nats_server.url, log_file=tmp_path / "rsa.log", env=env, name="rsa-only", secret=None
    )
    try:
        both.start(), rsa_only.start()
        await asyncio.gather(both.wait_ready(), rsa_only.wait_ready())

        # The configuration works: good HS256 and RS256 tokens are welcome.
        good_rs = mint_token(
            keys.rsa_key, tenant="acme", user="alice", rooms=["site-*"], algorithm="RS256"
        )
        for token in (hs(), good_rs):
            welcome = await welcomed(both.ws_url, token)
            assert (welcome["tenant"], welcome["user"]) == ("acme", "alice")
            assert "room:site-berlin" in welcome["rooms"]
        assert (await welcomed(rsa_only.ws_url, good_rs))["user"] == "alice"

        cases = bad_tokens(keys)
        assert len(cases) >= 12
        outcomes = await asyncio.gather(*(refused(both.ws_url, c[1]) for c in cases))
        for (case, _, code, close), (error, closed) in zip(cases, outcomes, strict=True):
            assert (error["code"], error["close"], closed) == (code, close, (close, code)), case
            assert isinstance(error["number"], int) and error["reason"], case

        # Algorithm confusion where HS256 is not even configured: refused by the allow-list.
        confused = raw_token({"alg": "HS256", "typ": "JWT"}, claims(), keys.public_pem)
        error, closed = await refused(rsa_only.ws_url, {"type": "hello", "token": confused})
        assert (error["code"], closed) == ("token_algorithm_not_allowed", (4001, error["code"]))
        error, closed = await refused(rsa_only.ws_url, {"type": "hello", "token": hs()})
        assert (error["code"], closed) == ("token_algorithm_not_allowed", (4001, error["code"]))

        # Still serving after all that.
        assert (await welcomed(both.ws_url, hs()))["tenant"] == "acme"
        assert both.running and rsa_only.running
        assert "Traceback" not in both.log(), both.log()
    finally:
        await asyncio.gather(both.stop(), rsa_only.stop())


async def test_no_hello_in_time_is_closed_with_4008(gateway: Gateway) -> None:
    async with RawClient(ws_url(gateway)) as client:
        began = time.monotonic()
        error = await client.next("error", timeout=HELLO_TIMEOUT + 5)
        assert (error["code"], error["close"]) == ("hello_timeout", 4008)
        assert await client.closed() == (4008, "hello_timeout")
        assert HELLO_TIMEOUT * 0.9 <= time.monotonic() - began < HELLO_TIMEOUT + 3


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"type": "ping", "id": 1}, "hello_required"),
        ({"type": "subscribe", "room": "room:site-berlin"}, "hello_required"),
        ({"type": "refresh", "token": "x"}, "hello_required"),
        ({"type": "helo", "token": "x"}, "unknown_type"),
        ({"token": "x"}, "missing_field"),
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        (b'{"type": "hello"}', "malformed"),  # a binary frame
        ({"type": "hello", "token": "x", "since": 5}, "missing_field"),  # since without epoch
        ({"type": "hello", "token": "x", "rooms": "room:a"}, "invalid_field"),
    ],
)
async def test_a_first_frame_that_is_not_a_valid_hello_is_refused_with_4000(
    gateway: Gateway, token: Mint, first: dict[str, Any] | str | bytes, code: str
) -> None:
    async with RawClient(ws_url(gateway)) as client:
        assert client.ws is not None
        if isinstance(first, bytes):
            await client.ws.send(first)
        else:
            await client.send(first)
        error = await client.next("error")
        assert (error["code"], error["close"]) == (code, 4000)
        assert await client.closed() == (4000, code)


def short_token(ttl: float, **kw: Any) -> str:
    """A token that expires ``ttl`` seconds from now (at least ``ttl - 1``)."""
    return mint_token(
        JWT_SECRET, tenant=kw.pop("tenant", "acme"), user=kw.pop("user", "alice"), ttl=ttl, **kw
    )


async def test_a_token_that_expires_without_refresh_closes_with_4401(
    gateway: Gateway, js: JetStreamContext
) -> None:
    pub = Publisher(js)
    url = ws_url(gateway)
    async with RawClient(url) as lapsing, RawClient(url) as refreshed:
        t = short_token(3)
        welcome = await lapsing.hello(t)
        exp = welcome["expires_at"]
        assert exp == jwt.decode(t, options={"verify_signature": False})["exp"]
        assert 0 < exp - time.time() <= 3
        await refreshed.hello(short_token(3))
        await lapsing.next("synced"), await refreshed.next("synced")
        await refreshed.send({"type": "refresh", "token": short_token(3600), "id": 1})
        answer = await refreshed.next("refreshed")
        assert answer["id"] == 1 and answer["expires_at"] > time.time() + 3000

        # Live until it expires...
        await pub.to_tenant("acme", "incident.created", title="before", message="m")
        assert (await lapsing.next("notification"))["title"] == "before"
        error = await lapsing.next("error", timeout=exp - time.time() + 3)
        assert (error["code"], error["close"]) == ("token_expired", 4401)
        assert time.time() >= exp - 0.05
        assert await lapsing.closed() == (4401, "token_expired")

        # ... while the refreshed one lives on and still receives.
        await pub.to_tenant("acme", "incident.created", title="after", message="m")
        got = await refreshed.notifications(2)
        assert [g["title"] for g in got] == ["before", "after"]
        await refreshed.send({"type": "ping", "id": 2})
        assert await refreshed.next("pong") == {"type": "pong", "id": 2}


async def test_a_refresh_for_another_identity_is_refused_and_changes_nothing(
    gateway: Gateway, js: JetStreamContext, token: Mint
) -> None:
    pub = Publisher(js)
    async with RawClient(ws_url(gateway)) as client:
        await client.hello(token(tenant="acme", user="alice"))
        await client.next("synced")
        attempts = [
            (token(tenant="acme", user="bob"), "identity_changed"),
            (token(tenant="globex", user="alice"), "identity_changed"),
            (hs(exp=int(time.time()) - 10), "token_expired"),
            (raw_token({"alg": "none"}, claims(), None), "token_algorithm_not_allowed"),
            ("garbage", "token_malformed"),
        ]
        for i, (new, code) in enumerate(attempts, start=10):
            await client.send({"type": "refresh", "token": new, "id": i})
            error = await client.next("error")
            assert (error["code"], error["id"]) == (code, i), error
            assert "close" not in error  # the current token still holds
        # Still alice of acme: bob's and globex's notifications do not arrive, alice's do.
        await pub.to_user("acme", "bob", "incident.created", title="for-bob", message="m")
        await pub.to_user("globex", "alice", "incident.created", title="globex", message="m")
        await pub.to_user("acme", "alice", "incident.created", title="for-alice", message="m")
        got = await client.notifications(1)
        assert [(g["title"], g["room"]) for g in got] == [("for-alice", "user:alice")]
        assert await client.quiet(0.3) == []
