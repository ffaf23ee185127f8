"""The gateway's garbage-collector policy: what gets frozen, and when everything is thawed."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from tidings.gateway import collector
from tidings.gateway.collector import Collector


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_freezes_and_new_connections_trigger_the_next_freeze() -> None:
    accepted = [0]
    c = Collector(lambda: accepted[0])
    c.start()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    keep = [[i] for i in range(1000)]  # long-lived objects that arrive later
    accepted[0] = collector.FREEZE_AFTER - 1
    c.step(now=0.0)
    assert gc.get_freeze_count() == frozen  # not yet: too few new connections
    accepted[0] = collector.FREEZE_AFTER
    c.step(now=0.0)
    assert gc.get_freeze_count() >= frozen + len(keep)


def test_a_full_collection_thaws_and_frees_cycles_that_died_frozen() -> None:
    accepted = [0]
    c = Collector(lambda: accepted[0])

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    c.start()
    del a, b  # a cycle that dies while frozen
    gc.collect()
    assert ref() is not None  # the collector does not see it
    start = time.monotonic()
    c.step(now=start + collector.FULL_EVERY - 5)
    assert ref() is not None  # not time yet
    c.step(now=start + collector.FULL_EVERY + 1)
    assert ref() is None  # thawed and collected
    assert gc.get_freeze_count() > 0  # and frozen again
