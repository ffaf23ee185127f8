"""The package's shape: imports point one way, with no circle, and product code never reaches
the dev tools. Every import counts, lazy and ``TYPE_CHECKING`` ones included (docs/architecture.md).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "services" / "tidings"

# Layers, lowest first: a module may import its own layer and the ones below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "codes",
            "errors",
            "units",
            "ports",
            "subjects",
            "catalogue",
            "envelope",
            "jsondata",
            "openapi",
            "protocol",
            "auth",
            "settings",
            "variables",
            "telemetry",
            "nats",
            "nats_link",
            "lifecycle",
            "publishing",
            "v1",
        ),
    ),
    ("services and clients", ("gateway", "publisher", "inbox", "client", "quotas")),
    ("dev tools and benchmarks", ("dev", "bench")),
    ("command line", ("cli", "__main__")),
]
# What production (the first two layers) must never import: the dev tools stay out of images'
# code paths, and a library never imports its command line.
DEV_ONLY = ("dev", "bench", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: str | None = None) -> Iterator[str]:
    """Every ``tidings.*`` module ``path`` imports, wherever the statement sits."""
    if package is None:
        package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("tidings"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("tidings"):
                continue
            for alias in node.names:  # `from tidings import demo` imports a module
                candidate = f"{base}.{alias.name}"
                yield candidate if _is_module(candidate) else base


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _resolve(name: str) -> str:
    """The deepest existing module of a dotted name (``tidings.protocol.Hello`` → protocol)."""
    while name != "tidings" and not _is_module(name):
        name = name.rsplit(".", 1)[0]
    return name


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        me = module_name(path)
        edges[me] = {_resolve(m) for m in imports_of(path)} - {me, "tidings"}
    return edges


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(name: str) -> int:
    first = top(name)
    if name.endswith(".__main__"):
        first = "__main__"
    for index, (_, members) in enumerate(LAYERS):
        if first in members:
            return index
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer() -> None:
    for name in graph():
        if name != "tidings":
            layer_of(name)


def test_imports_point_down_only() -> None:
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph().items()
        if a != "tidings"
        for b in targets
        if b != "tidings" and layer_of(b) > layer_of(a)
    ]
    assert upward == []


@pytest.mark.parametrize("package", DEV_ONLY)
def test_production_code_never_imports_the_dev_tools(package: str) -> None:
    offenders = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        if a != "tidings" and layer_of(a) < 2
        for b in targets
        if top(b) == package
    ]
    assert offenders == []


def test_no_import_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    circles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """A lazy import inside a function counts like one at the top (so it cannot hide a circle)."""
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tidings.gateway.service import Gateway\n"
        "def f():\n    from tidings.dev import demo\n    from . import window\n"
    )
    found = set(imports_of(source, package="tidings.gateway"))
    assert {"tidings.dev.demo", "tidings.gateway.service", "tidings.gateway.window"} <= found
