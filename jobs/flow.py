"""Flow control of one export process: how many files at once, how many bytes in memory.

`AdaptiveLimit` is AIMD, as TCP does it: every throttle answer from the source (429, 503)
halves the number of downloads in flight (a file, or one part of a large file), at most once per
cool-down since one burst of 429s is one signal, and every download finished adds 1/limit, so
the limit grows back by one per round of downloads once the source stops complaining.
`ByteBudget` bounds the bytes S3 buffers may hold across all files, so memory stays flat
whatever the file sizes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jobs.errors import Cancelled

log = logging.getLogger("vdr.jobs.flow")

THROTTLE_REASONS = frozenset({"429", "503"})
"""Retry reasons that mean "slow down" rather than "that one request failed"."""


class AdaptiveLimit:
    """A semaphore whose size shrinks on throttling and grows back on success."""

    def __init__(
        self,
        initial: int,
        *,
        minimum: int = 1,
        maximum: int | None = None,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum or initial)
        self._limit = min(max(initial, self.minimum), self.maximum)
        self._successes = 0  # since the limit last grew
        self._in_flight = 0
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_cut = float("-inf")
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; False if `stop` was set while waiting."""
        with self._cond:
            while self._in_flight >= self._limit:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._in_flight += 1
            return True

    @contextmanager
    def slot(self, stop: threading.Event) -> Iterator[None]:
        """Hold one slot for the block; its outcome (raised or not) feeds the limit.

        Raises Cancelled when `stop` is set while waiting for the slot."""
        if not self.acquire(stop):
            raise Cancelled("stopped while waiting for the source")
        success = False
        try:
            yield
            success = True
        finally:
            self.release(success=success)

    def release(self, *, success: bool) -> None:
        with self._cond:
            self._in_flight -= 1
            if success and self._limit < self.maximum:
                self._successes += 1
                if self._successes >= self._limit:  # one more per full round of files
                    self._limit += 1
                    self._successes = 0
            self._cond.notify_all()

    def throttled(self) -> None:
        """The source asked us to slow down: halve the limit (once per cool-down)."""
        with self._cond:
            now = self._clock()
            if now - self._last_cut < self._cooldown_s:
                return
            self._last_cut = now
            before = self._limit
            self._limit = max(self.minimum, self._limit // 2)
            self._successes = 0
        log.info("source throttles: files in flight %d -> %d", before, self._limit)


class ByteBudget:
    """Bytes of buffers handed out at once; `acquire` waits until enough were given back."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, amount: int, stop: threading.Event | None = None) -> int:
        """Reserve `amount` bytes (at most the capacity); the bytes reserved, 0 if stopped."""
        amount = min(amount, self.capacity)
        with self._cond:
            while self._used + amount > self.capacity:
                if stop is not None and stop.is_set():
                    return 0
                self._cond.wait(0.2)
            self._used += amount
            return amount

    def release(self, amount: int) -> None:
        with self._cond:
            self._used -= amount
            self._cond.notify_all()
