"""``python -m tidings.publisher``: run the sidecar from ``TIDINGS_*`` environment variables."""

from __future__ import annotations

import sys

from tidings.errors import ConfigError
from tidings.publisher.app import serve
from tidings.settings import load_settings


def main() -> None:
    """Serve until SIGTERM/SIGINT; a configuration error prints its message and exits 2."""
    try:
        serve(load_settings())
    except ConfigError as exc:
        print(f"tidings publisher: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
