"""The bounded queue between a subscriber's socket reader and its iterator.

A full buffer pauses the reader, so a slow application pushes back to the gateway (which closes
it as a slow consumer; the subscriber then resumes) instead of growing memory without bound.
Each notification is kept with the epoch it belongs to, for the position the iterator reached.
"""

from __future__ import annotations

import asyncio
from collections import deque

from tidings import protocol as p

Item = tuple[str, p.NotificationFrame]  # (epoch, notification)


class Buffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Item] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._stopped = False  # no more puts: they return at once, dropping the notification
        self._ended = False  # the iterator ends once the buffer is empty

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: Item) -> None:
        """Queue ``item``, waiting while the buffer is full (unless stopped meanwhile)."""
        while len(self._items) >= self.limit and not self._stopped:
            self._writable.clear()
            await self._writable.wait()
        if self._stopped:
            return
        self._items.append(item)
        self._readable.set()

    async def get(self) -> Item | None:
        """The oldest item, waiting for one; ``None`` once ended and empty."""
        while not self._items:
            if self._ended:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def stop(self) -> None:
        """Take no more: a reader waiting for room gives up (the subscriber is closing)."""
        self._stopped = True
        self._writable.set()

    def end(self, *, discard: bool) -> None:
        """Take no more, and end the iterator once what is queued (or nothing) was read."""
        self.stop()
        self._ended = True
        if discard:
            self._items.clear()
        self._readable.set()
