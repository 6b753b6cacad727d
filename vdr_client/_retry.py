"""When and how long to wait before trying a call again.

A failed attempt is described by a `Failure`; a `RetryBudget` (one per call) decides whether
another attempt is worth making: the policy's attempt count and total deadline both bound it,
`Retry-After` from the server wins over our own backoff, and our backoff is exponential with
full jitter, so a hundred threads throttled together do not come back together.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vdr_client._errors import DeadlineExceeded, VdrError

log = logging.getLogger("vdr.client")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries: 429, 5xx and broken connections are retried.

    `attempts` counts the first try. `deadline_s` bounds one call from its first request to its
    last; for a download it bounds the time without progress, so a large file may take longer.
    """

    attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0
    deadline_s: float = 600.0

    def backoff_s(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff before retry number `retry_number` (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry_number - 1))
        return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen; handed to `on_retry` so jobs can count and report them."""

    method: str
    path: str
    reason: str
    attempt: int
    delay_s: float


@dataclass(frozen=True)
class Failure:
    """One failed attempt, and what the caller sees if we stop trying."""

    error: VdrError
    reason: str
    retryable: bool
    retry_after_s: float | None = None
    reached_server: bool = True
    counts: bool = True  # False for "not ready yet" answers, bounded by the deadline only


class FailedAttempt(Exception):
    """Internal: carries a Failure from the attempt to its RetryBudget; never leaves the client."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RetryBudget:
    """The attempts and time one call may spend; `wait_after` sleeps or raises."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        method: str,
        path: str,
        idempotent: bool = True,
        on_retry: Callable[[RetryEvent], None] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.policy = policy
        self.method = method
        self.path = path
        self.idempotent = idempotent
        self._on_retry = on_retry
        self._clock = clock
        self._sleep = sleep
        self.retries = 0
        self._failed = 0
        self._started = clock()

    def remaining_s(self) -> float:
        """Time left before the deadline."""
        return self.policy.deadline_s - (self._clock() - self._started)

    def progressed(self) -> None:
        """A download moved forward: its attempts and deadline start again."""
        self._failed = 0
        self._started = self._clock()

    def wait_after(self, failure: Failure) -> None:
        """Sleep before the next attempt, or raise the failure's error if none is allowed."""
        if not self._may_retry(failure):
            raise failure.error
        if failure.counts:
            self._failed += 1
            if self._failed >= self.policy.attempts:
                raise failure.error
        delay = self._delay_for(failure)
        self._check_deadline(failure, delay)
        self.retries += 1
        self._announce(failure, delay)
        self._sleep(delay)

    def _may_retry(self, failure: Failure) -> bool:
        if not failure.retryable:
            return False
        # A call that is not idempotent is retried only when the server surely did nothing.
        return self.idempotent or not failure.reached_server

    def _delay_for(self, failure: Failure) -> float:
        if failure.retry_after_s is not None:
            return failure.retry_after_s
        return self.policy.backoff_s(max(1, self._failed))

    def _check_deadline(self, failure: Failure, delay: float) -> None:
        if delay <= self.remaining_s():
            return
        message = (
            f"{self.method} {self.path}: gave up after {self._failed} failed attempt(s) within "
            f"the {self.policy.deadline_s:g} s deadline; last failure: {failure.reason}"
        )
        raise DeadlineExceeded(message) from failure.error

    def _announce(self, failure: Failure, delay: float) -> None:
        log.debug(
            "retrying %s %s in %.2f s (%s, attempt %d)",
            self.method, self.path, delay, failure.reason, self._failed + 1,
        )
        if self._on_retry is not None:
            event = RetryEvent(self.method, self.path, failure.reason, self._failed + 1, delay)
            self._on_retry(event)
