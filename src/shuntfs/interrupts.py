"""The kernel's INTERRUPT for ``async def`` handlers: the coroutine serving the request is cancelled.

The dispatcher notes which request each thread serves (:func:`serving`); the async bridge registers the future of
the coroutine it runs for that request; the INTERRUPT cancels it, and the handler, which sees CancelledError, is
answered EINTR. An INTERRUPT that arrives before the handler started (the kernel sends it on another thread) is
remembered for a while, and cancels the coroutine as soon as it is registered.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

_REMEMBERED = 256  # INTERRUPTs kept for requests not (yet) running a coroutine; most already replied
_current = threading.local()


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
        self._early: dict[int, None] = {}  # ordered: the oldest are dropped first

    def track(self, unique: int, future: Future) -> None:
        with self._lock:
            if self._early.pop(unique, 1) is None:
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
                self._early[unique] = None
                while len(self._early) > _REMEMBERED:
                    del self._early[next(iter(self._early))]
                return
        future.cancel()
