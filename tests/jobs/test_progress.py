"""Progress arithmetic: rate and ETA from the samples a job keeps in Redis."""

from __future__ import annotations

from jobs.progress import RATE_WINDOW_S, _rate


def test_the_rate_spans_the_samples_within_the_window() -> None:
    samples = [(100.0, 9_000.0), (90.0, 4_000.0), (80.0, 0.0)]  # newest first

    assert _rate(samples, {}) == 450.0


def test_a_stall_longer_than_the_window_still_gives_a_rate() -> None:
    newest, before = 1000.0, 1000.0 - 2 * RATE_WINDOW_S
    samples = [(newest, 5_000_000.0), (before, 1_000_000.0)]

    assert _rate(samples, {}) == 4_000_000.0 / (2 * RATE_WINDOW_S)


def test_without_samples_the_rate_comes_from_the_counters() -> None:
    counters = {"started_at": 10.0, "updated_at": 20.0, "bytes_moved": 500.0}

    assert _rate([], counters) == 50.0
