"""Files from ``../shared``, the folder this project's CI lays beside the checkout.

A user's clone has no such folder. A test that needs one of its files (the skaffold JSON
schema, the upstream NATS chart's values) asks for it here: without ``../shared`` it is skipped
with the reason in pytest's summary, unless ``CI`` is set, where a missing file fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def shared_path(relative: str) -> Path:
    """``../shared/<relative>``; skips the calling test when ``../shared`` is absent outside CI."""
    path = SHARED / relative
    if path.exists():
        return path
    if not SHARED.is_dir() and not os.environ.get("CI"):
        pytest.skip(
            f"needs {path}: ../shared is laid beside the checkout by this project's CI only"
            " (CONTRIBUTING.md, Tests)"
        )
    pytest.fail(f"no {path} (../shared beside the checkout; CI={os.environ.get('CI')!r})")
