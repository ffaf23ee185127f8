"""Live messages from nats-py's parser straight to the gateway's handler (issue 12 item 3).

nats-py hands every message of a subscription through a header dict (the seven headers a
republished message carries, parsed line by line), a ``Msg``, the subscription's
``asyncio.Queue`` and a task per subscription that awaits the callback. For one user per
notification that was about a third of the gateway's CPU, for two values the gateway reads: the
stream sequence and the stored time. :class:`Direct` takes the messages of the subscriptions
routed to it at the one place nats-py's parser delivers every message (the client's
``_process_msg``, replaced on that one client object, never on the class) and calls a plain
function with the raw subject, payload and header block; every other subscription of the client
(requests, status, admin, JetStream) goes the usual way. :func:`header_value` reads one header
from the raw block.

The parser itself is fronted the same way (:meth:`Direct.parse`, on that client's parser
object): a routed message — nearly every message a busy gateway reads — is framed by a loop of
its own (one ``find``, one ``split``, two slices) and handed to its handler without a regex, a
coroutine or a dict of arguments; any other operation (PING, INFO, ``-ERR``, a message of
another subscription, a malformed line) goes whole, alone, through nats-py's own ``parse``, so
its protocol handling stays nats-py's (decision 60).

This leans on private parts of nats-py, so it is contained: :func:`install` checks the
method's signature, the parser's call and its state first and answers ``None`` (the caller keeps
nats-py's own path) when they are not what was verified (nats-py 2.16);
tests/integration/test_gateway_direct.py and tests/unit/test_direct_parse.py fail when an
upgrade changes them (docs/decisions.md, 53 and 60).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol import parser as nats_parser

log = logging.getLogger(__name__)

# subject, payload, header block (``NATS/1.0\r\nName: value\r\n…``) or None
Handler = Callable[[bytes, bytes, bytes | None], None]
_ProcessMsg = Callable[[int, bytes, bytes, bytes, bytes], Awaitable[None]]

_SIGNATURE = ("self", "sid", "subject", "reply", "data", "headers")
_CALL = "await self.nc._process_msg(sid, subject, reply, payload, hdr)"
# What Direct.parse relies on in nats-py's parser: its buffer, the state between operations,
# and that a complete operation fed alone leaves it there with nothing buffered.
_PARSER = ("self.buf.extend(data)", "while self.buf:", "self.state = AWAITING_CONTROL_LINE")

_CONTROL = nats_parser.AWAITING_CONTROL_LINE
_CRLF = b"\r\n"


def supported() -> bool:
    """nats-py's parser still delivers messages the way :class:`Direct` relies on."""
    try:
        params = tuple(inspect.signature(NATS._process_msg).parameters)
        source = inspect.getsource(nats_parser.Parser.parse)
        reset = inspect.getsource(nats_parser.Parser.reset)
    except (AttributeError, OSError, TypeError, ValueError):
        return False
    return (
        params == _SIGNATURE
        and _CALL in source
        and all(part in source for part in _PARSER)
        and "self.buf = bytearray()" in reset
    )


