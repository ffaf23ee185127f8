"""`tidings inbox api` as a user runs it: a child process configured by TIDINGS_* only, serving
its routes and probes, refusing a database without its schema in one line, and stopping
cleanly on SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.inbox_api import bearer
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import wait_until
from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port


def env_for(tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "TIDINGS_INBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
        "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
        **more,
    }


def test_the_api_process_serves_and_stops_cleanly(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    port = free_port()
    env = env_for(
        tmp_path,
        TIDINGS_INBOX_MIGRATE="true",
        TIDINGS_INBOX_API_PORT=str(port),
        TIDINGS_NATS_URLS=nats_server.url,
    )
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "inbox", "api"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as http:

            def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "api.log").read_text()
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=30, what="the inbox API to be ready")
            counts = http.get("/v1/inbox/counts", headers=bearer())
            assert counts.status_code == 200
            assert counts.json()["total"] == 0
            doc = http.get("/v1/inbox/openapi.json")
            assert doc.json()["openapi"] == "3.1.0"
            assert "tidings_inbox_api_requests_total" in http.get("/metrics").text
    finally:
        proc.terminate()
        code = proc.wait(15)
        log.close()
    assert code == 0, (tmp_path / "api.log").read_text()


def test_the_api_refuses_a_database_without_its_schema(tmp_path: Path) -> None:
    env = env_for(tmp_path, TIDINGS_INBOX_API_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "tidings", "inbox", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "the inbox database has no inbox schema" in done.stderr
    assert "Traceback" not in done.stderr
