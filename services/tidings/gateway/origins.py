"""Refused browser origins, made visible: a rate-limited log line naming the setting.

A browser never shows a page the 403 of a refused WebSocket upgrade (the socket just closes,
1006), so the operator's log is where a refused origin must show up. One line per origin per
``per_origin`` seconds, and at most ``burst`` lines per ``window`` seconds in all (a client
inventing origins cannot flood the log); what was held back is counted in the next line.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

SETTING = "TIDINGS_GATEWAY_ALLOWED_ORIGINS"
# The one header that lets a page read the gateway's answer to a plain GET of /ws (its probe
# after a refused upgrade, see clients/js and docs/decisions.md): the answer names the refusal's
# code and nothing else, carries no credentials and answers no credentialed request.
PROBE_HEADERS = {"Access-Control-Allow-Origin": "*"}


class OriginLog:
    """Logs refused origins, at most once per origin per ``per_origin`` seconds and at most
    ``burst`` lines per ``window`` seconds."""

    def __init__(
        self,
        allowed: Sequence[str],
        *,
        per_origin: float = 60.0,
        burst: int = 10,
        window: float = 60.0,
        remember: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = list(allowed)
        self.per_origin = per_origin
        self.burst = burst
        self.window = window
        self.remember = remember
        self.clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()  # origin -> when it was last logged
        self._window_start = -window
        self._lines = 0
        self.held_back = 0  # refusals not logged since the last line
        self.refused = 0  # every refusal since start

    def refused_origin(self, origin: str) -> bool:
        """Count a refusal; log it unless rate-limited. True when a line was written."""
        self.refused += 1
        now = self.clock()
        last = self._last.get(origin)
        if last is not None and now - last < self.per_origin:
            self.held_back += 1
            return False
        if now - self._window_start >= self.window:
            self._window_start, self._lines = now, 0
        if self._lines >= self.burst:
            self.held_back += 1
            return False
        self._lines += 1
        self._last[origin] = now
        self._last.move_to_end(origin)
        while len(self._last) > self.remember:
            self._last.popitem(last=False)
        held, self.held_back = self.held_back, 0
        now_allowed = ",".join(self.allowed) if self.allowed else "empty: same origin only"
        log.warning(
            "refused a WebSocket from origin %r: it is not in %s (%s). A browser shows the page"
            " no reason; allow it with %s=<origins> or `tidings gateway --allow-origin %s`"
            " (`tidings dev --allow-origin %s` for the dev stack)%s",
            origin,
            SETTING,
            now_allowed,
            SETTING,
            origin,
            origin,
            f"; {held} more refusals held back since the last line" if held else "",
            extra={"origin": origin, "field": SETTING},
        )
        return True
