"""One lifecycle for the gateway: a part that dies stops the whole process with a clear error
and a non-zero exit, instead of leaving a gateway that looks alive with a loop gone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from nats.js import JetStreamContext

from tidings.dev.embedded import EmbeddedNats
from tidings.errors import PartFailed
from tidings.gateway.service import Gateway
from tidings.ports import free_port
from tidings.settings import Settings

# The gateway's own entry point, with its keepalive loop made to fail after a moment.
DYING = """
import asyncio
from tidings.gateway import upkeep

async def run(self):
    await asyncio.sleep(0.3)
    raise RuntimeError("keepalive lost its way")

upkeep.Keepalive.run = run
from tidings.gateway.__main__ import main
main()
"""


class Crashes:
    name = "keepalive"

    async def run(self) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("boom")


async def test_a_dying_part_stops_the_gateway_it_belongs_to(
    js: JetStreamContext, gateway_settings: Settings
) -> None:
    gw = Gateway(gateway_settings)
    gw.keepalive = Crashes()  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(PartFailed, match="keepalive failed: RuntimeError: boom"):
            await asyncio.wait_for(gw.run(), 15)
    finally:
        for sig in (2, 15):
            loop.remove_signal_handler(sig)
    assert gw._stopped.is_set()  # everything it opened was let go (data port, API, NATS)
    assert gw.server is not None and not gw.server.is_serving()
    assert gw.link.state.value == "closed"


async def test_the_process_exits_1_naming_the_part(
    nats_server: EmbeddedNats, js: JetStreamContext, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_NATS_URLS=nats_server.url,
        TIDINGS_AUTH_JWT_SECRET="tidings-test-secret-0123456789abcdef",
        TIDINGS_GATEWAY_HOST="127.0.0.1",
        TIDINGS_GATEWAY_PORT=str(free_port()),
        TIDINGS_GATEWAY_API_PORT=str(free_port()),
        TIDINGS_GATEWAY_METRICS_PORT=str(free_port()),
        TIDINGS_LOG_FORMAT="json",
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", DYING],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "tidings gateway: tidings: keepalive failed: RuntimeError: keepalive lost its way" in err
    logged = [orjson.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    messages = [line["message"] for line in logged]
    assert "gateway listening" in messages
    assert "part failed" in messages
    assert any(m.startswith("gateway stopped: keepalive failed") for m in messages)
