"""The gateway's event loop: uvloop when it is installed (a dependency), else asyncio's own.

uvloop runs the same code at less CPU per notification (issue 12 item 3: measured in
benchmarks/RESULTS.md, "Issue 12 item 3: the ingest"); picows, the WebSocket server, supports
both. Where uvloop cannot be installed (a platform without wheels), asyncio's loop runs it.

One difference matters here: the head guard (:func:`tidings.gateway.headguard.guard`) puts
itself in front of picows's protocol by replacing the server's ``_protocol_factory``, which
asyncio's ``Server`` has and uvloop's does not. On uvloop, a server created with
``start_serving=False`` (the gateway's data port, the one guarded) is therefore returned as a
:class:`_GuardableServer`: uvloop's server whose protocol factory is looked up on the wrapper
at every accept, so replacing it works the same on both loops.

A second one: when ``listen(2)`` fails in ``start_serving`` (another socket bound the port with
``SO_REUSEADDR`` too and listened first), uvloop drops the error and closes the socket
(``fileno() == -1``, later ``None``); :class:`_GuardableServer` raises it, as asyncio's loop
does, instead of serving nothing.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def name() -> str:
    """The loop :func:`run` uses here: ``uvloop`` or ``asyncio``."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the gateway's loop."""
    if name() != "uvloop":
        return asyncio.run(main)
    import uvloop

    class GatewayLoop(uvloop.Loop):
        async def create_server(
            self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kw: Any
        ) -> Any:
            if kw.get("start_serving", True):
                return await super().create_server(protocol_factory, *args, **kw)
            shim = _GuardableServer(protocol_factory)
            shim.server = await super().create_server(shim.protocol, *args, **kw)
            return shim

    return uvloop.run(main, loop_factory=GatewayLoop)


class _GuardableServer:
    """uvloop's ``Server`` with asyncio's ``_protocol_factory`` attribute, read at each accept."""

    def __init__(self, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._protocol_factory = factory
        self.server: Any = None

    def protocol(self) -> asyncio.BaseProtocol:
        return self._protocol_factory()

    async def start_serving(self) -> None:
        """uvloop's, raising what it swallows: for a bound TCP socket of our own, ``listen(2)``
        fails only with EADDRINUSE."""
        await self.server.start_serving()
        if any(sock is None or sock.fileno() < 0 for sock in self.server.sockets):
            self.server.close()
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))

    def __getattr__(self, attr: str) -> Any:  # start_serving, sockets, close, wait_closed, …
        return getattr(self.server, attr)
