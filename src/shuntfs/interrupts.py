"""The kernel's INTERRUPT for ``async def`` handlers: the coroutine serving the request is cancelled.

The dispatcher notes which request each thread serves (:func:`serving`); the async bridge registers the future of
the coroutine it runs for that request; the INTERRUPT cancels it, and the handler, which sees CancelledError, is
answered EINTR. An INTERRUPT that arrives before the handler started (the kernel sends it on another thread) is
remembered for a while, and cancels the coroutine as soon as it is registered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future

_current = threading.local()


class Early:
    """INTERRUPTs for requests not (yet) being served where they were looked for: the newest ``size`` are kept
    (most are for requests that already replied), so one that overtook its request still reaches it. The caller
    holds its own lock."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._uniques: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._uniques)

    def add(self, unique: int) -> None:
        self._uniques[unique] = None
        if len(self._uniques) > self.size:
            self._uniques.popitem(last=False)

    def take(self, unique: int) -> bool:
        """Whether ``unique`` was interrupted before it got here (and forget it)."""
        return self._uniques.pop(unique, 1) is None


def serving(unique: int) -> None:
    """The calling thread now serves request ``unique``."""
    _current.unique = unique


def current() -> int:
    """The request the calling thread serves (0 if none)."""
    return getattr(_current, "unique", 0)


class Cancellations:
    """The futures of coroutines that serve requests, by request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._early = Early()

    def track(self, unique: int, future: Future) -> None:
        with self._lock:
            if self._early.take(unique):
                future.cancel()  # interrupted before it started
                return
            self._futures[unique] = future

    def done(self, unique: int) -> None:
        with self._lock:
            self._futures.pop(unique, None)

    def interrupt(self, unique: int) -> None:
        """The kernel's INTERRUPT for ``unique``."""
        with self._lock:
            future = self._futures.get(unique)
            if future is None:
                self._early.add(unique)
                return
        future.cancel()
