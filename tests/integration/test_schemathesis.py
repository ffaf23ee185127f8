"""schemathesis against the OpenAPI documents the services serve (issue 14, fuzzing).

Real servers: the publisher sidecar as a process (``python -m tidings.publisher``, bearer token
on) with a real nats-server; the inbox API as a process (``tidings inbox api``) on SQLite and on
the PostgreSQL fixture server; the gateway's API port (status and admin APIs) as a process
(``tidings gateway``) on a real nats-server, once with the operator key and once with a tenant
admin's JWT, each on a gateway and nats-server of its own (so what one run revokes cannot touch the
other's credential). Each operation of each document gets at most ``EXAMPLES`` generated
requests (valid and invalid ones, schemathesis's defaults), and every answer is checked: never a
500 (``not_a_server_error``), the status code, content type and headers are documented, the body
conforms to the documented schema, and a request the document forbids is refused. The cost is
in CONTRIBUTING.md ("What CI costs").
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.gateway_process import GatewayProcess
from tests.support.inbox_api import bearer
from tests.support.postgres import PostgresServer
from tests.support.publisher_process import PublisherProcess, metric, provision
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import wait_until
from tidings.auth.minting import mint_token
from tidings.dev.embedded import EmbeddedNats
from tidings.gateway.openapi import EXAMPLE_TENANT
from tidings.ports import free_port

EXAMPLES = 40  # per operation: bounded so that the module fits CI (CONTRIBUTING.md)
REQUESTS = "tidings_publisher_requests_total"
SIDECAR_TOKEN = "sidecar-token-for-schemathesis-0123456789"
OPERATOR_KEY = "operator-key-for-schemathesis-0123456789"
ADMIN_ACTIONS = "tidings_gateway_admin_actions_total"
# The tenant admin: in the tenant the document's examples name (so its revokes and reads of its
# own tenant succeed), under a user name no example and no generated id is likely to hit (it may
# not revoke a whole tenant, so only naming itself could lock it out: checked at the end).
ADMIN_USER = "schemathesis-tenant-admin-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # a request the document forbids is refused (4xx), not served
]
# What counts as refusing a request the document forbids: schemathesis's list plus 413 (a body,
# a list or a text over its documented bound is `too_large`, as the error table says).
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                ]
            }
        }
    }
)
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure is reproducible
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def sidecar_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sidecar")
    server = EmbeddedNats(root / "nats").start()
    try:
        asyncio.run(provision(server.url))
        proc = PublisherProcess(
            {
                "TIDINGS_NATS_URLS": server.url,
                "TIDINGS_PUBLISHER_TOKEN": SIDECAR_TOKEN,
                "TIDINGS_PUBLISHER_OUTBOX_DIR": str(root / "outbox"),
                "TIDINGS_PUBLISHER_ALLOW_BROADCAST": "true",
            },
            log_file=root / "sidecar.log",
        ).start()
        try:
            asyncio.run(proc.wait_healthy())
            yield proc.url
            # The generated requests reached the store, not only the validation: each publish
            # route stored some (valid bodies) and refused others.
            text = httpx.get(f"{proc.url}/metrics", timeout=5).text
            for route in ("/v1/notifications", "/v1/notifications/batch"):
                for outcome in ("published", "invalid_field"):
                    count = metric(text, REQUESTS, route=route, outcome=outcome)
                    assert count > 0, (route, outcome, text)
        finally:
            assert proc.stop() == 0, proc.log()
            assert "Traceback" not in proc.log(), proc.log()
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def inbox_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("inbox")
    if request.param == "sqlite":
        database = f"sqlite:///{root / 'inbox.db'}"
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        pg.create_database("schemathesis")
        database = pg.url("schemathesis")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "TIDINGS_INBOX_DATABASE_URL": database,
        "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
        "TIDINGS_INBOX_MIGRATE": "true",
        "TIDINGS_INBOX_API_PORT": str(port),
        "TIDINGS_NATS_URLS": "nats://127.0.0.1:9",  # no NATS: the API answers without it
    }
    log_path = root / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "inbox", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30, what="the inbox API to be ready")
        yield base
    finally:
        proc.terminate()
        code = proc.wait(15)
        text = log_path.read_text(errors="replace")
        if request.param == "postgresql":
            pg.drop_database("schemathesis")
        assert code == 0, text
        assert "Traceback" not in text, text


@contextmanager
def fuzzed_gateway(root: Path, credential: str, done: list[str]) -> Iterator[str]:
    """A gateway on a nats-server of its own (what one run revokes cannot touch another run's
    credential); its API port's URL. At the end: ``credential`` still works (nothing the run did
    locked it out), each admin action of ``done`` succeeded at least once (the generated requests
    reached the buckets, not only the validation), and the gateway's log has no traceback."""
    server = EmbeddedNats(root / "nats").start()
    try:
        asyncio.run(provision(server.url))
        env = {
            "TIDINGS_GATEWAY_ADMIN_TOKEN": OPERATOR_KEY,
            "TIDINGS_GATEWAY_STATUS_TIMEOUT": "0.2",
            "TIDINGS_GATEWAY_ADMIN_TIMEOUT": "0.3",
        }
        gw = GatewayProcess(server.url, log_file=root / "gateway.log", env=env, name="fuzzed")
        try:
            asyncio.run(gw.started())
            base = f"http://127.0.0.1:{gw.api_port}"
            yield base
            auth = {"Authorization": f"Bearer {credential}"}
            still = httpx.get(f"{base}/api/admin/revocations", headers=auth, timeout=5)
            assert still.status_code == 200, still.text
            text = httpx.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=5).text
            for action in done:
                assert metric(text, ADMIN_ACTIONS, action=action, outcome="ok") > 0, (action, text)
        finally:
            code = asyncio.run(gw.stop())
            log = gw.log_file.read_text(errors="replace")
            assert code == 0, gw.log()
            assert "Traceback" not in log, log
    finally:
        server.stop()


