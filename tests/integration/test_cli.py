"""The `tidings` command line, run as a user runs it: a real process, real nats-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType

from tidings.dev.embedded import EmbeddedNats
from tidings.envelope import Notification
from tidings.ports import free_port

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def tidings(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `python -m tidings ...` with no TIDINGS_* variables but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def decode(token: str, secret: str = SECRET) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], audience="tidings", issuer="tidings-dev"
    )
    return claims


# --- token ----------------------------------------------------------------------------------


def test_token_prints_only_the_token_with_the_requested_claims(tmp_path: Path) -> None:
    done = tidings(
        "token", "--tenant", "acme", "--user", "bob", "--role", "admin", "--role", "ops",
        "--room", "site-*", "--ttl", "2h", "--secret", SECRET,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    claims = decode(done.stdout.strip())
    assert claims["sub"] == "bob"
    assert claims["tenant"] == "acme"
    assert claims["roles"] == ["admin", "ops"]
    assert claims["rooms"] == ["site-*"]
    assert claims["exp"] == claims["iat"] + 7200  # type: ignore[operator]


def test_token_secret_comes_from_the_environment_then_the_dev_dir(tmp_path: Path) -> None:
    from_env = tidings(
        "token", "--tenant", "acme", "--user", "bob",
        cwd=tmp_path, env={"TIDINGS_AUTH_JWT_SECRET": SECRET},
    )  # fmt: skip
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stderr == ""
    assert decode(from_env.stdout.strip())["sub"] == "bob"

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "jwt-secret").write_text(SECRET[::-1] + "\n")
    from_dir = tidings("token", "--tenant", "acme", "--user", "eve", "--dir", "state", cwd=tmp_path)
    assert from_dir.returncode == 0, from_dir.stderr
    assert decode(from_dir.stdout.strip(), SECRET[::-1])["sub"] == "eve"


def test_token_follows_the_gateways_claim_settings(tmp_path: Path) -> None:
    env = {
        "TIDINGS_AUTH_TENANT_CLAIM": "org",
        "TIDINGS_AUTH_USER_CLAIM": "uid",
        "TIDINGS_AUTH_AUDIENCE": "acme-app",
        "TIDINGS_AUTH_ISSUER": "acme-idp",
    }
    done = tidings(
        "token", "--tenant", "acme", "--user", "bob", "--secret", SECRET, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(
        done.stdout.strip(), SECRET, algorithms=["HS256"], audience="acme-app", issuer="acme-idp"
    )
    assert (claims["org"], claims["uid"]) == ("acme", "bob")
    assert "tenant" not in claims
    assert "sub" not in claims


def test_token_refuses_a_secret_the_gateway_would_refuse(tmp_path: Path) -> None:
    done = tidings("token", "--tenant", "acme", "--user", "bob", "--secret", "short", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: secret: is 5 bytes; at least 32" in done.stderr
    short_env = tidings(
        "token", "--tenant", "acme", "--user", "bob",
        cwd=tmp_path, env={"TIDINGS_AUTH_JWT_SECRET": "short"},
    )  # fmt: skip
    assert short_env.returncode == 2
    assert "TIDINGS_AUTH_JWT_SECRET" in short_env.stderr


def test_token_without_any_secret_says_where_to_put_one(tmp_path: Path) -> None:
    done = tidings("token", "--tenant", "acme", "--user", "bob", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--secret" in done.stderr
    assert "TIDINGS_AUTH_JWT_SECRET" in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--tenant", "acme.eu", "tenant"),
        ("--role", "ad min", "role"),
        ("--room", "site.>", "room"),
        ("--ttl", "soon", "ttl"),
    ],
)
def test_token_refuses_bad_input_naming_the_field(
    tmp_path: Path, flag: str, value: str, field: str
) -> None:
    args = {"--tenant": "acme", "--user": "bob", flag: value}
    done = tidings(
        "token", *[x for kv in args.items() for x in kv], "--secret", SECRET, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"error: {field}:" in done.stderr
    assert "Traceback" not in done.stderr


# --- settings -------------------------------------------------------------------------------


def test_a_bad_setting_stops_every_command_naming_the_variable(tmp_path: Path) -> None:
    done = tidings("events", cwd=tmp_path, env={"TIDINGS_STREAM_REPLICAS": "zero"})
    assert done.returncode == 2
    assert "TIDINGS_STREAM_REPLICAS" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_an_unknown_variable_is_warned_about_once(tmp_path: Path) -> None:
    done = tidings("events", cwd=tmp_path, env={"TIDINGS_STREAM_MAXAGE": "1d"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("TIDINGS_STREAM_MAXAGE") == 1
    assert "incident.created" in done.stdout


def test_events_lists_the_catalogue_and_the_extras(tmp_path: Path) -> None:
    done = tidings("events", cwd=tmp_path, env={"TIDINGS_EVENTS_EXTRA": "billing.paid"})
    assert done.returncode == 0, done.stderr
    assert "incident.created" in done.stdout
    assert "An incident was reported." in done.stdout
    assert "billing.paid" in done.stdout


# --- nats init ------------------------------------------------------------------------------


def nats_env(server: EmbeddedNats, **extra: str) -> dict[str, str]:
    return {"TIDINGS_NATS_URLS": server.url, **extra}


async def test_nats_init_creates_the_stream_then_changes_nothing(
    tmp_path: Path, nats_server: EmbeddedNats, nc: NATS
) -> None:
    first = tidings("nats", "init", cwd=tmp_path, env=nats_env(nats_server))
    assert first.returncode == 0, first.stderr
    assert "TIDINGS created" in first.stdout
    info = await nc.jetstream().stream_info("TIDINGS")
    assert sorted(info.config.subjects or []) == ["broadcast.>", "tenant.>"]
    assert info.config.republish is not None
    assert (info.config.republish.src, info.config.republish.dest) == (">", "live.>")

    second = tidings("nats", "init", cwd=tmp_path, env=nats_env(nats_server))
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        first.stdout.splitlines()[0].replace("created", "unchanged")
    ]
    again = await nc.jetstream().stream_info("TIDINGS")
    assert again.created == info.created  # same stream, not recreated


async def test_nats_init_reports_and_applies_a_changed_retention(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    done = tidings(
        "nats", "init", cwd=tmp_path, env=nats_env(nats_server, TIDINGS_STREAM_MAX_AGE="1d")
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "max_age" in line)
    assert "7d" in row
    assert "1d" in row
    assert "changed" in row
    info = await js.stream_info("TIDINGS")
    assert info.config.max_age == 86400


async def test_nats_init_refuses_a_storage_change_and_says_what_to_do(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    done = tidings(
        "nats", "init", cwd=tmp_path, env=nats_env(nats_server, TIDINGS_STREAM_STORAGE="memory")
    )
    assert done.returncode == 3
    row = next(line for line in done.stdout.splitlines() if "storage" in line)
    assert "cannot change in place" in row
    assert "recreate the stream" in done.stderr
    assert "TIDINGS_STREAM_STORAGE=file" in done.stderr
    info = await js.stream_info("TIDINGS")
    assert info.config.storage == StorageType.FILE


async def test_nats_init_takes_the_server_from_url_or_from_a_running_dev_stack(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    # No TIDINGS_NATS_URLS: `--url` names the server; without it, dev.json of `tidings dev`.
    await js.delete_stream("TIDINGS")
    done = tidings("nats", "init", "--url", nats_server.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "TIDINGS created" in done.stdout
    await js.delete_stream("TIDINGS")
    dev_dir = tmp_path / ".tidings"
    dev_dir.mkdir()
    unused = f"nats://127.0.0.1:{free_port()}"
    info = {"nats": {"url": f"{nats_server.url},{unused}"}}  # a cluster's list, as dev writes it
    (dev_dir / "dev.json").write_text(orjson.dumps(info).decode())
    done = tidings("nats", "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "TIDINGS created" in done.stdout
    assert (await js.stream_info("TIDINGS")).config.name == "TIDINGS"


def test_nats_init_refuses_a_url_that_is_not_nats(tmp_path: Path) -> None:
    done = tidings("nats", "init", "--url", "http://127.0.0.1:4222", cwd=tmp_path)
    assert done.returncode == 2
    assert "url:" in done.stderr
    assert "is not a NATS URL" in done.stderr


def test_nats_init_without_a_server_fails_with_the_url(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    env = {"TIDINGS_NATS_URLS": url, "TIDINGS_NATS_CONNECT_TIMEOUT": "0.5"}
    done = tidings("nats", "init", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert f"cannot reach NATS at {url}" in done.stderr
    assert "Traceback" not in done.stderr


# --- publish via NATS (via HTTP is in test_dev.py, against `tidings dev`) -------------------


async def test_publish_via_nats_stores_the_notification(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    done = tidings(
        "publish", "--via", "nats", "--url", nats_server.url, "--tenant", "acme",
        "--event", "incident.created", "--title", "Spill", "--message", "Hall 3",
        "--user", "bob", "--severity", "warning", "--data", '{"incident_id": "INC-7"}',
        "--id", "cli-1",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = orjson.loads(done.stdout)
    assert answer == {"id": "cli-1", "seq": 1, "duplicate": False}
    stored = await js.get_msg("TIDINGS", 1)
    assert stored.subject == "tenant.acme.user.bob.incident.created"
    notification = Notification.from_bytes(stored.data or b"")
    assert (notification.title, notification.message) == ("Spill", "Hall 3")
    assert notification.data_object == {"incident_id": "INC-7"}


async def test_publish_via_nats_refuses_bad_input_and_stores_nothing(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    done = tidings(
        "publish", "--via", "nats", "--tenant", "acme", "--event", "incident.exploded",
        "--title", "x", "--message", "y",
        cwd=tmp_path, env=nats_env(nats_server),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert "event:" in done.stderr
    assert "unknown event type" in done.stderr
    info = await js.stream_info("TIDINGS")
    assert info.state.messages == 0


# --- gateway / publisher flags and --env-file ------------------------------------------------


def _serve_and_probe(args: list[str], cwd: Path, probes: list[str]) -> tuple[list[int], str]:
    """Start ``tidings <args>`` with no TIDINGS_* environment, wait until the first probe
    answers, GET every probe, stop it with SIGTERM; the statuses (0: nothing listened) and its
    stderr."""
    import signal
    import time

    import httpx

    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", *args],
        cwd=cwd,
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def status(url: str) -> int:
        try:
            return httpx.get(url, timeout=1).status_code
        except httpx.TransportError:
            return 0

    statuses = [0] * len(probes)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if status(probes[0]):
                statuses = [status(url) for url in probes]
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    return statuses, stderr


async def test_gateway_takes_an_env_file_and_flags_that_win_over_it(
    tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    port, api_port, file_port = free_port(), free_port(), free_port()
    env_file = tmp_path / "gateway.env"
    env_file.write_text(
        f"TIDINGS_AUTH_JWT_SECRET={SECRET}\n"
        f"TIDINGS_GATEWAY_PORT={file_port}\n"  # the --port flag wins over it
        f"TIDINGS_GATEWAY_API_PORT={api_port}\n"
        "TIDINGS_GATEWAY_DRAIN_SECONDS=0.5\n"
    )
    statuses, stderr = _serve_and_probe(
        ["gateway", "--env-file", str(env_file), "--nats-url", nats_server.url,
         "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        [
            f"http://127.0.0.1:{api_port}/healthz",  # the API port came from the file
            f"http://127.0.0.1:{port}/healthz",  # the data port from the flag
            f"http://127.0.0.1:{file_port}/healthz",  # not the file's data port
        ],
    )  # fmt: skip
    assert statuses == [200, 200, 0], stderr


def test_publisher_takes_flags_and_a_missing_env_file_is_a_clear_error(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    port = free_port()
    statuses, stderr = _serve_and_probe(
        ["publisher", "--nats-url", nats_server.url, "--port", str(port)],
        tmp_path,
        [f"http://127.0.0.1:{port}/healthz"],
    )
    assert statuses == [200], stderr
    done = tidings("publisher", "--env-file", str(tmp_path / "absent.env"), cwd=tmp_path)
    assert done.returncode == 2
    assert "--env-file: no such file" in done.stderr
