"""The sidecar's parts (NATS link, outbox relay) run under one supervisor: one that dies stops
the process with a clear error and exit 1, instead of a sidecar that accepts into an outbox
nobody drains."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port

DYING = """
import asyncio
from tidings.publisher import relay

async def run(self):
    await asyncio.sleep(0.3)
    raise RuntimeError("the drainer tripped")

relay.Relay.run = run
from tidings.publisher.__main__ import main
main()
"""


async def test_a_dying_relay_stops_the_sidecar_with_exit_1(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_NATS_URLS=nats_server.url,
        TIDINGS_PUBLISHER_HOST="127.0.0.1",
        TIDINGS_PUBLISHER_PORT=str(free_port()),
        TIDINGS_PUBLISHER_OUTBOX_DIR=str(tmp_path / "outbox"),
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
    assert "tidings publisher: tidings: outbox-relay failed: RuntimeError: the drainer" in err
    assert "part failed" in err