ADMIN_TOKEN = mint_token(JWT_SECRET, tenant=EXAMPLE_TENANT, user=ADMIN_USER, roles=["admin"])


@pytest.fixture(scope="module")
def operator_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    done = ["revoke", "lift", "quota_set", "quota_reset"]
    with fuzzed_gateway(tmp_path_factory.mktemp("gateway-operator"), OPERATOR_KEY, done) as url:
        yield url


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A tenant's admin never changes quotas (the operator key only): revokes and lifts only.
    with fuzzed_gateway(tmp_path_factory.mktemp("gateway-admin"), ADMIN_TOKEN, ["revoke"]) as url:
        yield url


@pytest.fixture(scope="module")
def operator_schema(operator_gateway: str) -> Any:
    return schemathesis.openapi.from_url(f"{operator_gateway}/openapi.json", config=CONFIG)


@pytest.fixture(scope="module")
def admin_schema(admin_gateway: str) -> Any:
    return schemathesis.openapi.from_url(f"{admin_gateway}/openapi.json", config=CONFIG)


@pytest.fixture(scope="module")
def sidecar_schema(sidecar_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{sidecar_url}/openapi.json", config=CONFIG)


@pytest.fixture(scope="module")
def inbox_schema(inbox_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{inbox_url}/v1/inbox/openapi.json", config=CONFIG)


def origin(case: Any) -> str:
    """The server the document was read from (its paths are absolute)."""
    parts = urlsplit(case.operation.schema.location)
    return f"{parts.scheme}://{parts.netloc}"


sidecar = schemathesis.pytest.from_fixture("sidecar_schema")
inbox = schemathesis.pytest.from_fixture("inbox_schema")
as_operator = schemathesis.pytest.from_fixture("operator_schema")
as_admin = schemathesis.pytest.from_fixture("admin_schema")


@sidecar.parametrize()
@BOUNDED
def test_the_sidecar_answers_every_request_as_its_document_says(case: Any) -> None:
    case.call_and_validate(
        base_url=origin(case),
        headers={"Authorization": f"Bearer {SIDECAR_TOKEN}"},
        checks=CHECKS,
        timeout=10,
    )


@inbox.parametrize()
@BOUNDED
def test_the_inbox_api_answers_every_request_as_its_document_says(case: Any) -> None:
    case.call_and_validate(base_url=origin(case), headers=bearer(), checks=CHECKS, timeout=10)


@as_operator.parametrize()
@BOUNDED
def test_the_gateway_api_port_answers_the_operator_key_as_its_document_says(case: Any) -> None:
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    case.call_and_validate(base_url=origin(case), headers=headers, checks=CHECKS, timeout=10)


@as_admin.parametrize()
@BOUNDED
def test_the_gateway_api_port_answers_a_tenant_admin_token_as_its_document_says(
    case: Any,
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    case.call_and_validate(base_url=origin(case), headers=headers, checks=CHECKS, timeout=10)
