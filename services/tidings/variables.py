"""The ``TIDINGS_*`` variables the settings read: listed for the docs, and checked for typos.

``python -m tidings.variables`` prints the tables of ``docs/configuration.md``; a test fails
when the doc is stale.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tidings.settings import GROUPS, env_var


def known_variables() -> set[str]:
    """Every variable some setting reads."""
    return {env_var(g, f) for g in GROUPS.values() for f in g.model_fields}


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``TIDINGS_*`` variables no setting reads: typos worth a warning."""
    env = os.environ if environ is None else environ
    known = known_variables()
    return sorted(k for k in env if k.startswith("TIDINGS_") and k not in known)


def reference_markdown() -> str:
    """The variable tables of ``docs/configuration.md``, one per settings group."""
    lines: list[str] = []
    for group in GROUPS.values():
        prefix = group.model_config.get("env_prefix", "")
        summary = (group.__doc__ or "").strip().splitlines()[0]
        lines += [f"### `{prefix}*` — {summary}", ""]
        lines += ["| variable | default | meaning |", "|---|---|---|"]
        for name, info in group.model_fields.items():
            default = info.default
            if isinstance(default, list):
                default = ",".join(default) or "(empty)"
            shown = "(unset)" if default is None else f"`{default}`"
            lines.append(f"| `{env_var(group, name)}` | {shown} | {info.description or ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
