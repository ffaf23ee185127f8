"""One shape for every long-running part of a process, and one supervisor for all of them.

A part is an object with a ``name`` and an ``async run()`` that runs until it is cancelled
(the upkeep loops, a server, the NATS link). A bare ``ensure_future`` task that raises dies
silently and leaves a process that looks alive; a part that returns or raises here is logged
and reported, and the process stops with a clear error instead (fail fast: the orchestrator
restarts it whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol, TypeVar

from tidings.errors import PartFailed

log = logging.getLogger(__name__)

T = TypeVar("T")
_background: set[asyncio.Task[Any]] = set()
_RECANCEL = 2.0  # seconds a cancelled part has to end before it is cancelled again (stop)


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run a short step in the background (a hello, a resume), keeping a reference until it is
    done; an exception it did not handle itself is logged, not lost."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_settled)
    return task


def _settled(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background step failed", exc_info=task.exception())


class Part(Protocol):
    """A long-running piece of a process; ``run`` only ends when it is cancelled."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...


class Supervisor:
    """Starts parts, stops them together (last started, first stopped), and fails fast.

    The first part that ends by itself resolves :meth:`failed` with a :class:`PartFailed` and
    calls ``on_failure`` (e.g. to make a server exit); the others keep running until
    :meth:`stop`.
    """

    def __init__(self, *, on_failure: Callable[[PartFailed], None] | None = None) -> None:
        self.on_failure = on_failure
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._stopping = False
        self._failure: PartFailed | None = None
        self._failed: asyncio.Future[PartFailed] | None = None

    @property
    def failure(self) -> PartFailed | None:
        """Why the first part that died did, or None while every part runs."""
        return self._failure

    @property
    def names(self) -> list[str]:
        """The parts running now, in start order."""
        return [name for task, name in self._tasks.items() if not task.done()]

    def start(self, part: Part) -> None:
        task = asyncio.ensure_future(part.run())
        task.set_name(f"tidings-{part.name}")
        self._tasks[task] = part.name
        task.add_done_callback(self._ended)

    def failed(self) -> asyncio.Future[PartFailed]:
        """Resolves with the failure of the first part that dies."""
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
            if self._failure is not None:
                self._failed.set_result(self._failure)
        return self._failed

    async def watch(self, step: Awaitable[T]) -> T:
        """Await ``step`` (e.g. a start-up wait) unless a part dies first: then raise why."""
        waiting = asyncio.ensure_future(step)
        failed = self.failed()
        await asyncio.wait((waiting, failed), return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            raise failed.result()
        return waiting.result()

    async def stop(self) -> None:
        """Cancel every part, newest first, and wait for each to finish its clean-up."""
        self._stopping = True
        for task in reversed(list(self._tasks)):
            # Cancel again until it ends: a library may swallow one cancellation (nats-py's
            # first connect to a dead server retries inside a `wait_for`, which on Python 3.11
            # can lose the cancel), and a part that never ends would hang the process's stop.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=_RECANCEL)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def _ended(self, task: asyncio.Task[Any]) -> None:
        name = self._tasks.get(task, task.get_name())
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            failure = PartFailed(f"{name} stopped unexpectedly")
            log.error("part stopped unexpectedly", extra={"part": name})
        else:
            failure = PartFailed(f"{name} failed: {type(exc).__name__}: {exc}")
            log.error("part failed", extra={"part": name}, exc_info=exc)
        if self._failure is not None:
            return  # the first failure is the one reported
        self._failure = failure
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(failure)
        if self.on_failure is not None:
            self.on_failure(failure)


@contextmanager
def absorb_exit_signals() -> Iterator[list[int]]:
    """Let SIGTERM/SIGINT end a uvicorn-served process with exit 0 once uvicorn shut down.

    uvicorn re-raises the signal after its graceful shutdown; with these handlers in place the
    re-raised signal is recorded instead of killing the process with a signal status.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(sig: int, _frame: FrameType | None) -> None:
        received.append(sig)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
