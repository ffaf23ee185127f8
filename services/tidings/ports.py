"""Loopback socket helpers: is a port taken, and one that is free.

Neutral on purpose: the publisher refuses a taken port before it opens its outbox, and the dev
tools and tests pick free ports, so neither side has to import the other.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens there. SO_REUSEADDR, as nats-server and uvicorn bind: the
    TIME_WAIT leftovers of a server that just stopped do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False
