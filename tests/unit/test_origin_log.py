"""The refused-origin log line: once per origin per minute, a cap on lines in all, and a count of
what was held back (tidings.gateway.origins); the `tidings dev --allow-origin` value check."""

from __future__ import annotations

import pytest

from tidings.dev.options import DevOptions, _gateway_origins, check_origin
from tidings.errors import InvalidField
from tidings.gateway.origins import OriginLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_origin_per_minute_and_the_next_line_counts_what_was_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="tidings.gateway.origins")
    clock = Clock()
    log = OriginLog(["https://app.example"], clock=clock)
    assert log.refused_origin("http://localhost:5173") is True
    for _ in range(50):
        assert log.refused_origin("http://localhost:5173") is False
    clock.now += 61
    assert log.refused_origin("http://localhost:5173") is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "(https://app.example)" in lines[0]
    assert "50 more refusals held back" in lines[1]
    assert log.refused == 52


def test_many_origins_cannot_flood_the_log() -> None:
    clock = Clock()
    log = OriginLog([], burst=10, window=60, clock=clock)
    written = [log.refused_origin(f"http://o{i}.example") for i in range(1000)]
    assert sum(written) == 10
    assert log.held_back == 990
    clock.now += 60
    assert log.refused_origin("http://late.example") is True
    assert log.held_back == 0


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://localhost:5173", "http://localhost:5173"),
        ("https://App.Example/", "https://app.example"),
        ("*", "*"),
    ],
)
def test_allow_origin_takes_origins(given: str, kept: str) -> None:
    assert check_origin(given) == kept


@pytest.mark.parametrize(
    "given",
    ["localhost:5173", "http://localhost:5173/app", "ftp://x", "http://", "http://h:port", "x?y"],
)
def test_allow_origin_refuses_what_is_not_an_origin(given: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_origin(given)
    assert refused.value.field == "--allow-origin"


def test_allowed_origins_join_the_demo_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_GATEWAY_ALLOWED_ORIGINS", raising=False)
    origins = _gateway_origins(DevOptions(allow_origins=("http://localhost:5173",)))
    assert origins.split(",")[0] == "http://localhost:5173"
    assert "http://127.0.0.1:8082" in origins.split(",")
    assert _gateway_origins(DevOptions(allow_origins=("*",))) == "*"
