"""``python -m tidings.gateway``: run one gateway process from ``TIDINGS_*`` settings.

Without the demo pages (``tidings gateway`` injects them when ``TIDINGS_GATEWAY_DEMO`` is on).
"""

from __future__ import annotations

import sys

from tidings.errors import ConfigError
from tidings.gateway.service import serve_gateway
from tidings.settings import load_settings


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    serve_gateway(settings)


if __name__ == "__main__":
    main()
