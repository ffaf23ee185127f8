"""A network lab for partition tests (``tidings.dev.netns``), checked clean afterwards.

The lab needs root and iproute2 (scripts/test installs it; CI runs as root). Without them a test
is skipped with the reason on a developer's machine and fails under CI (``CI`` set), as
``tests/support/shared.py`` does for its files: CI never skips it silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tidings.dev.netns import NetLab, namespaces, unavailable_reason


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def require_namespaces() -> None:
    """Skip (developer machine) or fail (CI) when network namespaces cannot be made here."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the partition tests: {reason}")
        pytest.skip(f"partition tests: {reason}")


@contextmanager
def network_lab(nodes: int = 3) -> Iterator[NetLab]:
    """A started :class:`NetLab`; on exit it is closed, and the test fails if one of its
    namespaces or one process that ran in them is left."""
    require_namespaces()
    lab = NetLab(nodes)
    ran: list[int] = []
    try:
        lab.start()
        yield lab
    finally:
        ran = lab.pids()
        lab.close()
    left = [n for n in namespaces(lab.prefix) if n.startswith(lab.run)]
    assert left == [], f"namespaces left behind: {left}"
    assert [p for p in ran if _alive(p)] == [], "processes left in the lab's namespaces"
