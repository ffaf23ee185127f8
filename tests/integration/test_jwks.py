"""JWKS: keys fetched over real HTTP, chosen by ``kid``, rotated, and an identity provider outage.

The key set is served by uvicorn + Starlette on a loopback port the fixture binds, like an
identity provider would serve it; the test changes what it serves and counts the fetches.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.wsclient import RawClient
from tidings.auth import Verifier, mint_token
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import AuthError, JwksUnavailable
from tidings.gateway.listener import MAX_QUEUED
from tidings.gateway.service import Gateway
from tidings.settings import AuthSettings, GatewaySettings, NatsSettings, Settings

AUDIENCE = "tidings-gateway"
ISSUER = "https://idp.example.test"


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        body = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        body = ECAlgorithm.to_jwk(public, as_dict=True)
    return {**body, "kid": kid, "use": "sig"}


@dataclass
class IdentityProvider:
    """What the HTTP server serves, and how often it was asked."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    fetches: int = 0
    delay: float = 0.0  # seconds before each answer (a slow identity provider)
    url: str = ""
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def handle(self, request: Request) -> Response:
        self.fetches += 1
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return PlainTextResponse("down for maintenance", status_code=self.status)
        return JSONResponse({"keys": self.keys})

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.task, timeout=10)
            self.server = None


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    app = Starlette(routes=[Route("/.well-known/jwks.json", provider.handle)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none")
    provider.server = uvicorn.Server(config)
    provider.task = asyncio.create_task(provider.server.serve(sockets=[sock]))
    provider.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    deadline = time.monotonic() + 10
    while not provider.server.started:
        assert time.monotonic() < deadline, "JWKS server did not start"
        await asyncio.sleep(0.01)
    try:
        yield provider
    finally:
        await provider.stop()
        sock.close()


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def verifier(idp: IdentityProvider, **changes: Any) -> Verifier:
    settings: dict[str, Any] = {"jwks_url": idp.url, "audience": AUDIENCE, "issuer": ISSUER}
    settings.update(changes)
    return Verifier(AuthSettings(**settings))


def token(key: Any, kid: str | None, *, algorithm: str = "RS256", user: str = "alice") -> str:
    return mint_token(
        key,
        tenant="acme",
        user=user,
        algorithm=algorithm,
        kid=kid,
        audience=AUDIENCE,
        issuer=ISSUER,
    )


async def refused(v: Verifier, tok: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        await v.verify(tok)
    return info.value


async def test_keys_are_chosen_by_kid_and_cached(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    idp.keys = [jwk(rsa_keys[0], "rsa-1"), jwk(ec_key, "ec-1"), jwk(rsa_keys[1], "rsa-2")]
    async with verifier(idp) as v:
        assert (await v.verify(token(rsa_keys[0], "rsa-1"))).user == "alice"
        assert (await v.verify(token(rsa_keys[1], "rsa-2", user="bob"))).user == "bob"
        assert (await v.verify(token(ec_key, "ec-1", algorithm="ES256"))).user == "alice"
        # Signed by key 1 but naming key 2: the kid picks the key, the signature fails.
        err = await refused(v, token(rsa_keys[0], "rsa-2"))
        assert err.code is ErrorCode.TOKEN_INVALID_SIGNATURE
        assert err.code.close_code == CloseCode.UNAUTHORIZED
        # An ES256 header naming an RSA key: the key does not fit the algorithm.
        err = await refused(v, token(ec_key, "rsa-1", algorithm="ES256"))
        assert err.code is ErrorCode.TOKEN_INVALID_SIGNATURE
    assert idp.fetches == 1, "the key set is fetched once and cached"


async def test_a_rotated_key_is_picked_up_on_an_unknown_kid(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    idp.keys = [jwk(rsa_keys[0], "2026-01")]
    async with verifier(idp, jwks_refetch_interval=0) as v:
        await v.verify(token(rsa_keys[0], "2026-01"))
        assert idp.fetches == 1
        new = token(rsa_keys[1], "2026-02")
        err = await refused(v, new)  # not published yet: refetched, still unknown
        assert err.code is ErrorCode.TOKEN_INVALID_SIGNATURE
        assert "2026-02" in err.reason
        assert idp.fetches == 2

        idp.keys = [jwk(rsa_keys[0], "2026-01"), jwk(rsa_keys[1], "2026-02")]  # rotation
        assert (await v.verify(new)).user == "alice"
        assert idp.fetches == 3
        await v.verify(token(rsa_keys[0], "2026-01"))  # the old key still works, from cache
        assert idp.fetches == 3


async def test_refetching_for_unknown_kids_is_rate_limited(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    idp.keys = [jwk(rsa_keys[0], "k1")]
    async with verifier(idp, jwks_refetch_interval=60) as v:
        await v.verify(token(rsa_keys[0], "k1"))
        made_up = [token(rsa_keys[2], f"made-up-{i}") for i in range(50)]
        results = await asyncio.gather(*(v.verify(t) for t in made_up), return_exceptions=True)
        assert all(
            isinstance(r, AuthError) and r.code is ErrorCode.TOKEN_INVALID_SIGNATURE
            for r in results
        )
        assert idp.fetches == 1, "within the interval an unknown kid does not refetch"


async def test_concurrent_unknown_kids_share_one_fetch(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    idp.keys = [jwk(rsa_keys[0], "k1")]
    async with verifier(idp, jwks_refetch_interval=60) as v:
        # Nothing cached yet: fifty hellos at once make one request to the identity provider.
        tokens = [token(rsa_keys[0], "k1", user=f"u{i}") for i in range(50)]
        claims = await asyncio.gather(*(v.verify(t) for t in tokens))
        assert {c.user for c in claims} == {f"u{i}" for i in range(50)}
    assert idp.fetches == 1


async def test_identity_provider_down_gives_jwks_unavailable(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    idp.keys = [jwk(rsa_keys[0], "k1")]
    await idp.stop()
    async with verifier(idp) as v:
        err = await refused(v, token(rsa_keys[0], "k1"))
        assert isinstance(err, JwksUnavailable)
        assert err.code == "jwks_unavailable"
        assert err.code.close_code == CloseCode.TRY_AGAIN_LATER  # the client retries with backoff
        assert err.http_status == 503
        assert "unavailable" in err.reason
        with pytest.raises(JwksUnavailable):
            await v.jwks.refresh()  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [500, 404])
async def test_an_error_answer_gives_jwks_unavailable(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey], status: int
) -> None:
    idp.status = status
    async with verifier(idp) as v:
        err = await refused(v, token(rsa_keys[0], "k1"))
        assert err.code is ErrorCode.JWKS_UNAVAILABLE
        assert f"HTTP {status}" in err.reason


async def test_known_keys_survive_an_outage_but_new_ones_cannot_be_checked(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    idp.keys = [jwk(rsa_keys[0], "k1")]
    # Cache expires at once, so every verify tries to refresh the key set.
    async with verifier(idp, jwks_cache_seconds=0, jwks_refetch_interval=0) as v:
        await v.verify(token(rsa_keys[0], "k1"))
        idp.status = 503
        fetched = idp.fetches
        assert (await v.verify(token(rsa_keys[0], "k1"))).user == "alice"
        assert idp.fetches > fetched, "it did try to refresh"
        err = await refused(v, token(rsa_keys[1], "k2"))
        assert err.code is ErrorCode.JWKS_UNAVAILABLE
        idp.status = 200
        idp.keys.append(jwk(rsa_keys[1], "k2"))
        assert (await v.verify(token(rsa_keys[1], "k2"))).user == "alice"


async def test_symmetric_keys_in_a_jwks_are_never_used(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey]
) -> None:
    secret = "published-by-mistake-but-long-enough!!"
    oct_key = {
        "kty": "oct",
        "kid": "sym",
        "k": jwt.utils.base64url_encode(secret.encode()).decode(),
    }
    idp.keys = [oct_key, jwk(rsa_keys[0], "k1")]
    async with verifier(idp, jwks_refetch_interval=60) as v:
        assert v.algorithms == {"RS256", "ES256"}
        hs = mint_token(
            secret, tenant="acme", user="eve", kid="sym", audience=AUDIENCE, issuer=ISSUER
        )
        assert (await refused(v, hs)).code is ErrorCode.TOKEN_ALGORITHM_NOT_ALLOWED
        forged = jwt.encode(
            {
                "sub": "eve",
                "tenant": "acme",
                "exp": int(time.time()) + 60,
                "aud": AUDIENCE,
                "iss": ISSUER,
            },
            rsa_keys[2],
            algorithm="RS256",
            headers={"kid": "sym"},
        )
        assert (await refused(v, forged)).code is ErrorCode.TOKEN_INVALID_SIGNATURE


async def test_a_token_without_kid_uses_the_only_fitting_key(
    idp: IdentityProvider, rsa_keys: list[rsa.RSAPrivateKey], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    idp.keys = [jwk(rsa_keys[0], "k1"), jwk(ec_key, "e1")]
    async with verifier(idp) as v:
        assert (await v.verify(token(rsa_keys[0], None))).user == "alice"
        idp.keys.append(jwk(rsa_keys[1], "k2"))
        await v.jwks.refresh()  # type: ignore[union-attr]
        err = await refused(v, token(rsa_keys[0], None))  # two RSA keys: which one?
        assert err.code is ErrorCode.TOKEN_INVALID_SIGNATURE


@asynccontextmanager
async def gateway_on(idp: IdentityProvider, nats: NatsSettings) -> AsyncIterator[Gateway]:
    auth = AuthSettings(jwks_url=idp.url, audience=AUDIENCE, issuer=ISSUER)
    listen = GatewaySettings(host="127.0.0.1", port=0, api_port=0, metrics_port=0)
    gw = Gateway(Settings(nats=nats, auth=auth, gateway=listen))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def send_all(client: RawClient, frames: list[dict[str, Any]]) -> None:
    """Frames written one after the other without waiting for any answer."""
    assert client.ws is not None
    for frame in frames:
        await client.ws.send(orjson.dumps(frame).decode())


async def test_frames_behind_a_hello_that_waits_for_the_key_set_are_answered_after_it(
    idp: IdentityProvider,
    rsa_keys: list[rsa.RSAPrivateKey],
    js: JetStreamContext,
    nats_settings: NatsSettings,
) -> None:
    """The hello's token check waits for a slow JWKS fetch; what the client sent right behind
    it waits too (in order), and a flood while it waits is refused instead of piling up."""
    idp.keys = [jwk(rsa_keys[0], "k1")]
    idp.delay = 0.5
    hello = {"type": "hello", "token": token(rsa_keys[0], "k1")}
    async with gateway_on(idp, nats_settings) as gw:
        async with RawClient(f"ws://127.0.0.1:{gw.port}/ws") as client:
            await send_all(client, [hello] + [{"type": "ping", "id": i} for i in (1, 2, 3)])
            kinds = [(await client.next(timeout=5))["type"] for _ in range(5)]
            assert kinds == ["welcome", "synced", "pong", "pong", "pong"]
            assert idp.fetches == 1  # the pings really waited for the fetch
        # A cold key cache again: more frames than may wait behind the hello.
        async with RawClient(f"ws://127.0.0.1:{gw.port}/ws") as flood:
            await gw.verifier.aclose()
            gw.verifier = Verifier(gw.settings.auth)
            assert gw.deps is not None
            gw.deps.verifier = gw.verifier  # what the sessions check tokens with
            pings = [{"type": "ping", "id": i} for i in range(MAX_QUEUED + 1)]
            await send_all(flood, [hello, *pings])
            first = await flood.next(timeout=5)  # refused while the hello still waits
            assert (first["type"], first["code"]) == ("error", "rate_limited")
            assert (await flood.closed())[0] == CloseCode.RATE_LIMITED
