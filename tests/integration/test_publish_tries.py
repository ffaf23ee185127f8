"""A publish that JetStream does not answer now is sent again, with the same ``Nats-Msg-Id``,
every ``attempt`` seconds within its timeout (``TIDINGS_NATS_PUBLISH_TRY``): a publish made
during a stream leader election lands about one try after the new leader exists, not when a
whole timeout ends, and is stored once (the SDK and the sidecar's relay share this code)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from tests.support.cluster import r3_cluster
from tidings.client import Publisher
from tidings.nats import ensure_stream
from tidings.publishing import OutgoingMessage, publish, publish_many
from tidings.settings import StreamSettings


def message(n: int) -> OutgoingMessage:
    ident = f"try-{n:03d}"
    return OutgoingMessage(
        ident, f"tenant.acme.incident.created.{n}", b"{}", {"Nats-Msg-Id": f"acme:{ident}"}
    )


async def provision_later(js: JetStreamContext, delay: float) -> float:
    await asyncio.sleep(delay)  # the fault's timing itself: the stream appears 1 s from now
    await ensure_stream(js, StreamSettings())
    return time.monotonic()


async def test_no_responders_is_tried_again_until_the_stream_answers(nc: NATS) -> None:
    js = nc.jetstream()
    with pytest.raises(NoStreamResponseError):  # one try: refused at once
        await publish(js, message(0), stream="TIDINGS", timeout=5)
    made = asyncio.ensure_future(provision_later(js, 1.0))
    one, many = await asyncio.gather(
        publish(js, message(1), stream="TIDINGS", timeout=10, attempt=1.0),
        publish_many(js, [message(2), message(3)], stream="TIDINGS", timeout=10, attempt=1.0),
    )
    landed = time.monotonic()
    assert (landed - await made) < 1.0  # tries 0.25 s apart after a refusal
    seqs = [one.seq, *(m.seq for m in many)]
    assert sorted(s for s in seqs if s is not None) == [1, 2, 3]
    assert many[0].seq is not None and many[1].seq is not None
    assert many[0].seq < many[1].seq  # a batch's retry keeps its order
    assert (await js.stream_info("TIDINGS")).state.messages == 3


@pytest.mark.usefixtures("collect_leftovers")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_publish_during_an_election_lands_within_a_try_of_the_new_leader(
    tmp_path: Path,
) -> None:
    async with r3_cluster(tmp_path) as (cluster, _):
        leader = await cluster.stream_leader("TIDINGS")
        survivor = cluster.urls[(leader + 1) % 3]
        ours, probes = await nats.connect(survivor), await nats.connect(survivor)
        try:
            sdk = Publisher(ours.jetstream(), timeout=30, attempt=1.0)
            # The probe tries every 0.1 s: its first PubAck marks when a leader stores again.
            probe = Publisher(probes.jetstream(), timeout=30, attempt=0.1)
            await sdk.to_tenant("acme", "incident.created", title="before", message="m")

            async def timed(pub: Publisher, ident: str) -> tuple[float, int | None, bool]:
                result = await pub.to_tenant(
                    "acme", "incident.created", title=ident, message="m", id=ident
                )
                return time.monotonic(), result.seq, result.duplicate

            cluster.kill(leader)
            killed = time.monotonic()
            (landed, seq, _), (stored_again, probe_seq, _) = await asyncio.gather(
                timed(sdk, "during"), timed(probe, "probe")
            )
            print(
                f"\nelection: storing again {stored_again - killed:.2f}s after the kill;"
                f" the 1 s-try publish landed {landed - killed:.2f}s after it"
                f" ({landed - stored_again:.2f}s after the probe)"
            )
            assert seq is not None and probe_seq is not None
            assert stored_again - killed > 2.0, "no election happened"
            # Its next try after the leader exists: within one try (1 s) and the round trip.
            assert landed - stored_again <= 1.5
            info = await ours.jetstream().stream_info("TIDINGS")
            assert info.state.messages == 3  # before, during, probe: each once
        finally:
            await ours.close()
            await probes.close()
