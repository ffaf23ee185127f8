"""One trace from the sidecar's request to the gateway's delivery, with the SDK's exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.publisher_process import make_settings, sidecar
from tests.support.waiting import until as wait_until
from tests.support.wsclient import RawClient
from tidings.gateway.service import Gateway
from tidings.settings import NatsSettings


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process-wide SDK provider (installed once) with a fresh in-memory exporter."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield exporter
    finally:
        exporter.clear()
        processor.shutdown()


async def test_publish_and_delivery_share_one_trace(
    spans: InMemorySpanExporter,
    gateway: Gateway,
    js: JetStreamContext,
    nats_settings: NatsSettings,
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    settings = make_settings(nats_settings, tmp_path / "outbox")
    async with RawClient(url) as a, RawClient(url) as b, RawClient(url) as c:
        for client, user in ((a, "alice"), (b, "bob"), (c, "carol")):
            await client.hello(token(user=user))
        async with sidecar(settings) as (_app, http):
            answer = await http.post(
                "/v1/notifications",
                json={
                    "tenant": "acme",
                    "event": "incident.created",
                    "title": "Spill",
                    "message": "Hall 3",
                },
            )
            assert answer.status_code == 202, answer.text
        for client in (a, b, c):
            (got,) = await client.notifications(1)
            assert got["title"] == "Spill"

    async def delivered() -> bool:
        return any(s.name == "tidings.deliver" for s in spans.get_finished_spans())

    await wait_until(delivered, timeout=5, what="the delivery span")
    finished = spans.get_finished_spans()
    publish = [s for s in finished if s.name == "tidings.publish"]
    deliver = [s for s in finished if s.name == "tidings.deliver"]
    assert len(publish) == 1
    assert len(deliver) == 1, "one delivery span per notification, not one per connection"
    (p,), (d,) = publish, deliver
    assert p.context is not None
    assert d.context is not None
    assert d.context.trace_id == p.context.trace_id
    assert d.parent is not None
    assert d.parent.span_id == p.context.span_id
    assert d.kind is SpanKind.CONSUMER
    assert d.attributes is not None
    assert d.attributes["tidings.receivers"] == 3
    assert d.attributes["tidings.seq"] == 1