class Direct:
    """The routes of one nats-py client: subscription id → handler."""

    __slots__ = ("_fallback", "_parse", "_parser", "_routes", "_stats", "nc")

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._routes: dict[int, Handler] = {}
        self._fallback: _ProcessMsg = nc._process_msg
        self._stats = nc.stats
        self._parser = nc._ps
        self._parse: Callable[[bytes], Awaitable[None]] = nc._ps.parse

    def route(self, sid: int, handler: Handler) -> None:
        self._routes[sid] = handler

    def unroute(self, sid: int) -> None:
        self._routes.pop(sid, None)

    def take_over(self, sub: Subscription, handler: Handler) -> list[Msg]:
        """Route ``sub`` to ``handler`` from now on and answer what nats-py queued for it before
        (while ``subscribe`` awaited), in order. Its queue and message iterator, which nothing
        reads again, are dropped: ~3.5 KB a subscription, one per tenant a gateway hosts."""
        self._routes[sub._id] = handler
        queue = sub._pending_queue
        early: list[Msg] = []
        while not queue.empty():
            early.append(queue.get_nowait())
            queue.task_done()  # a drain of the client joins this queue
        sub._pending_queue = _DISCARD  # type: ignore[assignment]
        sub._message_iterator = None
        return early

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._routes.get(sid)
        if handler is None:
            await self._fallback(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            return
        stats = self._stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        handler(subject, data, headers)  # never raises: the handler counts what it drops

    async def parse(self, data: bytes = b"") -> None:
        """nats-py's ``Parser.parse`` for this client: routed messages framed here, every
        other operation through nats-py's parser, whole and one at a time, in the order read."""
        ps = self._parser
        ps.buf.extend(data)
        if ps.state != _CONTROL:  # nats-py is inside an operation it began: it finishes it
            await self._parse(b"")
        buf = ps.buf
        routes = self._routes
        stats = self._stats
        while buf:
            end = buf.find(_CRLF)
            if end < 0:
                return  # the rest of the line comes with the next read (nats-py waits so too)
            size = 0  # what follows the control line: payload and CRLF
            handler = None
            headed = buf.startswith(b"HMSG ")
            if headed or buf.startswith(b"MSG "):
                # HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                # MSG <subject> <sid> [reply] <bytes>
                args = buf[5 if headed else 4 : end].split()
                hlen = 0
                try:
                    if len(args) not in ((4, 5) if headed else (3, 4)):
                        raise ValueError
                    sid, total = int(args[1]), int(args[-1])
                    hlen = int(args[-2]) if headed else 0
                except ValueError:
                    total = -1  # malformed: nats-py's parser says what it makes of it
                if 0 <= hlen <= total:
                    size = total + 2
                    if len(buf) < end + 2 + size:
                        return  # the payload is not all here yet
                    handler = routes.get(sid)
            if handler is None:
                # Any other operation, whole and alone, through nats-py's parser.
                chunk = bytes(buf[: end + 2 + size])
                del buf[: end + 2 + size]
                held = ps.buf = bytearray()
                await self._parse(chunk)
                if ps.buf is not held:
                    return  # the client reset its parser meanwhile (a reconnect): rest void
                if held or ps.state != _CONTROL:
                    held += buf  # nats-py holds part of an operation: it takes the rest too
                    await self._parse(b"")
                    return
                ps.buf = buf
                continue
            start = end + 2
            stop = start + total
            headers = bytes(buf[start : start + hlen]) if hlen else None
            payload = bytes(buf[start + hlen : stop])
            subject = bytes(args[0])
            del buf[: stop + 2]
            stats["in_msgs"] += 1
            stats["in_bytes"] += total - hlen
            handler(subject, payload, headers)  # never raises: the handler counts what it drops


class _Discard:
    """Stands in for a taken-over subscription's queue. nats-py puts a message there only in
    the moment between :meth:`Direct.unroute` and the unsubscribe that follows it, when the
    dropped queue would have held it unread as well; a drain finds it empty at once."""

    __slots__ = ()

    def put_nowait(self, msg: Msg) -> None:
        pass

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        return None

    async def get(self) -> Msg:
        raise RuntimeError("a taken-over subscription's messages go to its route")


_DISCARD = _Discard()


def install(nc: NATS) -> Direct | None:
    """Route messages of ``nc`` through a new :class:`Direct`; None when nats-py changed."""
    if not isinstance(nc, NATS):
        return None  # not nats-py's client (a handler test's stand-in): nothing to route
    if not supported():
        log.warning("nats-py's message path is not the one verified; live ingest uses its queue")
        return None
    installed = getattr(nc._process_msg, "__self__", None)
    if isinstance(installed, Direct):
        return installed  # one per client: a second install would chain behind the first
    direct = Direct(nc)
    nc._process_msg = direct._process_msg  # type: ignore[method-assign]
    nc._ps.parse = direct.parse  # type: ignore[method-assign]
    return direct


def header_value(block: bytes | None, name: bytes) -> bytes | None:
    """The value of header ``name`` (exact case, as nats-server writes its own) in a raw
    header block, stripped; the last one when repeated (as nats-py's dict keeps); None when
    absent. ``name`` is ``b"\\r\\nName:"``: a header line starts after a line break."""
    if block is None:
        return None
    at = block.rfind(name)
    if at < 0:
        return None
    start = at + len(name)
    end = block.find(b"\r\n", start)
    return block[start:end].strip() if end >= 0 else block[start:].strip()
