"""Loopback socket helpers: is a port taken, and one that is free.

Neutral on purpose: the publisher refuses a taken port before it opens its outbox, and the dev
tools and tests pick free ports, so neither side has to import the other.
"""

from __future__ import annotations

import socket
from collections import deque

# The ports this process handed out lately: the kernel may offer a port again before the first
# caller bound it (two gateways of one test were given the same data port that way).
_RECENT = 1000
_given: deque[int] = deque(maxlen=_RECENT)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now and not handed out lately by this process (the
    caller binds it soon after)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in _given:
            _given.append(port)
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
