"""The publisher sidecar (a real process) through a stream leader election: a publish answered
``no responders``/503 or timing out while no node leads the R3 stream goes to the outbox and is
retried with the same ``Nats-Msg-Id``, so every notification answered 202 is stored exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import r3_cluster
from tests.support.publisher_process import PublisherProcess, stored_messages
from tests.support.waiting import until

# nats-py drops the stream writer of a server it fails over from (killed, frozen) without
# closing it; Python reports that at garbage collection, in whatever test runs then. It is the
# client library's socket, not ours, and only these tests kill or freeze servers on purpose.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.usefixtures("collect_leftovers"),
]


RATE = 25.0  # posts per second, one at a time
BEFORE, AFTER = 25, 100  # posts before the kill, and at least this many after it


def note(n: int) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "event": "incident.created",
        "title": f"n{n}",
        "message": "m",
        "data": {"n": n},
    }


async def test_publishes_during_a_leader_election_are_stored_exactly_once(tmp_path: Path) -> None:
    async with r3_cluster(tmp_path) as (cluster, _):
        leader = await cluster.stream_leader("TIDINGS")
        survivor = cluster.urls[(leader + 1) % 3]
        env = {
            "TIDINGS_NATS_URLS": survivor,  # its server survives: it sees the election itself
            "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
            "TIDINGS_NATS_REQUEST_TIMEOUT": "2",
            "TIDINGS_PUBLISHER_OUTBOX_DIR": str(tmp_path / "outbox"),
        }
        sidecar = PublisherProcess(env, log_file=tmp_path / "publisher.log").start()
        accepted: list[str] = []
        queued = 0
        try:
            await sidecar.wait_healthy()
            async with httpx.AsyncClient(base_url=sidecar.url, timeout=10) as http:
                began = time.monotonic()
                killed_at: float | None = None
                n = 0
                while n < BEFORE + AFTER:
                    if n == BEFORE:
                        cluster.kill(leader)
                        killed_at = time.monotonic()
                    answer = await http.post("/v1/notifications", json=note(n))
                    assert answer.status_code == 202, answer.text
                    accepted.append(answer.json()["id"])
                    queued += bool(answer.json().get("queued"))
                    n += 1
                    pause = began + n / RATE - time.monotonic()
                    if pause > 0:  # a fixed rate: pacing, not a wait for an event
                        await asyncio.sleep(pause)

                async def outbox_empty() -> bool:
                    return bool((await http.get("/readyz")).json()["outbox"]["messages"] == 0)

                await until(outbox_empty, timeout=30, what="the outbox to empty")
                drained = time.monotonic()
        finally:
            sidecar.stop()

        stored = await stored_messages(survivor)
        ids = [m.headers.get("Nats-Msg-Id") for m in stored if m.headers]
        counts = collections.Counter(ids)
        assert [i for i in accepted if counts[f"acme:{i}"] != 1] == []  # keys are tenant-scoped
        assert len(stored) == len(accepted)
        assert killed_at is not None and queued > 0, "the election was not exercised"
        # The refusals of a pipelined batch are all handled, none left to asyncio's logger.
        assert "never retrieved" not in sidecar.log_file.read_text()
        print(
            f"\nsidecar through a leader election: {len(accepted)} answered 202,"
            f" {queued} of them queued in the outbox, drained {drained - killed_at:.1f}s after"
            " the kill; every one stored once"
        )
