"""Every NATS auth method and TLS (with a client certificate) against a real nats-server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidings.dev.embedded import EmbeddedNats
from tidings.errors import Unavailable
from tidings.nats import connect, ensure_stream
from tidings.settings import NatsSettings, StreamSettings


def server_with(tmp_path: Path, config: str) -> EmbeddedNats:
    conf = tmp_path / "nats.conf"
    conf.write_text(config)
    return EmbeddedNats(tmp_path / "data", config=conf)


@pytest.fixture
def secured(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmbeddedNats]:
    server = server_with(tmp_path, request.param).start()
    try:
        yield server
    finally:
        server.stop()


async def provisions(settings: NatsSettings) -> None:
    nc = await connect(settings, within=5)
    try:
        report = await ensure_stream(nc.jetstream(), StreamSettings())
        assert report.created
    finally:
        await nc.close()


async def refused(settings: NatsSettings, reason: str = "Authorization Violation") -> None:
    with pytest.raises(Unavailable) as info:
        await connect(settings, within=2)
    assert reason.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    "secured", ['authorization { user: svc, password: "s3cret-pw" }'], indirect=True
)
async def test_user_and_password(secured: EmbeddedNats) -> None:
    await provisions(NatsSettings(urls=[secured.url], user="svc", password="s3cret-pw"))
    await refused(NatsSettings(urls=[secured.url], user="svc", password="wrong", connect_timeout=1))


@pytest.mark.parametrize("secured", ['authorization { token: "tok-123456" }'], indirect=True)
async def test_token(secured: EmbeddedNats) -> None:
    await provisions(NatsSettings(urls=[secured.url], token="tok-123456"))
    await refused(NatsSettings(urls=[secured.url], token="nope", connect_timeout=1))


async def test_nkey_seed_file(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    other = tmp_path / "other.nk"
    other.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    with server_with(tmp_path, f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}') as s:
        await provisions(NatsSettings(urls=[s.url], nkey_seed_file=seed_file))
        await refused(NatsSettings(urls=[s.url], nkey_seed_file=other, connect_timeout=1))


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


async def test_tls_with_client_certificate(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("tidings-test-ca", ca_key, None, ca=True)
    _write(tmp_path / "ca", ca_key, ca)
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(tmp_path / name, key, _cert(name, key, (ca.subject, ca_key), server=server))
    config = f"""
    tls {{
      cert_file: "{tmp_path / "server.pem"}"
      key_file: "{tmp_path / "server.key"}"
      ca_file: "{tmp_path / "ca.pem"}"
      verify: true
    }}
    """
    with server_with(tmp_path, config) as s:
        url = f"tls://127.0.0.1:{s.port}"
        await provisions(
            NatsSettings(
                urls=[url],
                tls_ca_file=tmp_path / "ca.pem",
                tls_cert_file=tmp_path / "client.pem",
                tls_key_file=tmp_path / "client.key",
            )
        )
        # without the client certificate the server refuses the handshake
        await refused(
            NatsSettings(urls=[url], tls_ca_file=tmp_path / "ca.pem", connect_timeout=1),
            reason="cannot reach NATS",
        )
