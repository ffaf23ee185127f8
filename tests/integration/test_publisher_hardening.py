"""Issue 14 item 7 at the producing side, against a real sidecar process and nats-server.

- An integer beyond 64 bits in ``data`` is refused (``invalid_field`` naming its path) by the
  sidecar and by the SDK, instead of being stored as a float (sidecar) or raising a bare
  ``TypeError`` (SDK); 64-bit extremes are stored exactly, digits inside strings are untouched.
- The sidecar refuses to start without a bearer token when it listens beyond loopback, with a
  message naming the variables; a token, loopback, or an explicit
  ``TIDINGS_PUBLISHER_ALLOW_ANONYMOUS`` starts it.
- The SDK refuses a broadcast unless given the right, as the sidecar does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nats.js import JetStreamContext

from tests.support.publisher_process import PublisherProcess, provision, stored_messages
from tidings.client import Publisher
from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification
from tidings.errors import Forbidden, InvalidField
from tidings.ports import free_port

BODY = {"tenant": "acme", "event": "incident.created", "title": "t", "message": "m"}


@pytest.fixture
async def sidecar(nats_server: EmbeddedNats, tmp_path: Path) -> Any:
    await provision(nats_server.url)
    proc = PublisherProcess(
        {"TIDINGS_NATS_URLS": nats_server.url, "TIDINGS_PUBLISHER_OUTBOX_DIR": str(tmp_path / "o")},
        log_file=tmp_path / "publisher.log",
    ).start()
    try:
        await proc.wait_healthy()
        yield proc
    finally:
        proc.stop()


def raw_body(data_json: bytes) -> bytes:
    return orjson.dumps(BODY)[:-1] + b',"data":' + data_json + b"}"


@pytest.mark.parametrize(
    ("data_json", "field"),
    [
        (b'{"big": 18446744073709551616}', "data.big"),  # 2**64
        (b'{"a": {"b": [1, -9223372036854775809]}}', "data.a.b[1]"),  # -(2**63) - 1
        (b'{"n": 123456789012345678901234567890}', "data.n"),
    ],
)
async def test_the_sidecar_refuses_an_integer_beyond_64_bits_naming_it(
    sidecar: PublisherProcess, nats_server: EmbeddedNats, data_json: bytes, field: str
) -> None:
    async with httpx.AsyncClient(base_url=sidecar.url, timeout=5) as http:
        headers = {"Content-Type": "application/json"}
        r = await http.post("/v1/notifications", content=raw_body(data_json), headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_field"
        assert r.json()["error"]["field"] == field
        batch = b'{"notifications": [' + orjson.dumps(BODY) + b"," + raw_body(data_json) + b"]}"
        r = await http.post("/v1/notifications/batch", content=batch, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == f"notifications[1].{field}"
    assert await stored_messages(nats_server.url) == []


async def test_64_bit_extremes_and_long_digit_strings_are_stored_exactly(
    sidecar: PublisherProcess, nats_server: EmbeddedNats
) -> None:
    data = b'{"max":18446744073709551615,"min":-9223372036854775808,"s":"123456789012345678901234"}'
    async with httpx.AsyncClient(base_url=sidecar.url, timeout=5) as http:
        r = await http.post(
            "/v1/notifications",
            content=raw_body(data),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 202, r.text
    [stored] = await stored_messages(nats_server.url)
    assert Notification.from_bytes(stored.data or b"").data == data


async def test_the_sdk_refuses_an_integer_beyond_64_bits_naming_it(js: JetStreamContext) -> None:
    pub = Publisher(js)
    with pytest.raises(InvalidField) as caught:
        await pub.publish({**BODY, "data": {"order": {"id": 2**64}}})
    assert caught.value.field == "data.order.id"
    ok = await pub.publish({**BODY, "data": {"id": 2**64 - 1}})
    assert ok.seq == 1


async def test_the_sdk_needs_the_right_to_broadcast(js: JetStreamContext) -> None:
    body = {**BODY, "audience": {"broadcast": True}}
    del body["tenant"]
    with pytest.raises(Forbidden):
        await Publisher(js).publish(body)
    assert (await Publisher(js, allow_broadcast=True).publish(body)).seq == 1


def run_sidecar(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    full |= {"TIDINGS_PUBLISHER_OUTBOX_DIR": str(tmp_path / "o"), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "tidings.publisher"],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_the_sidecar_beyond_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    proc = run_sidecar(
        {"TIDINGS_PUBLISHER_HOST": "0.0.0.0", "TIDINGS_PUBLISHER_PORT": str(port)}, tmp_path
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    text = out.decode()
    assert "TIDINGS_PUBLISHER_TOKEN is not set" in text
    assert "TIDINGS_PUBLISHER_ALLOW_ANONYMOUS" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "extra",
    [{"TIDINGS_PUBLISHER_TOKEN": "s3cret-token"}, {"TIDINGS_PUBLISHER_ALLOW_ANONYMOUS": "true"}],
    ids=["token", "anonymous-on-purpose"],
)
async def test_the_sidecar_beyond_loopback_starts_with_a_token_or_on_purpose(
    nats_server: EmbeddedNats, tmp_path: Path, extra: dict[str, str]
) -> None:
    proc = PublisherProcess(
        {
            "TIDINGS_NATS_URLS": nats_server.url,
            "TIDINGS_PUBLISHER_HOST": "0.0.0.0",
            "TIDINGS_PUBLISHER_OUTBOX_DIR": str(tmp_path / "o"),
            **extra,
        },
        log_file=tmp_path / "publisher.log",
    ).start()
    try:
        await proc.wait_healthy()
    finally:
        proc.stop()
