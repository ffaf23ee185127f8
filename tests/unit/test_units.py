"""Durations, sizes and lists: one grammar for settings, the CLI and the demo, both ways."""

from __future__ import annotations

import pytest

from tidings.units import format_duration, format_size, parse_duration, parse_size, split_list


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        (" 30s ", 30.0),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("1d12h", 129600.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_durations_are_parsed(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "h", "1h 30m", "-5s", "1.5.5s", "30s!"])
def test_a_bad_duration_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration such as 30s, 2m, 1h30m or 7d"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("65536", 65536),
        ("512B", 512),
        ("2KB", 2000),
        ("512KiB", 512 * 1024),
        ("512 MiB", 512 << 20),
        ("1gib", 1 << 30),
        ("3GB", 3 * 10**9),
        ("1TiB", 1 << 40),
        (4096, 4096),
    ],
)
def test_sizes_are_parsed(text: str | int, count: int) -> None:
    assert parse_size(text) == count


@pytest.mark.parametrize("text", ["", "lots", "1.5GiB", "-1", "1PB", "KiB"])
def test_a_bad_size_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size such as 65536, 512KiB or 1GiB"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "items"),
    [("a,b", ["a", "b"]), (" a , b ,", ["a", "b"]), ("", []), (" , ", []), ("*", ["*"])],
)
def test_lists_are_split_on_commas_and_trimmed(text: str, items: list[str]) -> None:
    assert split_list(text) == items


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (604800.0, "7d"),
        (5400.0, "90m"),
        (3600.0, "1h"),
        (120.0, "2m"),
        (30.0, "30s"),
        (1.5, "1.5s"),
    ],
)
def test_durations_are_shown_in_the_largest_exact_unit(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == seconds  # what is shown reads back as the same value


@pytest.mark.parametrize(
    ("count", "shown"),
    [(1 << 30, "1GiB"), (3 << 20, "3MiB"), (64 * 1024, "64KiB"), (1000, "1000B"), (0, "0B")],
)
def test_sizes_are_shown_in_the_largest_exact_unit(count: int, shown: str) -> None:
    assert format_size(count) == shown
    assert parse_size(shown) == count
