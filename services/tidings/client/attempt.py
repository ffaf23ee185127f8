"""One connection attempt: open the socket, and afterwards say how it ended and whether to retry.

The subscriber reads the frames in between. What is decided here needs none of its state: the
close code and reason of an ended connection (the ``error`` frame before a close says it when
the close frame itself got lost), whether retrying can help (by the close code's row, or the
HTTP status of a refused handshake), and which gateway to try next after how long.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from tidings import protocol as p
from tidings.client.backoff import Backoff
from tidings.client.errors import ClientError, GaveUp, gateway_error
from tidings.client.options import SubscriberOptions
from tidings.codes import CloseCode, Reconnect

ABNORMAL_CLOSURE = 1006  # no close frame arrived: the network or the gateway process died
FATAL_HTTP = frozenset(range(400, 500)) - {408, 429}  # a handshake refusal retrying won't fix
RATE_LIMITED_DELAY = 5.0  # docs/protocol.md §12: at least this long after 4029


@dataclass(slots=True)
class Drop:
    """How one connection attempt ended."""

    close_code: int | None  # None: no WebSocket was established
    reason: str
    error: p.ErrorFrame | None = None  # the error frame that came before the close
    welcomed_at: float | None = None
    reconnect_at: float | None = None  # a `reconnect` frame came: go again then, no backoff
    status: int | None = None  # HTTP status of a refused handshake
    refused: ClientError | None = None  # the refused handshake's error

    def reconnect(self) -> Reconnect:
        """What retrying can do: nothing (``NEVER``), only with a new token, or with backoff."""
        if self.status is not None:
            return Reconnect.NEVER if self.status in FATAL_HTTP else Reconnect.BACKOFF
        code = self.close_code
        if code is None:
            return Reconnect.BACKOFF
        try:
            return CloseCode(code).reconnect
        except ValueError:
            return Reconnect.NEVER if 4000 <= code < 5000 else Reconnect.BACKOFF

    def refusal(self) -> ClientError:
        """The error that ends the subscriber when retrying cannot help."""
        if self.refused is not None:
            return self.refused
        return gateway_error(self.error or self.reason, close_code=self.close_code)


class Retries:
    """Which gateway to try next, and after how long; gives up after ``max_attempts`` failures.

    ``attempt`` is the backoff exponent (reset once a connection stayed healthy), ``failures``
    the attempts in a row that never reached ``welcome``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        backoff: Backoff,
        max_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = urls
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.rng = rng
        self.attempt = 0
        self.failures = 0
        self._index = 0

    @property
    def url(self) -> str:
        return self.urls[self._index % len(self.urls)]

    def after(self, drop: Drop) -> float:
        """The delay before the next attempt, which goes to the next gateway (this one failed or
        is going away); raises :class:`GaveUp` after ``max_attempts`` failures in a row."""
        now = time.monotonic()
        if drop.welcomed_at is not None:
            self.failures = 0
            if now - drop.welcomed_at >= self.backoff.healthy_after:
                self.attempt = 0
        else:
            self.failures += 1
            if self.max_attempts is not None and self.failures >= self.max_attempts:
                raise GaveUp(f"{self.failures} attempts in a row failed; last: {drop.reason}")
        self._index += 1
        if drop.reconnect_at is not None:  # a drain: the gateway already spread the delays
            return max(0.0, drop.reconnect_at - now)
        delay = self.backoff.delay(self.attempt, self.rng)
        if drop.close_code == CloseCode.RATE_LIMITED:
            delay = max(delay, RATE_LIMITED_DELAY)
        self.attempt += 1
        return delay


async def open_socket(url: str, options: SubscriberOptions) -> ClientConnection | Drop:
    """The WebSocket to ``url``, or how the handshake failed."""
    try:
        return await ws_connect(
            url,
            subprotocols=[Subprotocol(p.SUBPROTOCOL)],
            open_timeout=options.open_timeout,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_interval,
            close_timeout=2,
            max_size=options.max_frame_bytes,
            compression=None,  # the gateway sends pre-built uncompressed frames
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        refused = gateway_error(bytes(exc.response.body or b""), status=status)
        return Drop(None, refused.reason, status=status, refused=refused)
    except (OSError, TimeoutError, WebSocketException) as exc:
        return Drop(None, f"cannot connect to {url}: {exc or type(exc).__name__}")


def settle(drop: Drop, ws: ClientConnection) -> Drop:
    """Fill in ``drop``'s close code and reason once ``ws`` is closed."""
    error = drop.error
    close_code = ws.close_code
    if close_code in (None, ABNORMAL_CLOSURE) and error is not None and error.close:
        close_code = error.close  # the close frame got lost; the error frame said what it was
    if close_code is None:
        close_code = ABNORMAL_CLOSURE
    drop.close_code = close_code
    if error is not None:
        drop.reason = error.reason
    elif not drop.reason:
        drop.reason = ws.close_reason or _close_meaning(close_code)
    return drop


def _close_meaning(code: int) -> str:
    try:
        return CloseCode(code).meaning
    except ValueError:
        return "connection lost" if code == ABNORMAL_CLOSURE else f"closed with {code}"
