"""Waiting out a JetStream election (tidings.gateway.retry): what is retried, for how long."""

from __future__ import annotations

import time

import pytest
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError

from tidings.gateway import retry
from tidings.gateway.retry import until_answered


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "PAUSE", 0.01)


async def test_a_transient_error_is_tried_again_until_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NoRespondersError
        return "info"

    assert await until_answered(step, within=5.0, what="the stream did not answer") == "info"
    assert len(calls) == 3
    assert caplog.messages.count("the stream did not answer; retrying") == 2


async def test_an_answer_that_is_final_is_not_retried() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        raise NotFoundError  # the stream does not exist: no election will change that

    with pytest.raises(NotFoundError):
        await until_answered(step, within=5.0, what="x")
    assert len(calls) == 1


async def test_past_the_bound_the_last_error_rises() -> None:
    async def step() -> None:
        raise TimeoutError

    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await until_answered(step, within=0.2, what="x")
    assert 0.15 <= time.monotonic() - began < 2.0
