"""Durations, sizes and lists as people write them (``1h30m``, ``512MiB``, ``a,b``), both ways.

One grammar for every place that reads or shows them: ``TIDINGS_*`` settings (through the
``Seconds``, ``Bytes`` and ``StrList`` field types below), ``tidings token --ttl``, the demo's
``?ttl=``, the CLI's stream table. A leaf: it imports nothing of tidings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SHOWN_DURATIONS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SIZE_RE = re.compile(r"(\d+)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SHOWN_SIZES = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def parse_duration(value: str | float) -> float:
    """Seconds from ``90``, ``1.5``, ``250ms``, ``2m``, ``1h30m`` or ``7d`` (a number passes)."""
    if not isinstance(value, str):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration such as 30s, 2m, 1h30m or 7d")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def parse_size(value: str | int) -> int:
    """Bytes from ``1048576``, ``512MB`` or ``1GiB`` (a number passes)."""
    if not isinstance(value, str):
        return int(value)
    match = _SIZE_RE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size such as 65536, 512KiB or 1GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").upper()]


def split_list(value: str) -> list[str]:
    """The items of a comma-separated string, trimmed, empty ones dropped (``a, b,`` → a, b)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def format_duration(seconds: float) -> str:
    """The largest whole unit that writes ``seconds`` exactly (``7d``, ``90m``), else ``1.5s``."""
    for unit, size in _SHOWN_DURATIONS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_size(count: int) -> str:
    """The largest binary unit that writes ``count`` exactly (``1GiB``), else bytes."""
    for unit, size in _SHOWN_SIZES:
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return f"{count}B"


def _from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Parse text from the environment; a value already typed (a default, an override) passes."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


Seconds = Annotated[float, _from_text(parse_duration), Field(ge=0)]
"""A setting in seconds, written as a number or a duration (``30s``, ``1h30m``)."""
Bytes = Annotated[int, _from_text(parse_size), Field(ge=0)]
"""A setting in bytes, written as a number or a size (``512KiB``, ``1GiB``)."""
StrList = Annotated[list[str], NoDecode, _from_text(split_list)]
"""A setting holding a list, written comma-separated (``a,b``) rather than as JSON."""
