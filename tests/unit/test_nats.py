"""tidings.nats: what the settings become on the wire, and provisioning against a real server.

``connect_options`` is checked field by field (every Tidings process connects through it);
``connect`` against a real nats-server: bounded when asked, callbacks on a server restart;
``ensure_stream`` converges a stream someone changed by hand, leaves fixed fields alone, and its
epoch changes only when the stream is recreated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

from tests.support.waiting import until
from tidings.codes import ErrorCode
from tidings.dev.embedded import EmbeddedNats
from tidings.errors import Unavailable
from tidings.nats import (
    ProvisionReport,
    connect,
    connect_options,
    desired_config,
    ensure_stream,
    stream_epoch,
    tls_context,
)
from tidings.ports import free_port
from tidings.settings import NatsSettings, StreamSettings


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate and its key, as files (for the TLS options)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# --- connect options -----------------------------------------------------------------------------


def test_plain_settings_reconnect_forever_to_every_url() -> None:
    settings = NatsSettings(
        urls=["nats://a:4222", "nats://b:4222"],
        name="gw-1",
        connect_timeout=1.5,
        reconnect_wait=0.3,
        ping_interval=0.5,
        max_outstanding_pings=3,
    )
    assert connect_options(settings) == {
        "servers": ["nats://a:4222", "nats://b:4222"],
        "name": "gw-1",
        "connect_timeout": 1.5,
        "reconnect_time_wait": 0.3,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "ping_interval": 0.5,
        "max_outstanding_pings": 3,
    }
    assert tls_context(settings) is None


def test_a_frozen_server_is_noticed_within_seconds_by_default() -> None:
    # nats-py's own defaults (120 s x 2) would hold a client on a frozen server for minutes.
    settings = NatsSettings()
    assert (settings.max_outstanding_pings + 1) * settings.ping_interval <= 3.0


def test_each_auth_method_becomes_its_own_option(tmp_path: Path) -> None:
    seed, creds = tmp_path / "user.nk", tmp_path / "user.creds"
    seed.write_text("SU...")
    creds.write_text("-----BEGIN NATS USER JWT-----")
    base = {"urls": ["nats://a:4222"]}
    cases = [
        ({"user": "svc", "password": "pw"}, {"user": "svc", "password": "pw"}),
        ({"token": "t0k"}, {"token": "t0k"}),
        ({"nkey_seed_file": seed}, {"nkeys_seed": str(seed)}),
        ({"creds_file": creds}, {"user_credentials": str(creds)}),
    ]
    auth_keys = {"user", "password", "token", "nkeys_seed", "user_credentials"}
    for given, expected in cases:
        opts = connect_options(NatsSettings(**base, **given))  # type: ignore[arg-type]
        assert {k: v for k, v in opts.items() if k in auth_keys} == expected, given


def test_a_tls_url_or_tls_file_turns_tls_on(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    by_url = connect_options(NatsSettings(urls=["tls://a:4222"]))
    assert isinstance(by_url["tls"], ssl.SSLContext)
    assert "tls_hostname" not in by_url
    by_ca = connect_options(
        NatsSettings(urls=["nats://a:4222"], tls_ca_file=cert, tls_hostname="nats.test")
    )
    assert isinstance(by_ca["tls"], ssl.SSLContext)
    assert by_ca["tls"].verify_mode == ssl.CERT_REQUIRED
    assert by_ca["tls_hostname"] == "nats.test"
    mutual = tls_context(NatsSettings(urls=["nats://a:4222"], tls_cert_file=cert, tls_key_file=key))
    assert isinstance(mutual, ssl.SSLContext)


def test_a_hostname_without_tls_is_not_sent() -> None:
    opts = connect_options(NatsSettings(urls=["nats://a:4222"], tls_hostname="nats.test"))
    assert "tls" not in opts
    assert "tls_hostname" not in opts


# --- connect -------------------------------------------------------------------------------------


async def test_a_bounded_connect_to_nothing_is_unavailable_naming_the_url() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    settings = NatsSettings(urls=[url], connect_timeout=0.2, reconnect_wait=0.1)
    with pytest.raises(Unavailable) as info:
        await connect(settings, within=1)
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert url in str(info.value)
    assert "within 1s" in str(info.value)


async def test_callbacks_follow_the_server_going_and_coming_back(
    nats_server: EmbeddedNats, nats_settings: NatsSettings
) -> None:
    seen: list[str] = []

    async def disconnected() -> None:
        seen.append("disconnected")

    async def reconnected() -> None:
        seen.append("reconnected")

    async def closed() -> None:
        seen.append("closed")

    nc = await connect(
        nats_settings,
        within=5,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        closed_cb=closed,
    )
    try:
        assert nc.is_connected
        await asyncio.to_thread(nats_server.stop)
        await until(lambda: "disconnected" in seen, what="the disconnect callback")
        await asyncio.to_thread(nats_server.start)
        await until(lambda: "reconnected" in seen, what="the reconnect callback", timeout=10)
        assert nc.is_connected
        await nc.flush(timeout=2)
    finally:
        await nc.close()
    await until(lambda: "closed" in seen, what="the closed callback")
    assert seen.index("disconnected") < seen.index("reconnected") < seen.index("closed")


# --- the stream ----------------------------------------------------------------------------------


def test_the_desired_stream_follows_the_settings() -> None:
    settings = StreamSettings(
        name="NOTES",
        replicas=3,
        storage="memory",
        max_age=3600,
        max_bytes=1 << 20,
        max_msg_size=4096,
        duplicate_window=60,
    )
    config = desired_config(settings)
    assert config.name == "NOTES"
    assert sorted(config.subjects or []) == ["broadcast.>", "tenant.>"]
    assert (config.retention, config.discard) == (RetentionPolicy.LIMITS, DiscardPolicy.OLD)
    assert config.storage == StorageType.MEMORY
    assert config.num_replicas == 3
    assert (config.max_age, config.max_bytes, config.max_msg_size) == (3600, 1 << 20, 4096)
    assert config.duplicate_window == 60
    assert config.allow_direct is True
    assert config.republish is not None
    assert (config.republish.src, config.republish.dest) == (">", "live.>")
    assert not config.republish.headers_only  # live subscribers read the body


def test_a_report_is_unchanged_only_when_nothing_happened() -> None:
    assert ProvisionReport(stream="S").unchanged
    assert not ProvisionReport(stream="S", created=True).unchanged
    assert not ProvisionReport(stream="S", changed={"max_age": (1.0, 2.0)}).unchanged
    assert not ProvisionReport(stream="S", conflicts={"storage": ("file", "memory")}).unchanged


async def test_hand_made_changes_are_put_back(nc: NATS) -> None:
    js = nc.jetstream()
    settings = StreamSettings()
    await ensure_stream(js, settings)
    info = await js.stream_info(settings.name)
    tampered = dataclasses.replace(
        info.config, subjects=["tenant.>"], republish=None, allow_direct=False
    )
    await js.update_stream(tampered)
    report = await ensure_stream(js, settings)
    assert set(report.changed) == {"subjects", "republish", "allow_direct"}
    assert report.changed["republish"] == (None, (">", "live.>", False))
    assert not report.conflicts
    restored = (await js.stream_info(settings.name)).config
    assert sorted(restored.subjects or []) == ["broadcast.>", "tenant.>"]
    assert restored.republish is not None and restored.allow_direct
    assert (await ensure_stream(js, settings)).unchanged


async def test_a_conflict_alone_updates_nothing(js: JetStreamContext) -> None:
    report = await ensure_stream(js, StreamSettings(storage="memory"))
    assert report.conflicts == {"storage": ("file", "memory")}
    assert report.changed == {}
    assert not report.unchanged
    info = await js.stream_info("TIDINGS")
    assert info.config.storage == StorageType.FILE


async def test_the_epoch_is_the_creation_time_and_changes_only_on_recreation(
    js: JetStreamContext,
) -> None:
    info = await js.stream_info("TIDINGS")
    assert info.created is not None
    epoch = stream_epoch(info)
    assert epoch == format(int(info.created.timestamp() * 1_000_000), "x")
    assert stream_epoch(dataclasses.replace(info, created=None)) == ""
    updated = await ensure_stream(js, StreamSettings(max_age=3600))
    assert updated.changed and updated.epoch == epoch  # an update keeps the stream's identity
    await js.delete_stream("TIDINGS")
    recreated = await ensure_stream(js, StreamSettings())
    assert recreated.created
    assert recreated.epoch and recreated.epoch != epoch


def test_each_service_gets_its_own_reply_prefix_unless_the_settings_say_otherwise() -> None:
    from tidings.nats import connect_options

    plain = NatsSettings()
    assert connect_options(plain, service="gateway")["inbox_prefix"] == "_INBOX_gateway"
    assert connect_options(plain, service="publisher")["inbox_prefix"] == "_INBOX_publisher"
    assert "inbox_prefix" not in connect_options(plain)  # nats-py's own _INBOX
    chosen = NatsSettings(inbox_prefix="_INBOX_custom")
    assert connect_options(chosen, service="gateway")["inbox_prefix"] == "_INBOX_custom"
