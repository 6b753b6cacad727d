"""Flow control: AIMD on throttling, byte budget, shard splitting, manifest lines."""

from __future__ import annotations

import json
import threading

import pytest

from jobs.errors import Cancelled
from jobs.flow import AdaptiveLimit, ByteBudget
from jobs.manifest import ManifestEntry, encode_lines, parse_lines
from jobs.plan import FileTask, split_shards


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttling_halves_the_limit_once_per_cooldown_and_success_grows_it_back() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(16, minimum=1, maximum=16, cooldown_s=1.0, clock=clock)

    limit.throttled()
    limit.throttled()  # same burst of 429s: one signal
    assert limit.limit == 8
    clock.now = 1.5
    limit.throttled()
    assert limit.limit == 4

    for _ in range(4 + 5 + 6 + 7):  # one round of files per step of +1
        assert limit.acquire()
        limit.release(success=True)
    assert limit.limit == 8


def test_the_limit_never_drops_below_its_floor() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(4, minimum=2, cooldown_s=0.0, clock=clock)
    for step in range(10):
        clock.now = step
        limit.throttled()
    assert limit.limit == 2


def test_acquire_blocks_at_the_limit_and_a_stop_releases_the_waiter() -> None:
    limit = AdaptiveLimit(1)
    stop = threading.Event()
    assert limit.acquire(stop)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limit.acquire(stop)))
    waiter.start()

    waiter.join(0.3)
    assert waiter.is_alive()
    stop.set()
    waiter.join(2)
    assert result == [False]



def test_a_slot_counts_only_blocks_that_end_well_and_a_stop_cancels_the_wait() -> None:
    limit = AdaptiveLimit(1, maximum=2)
    stop = threading.Event()

    with pytest.raises(OSError), limit.slot(stop):
        raise OSError("cut")
    assert (limit.in_flight, limit.limit) == (0, 1)  # a failure does not grow the limit
    with limit.slot(stop):
        assert limit.in_flight == 1
    assert (limit.in_flight, limit.limit) == (0, 2)

    stop.set()
    assert limit.acquire(stop) and limit.acquire(stop)  # both slots taken ...
    with pytest.raises(Cancelled), limit.slot(stop):  # ... so the stop ends the wait
        pytest.fail("the block ran without a slot")

def test_byte_budget_waits_until_bytes_are_given_back() -> None:
    budget = ByteBudget(100)
    assert budget.acquire(80) == 80
    done = threading.Event()
    threading.Thread(target=lambda: (budget.acquire(50), done.set())).start()

    assert not done.wait(0.3)
    budget.release(80)
    assert done.wait(2)
    assert budget.used == 50


def task(number: int, size: int) -> FileTask:
    return FileTask(item_id=f"f{number}", version="1", etag="e", size=size,
                    original_path=f"/{number:03d}", written_path=f"{number:03d}")


def test_shards_respect_file_and_byte_limits_and_keep_path_order() -> None:
    tasks = [task(n, 10) for n in range(10)] + [task(10, 1000), task(11, 10)]

    shards = split_shards(tasks, max_files=4, max_bytes=100)

    assert [[t.item_id for t in shard] for shard in shards] == [
        ["f0", "f1", "f2", "f3"], ["f4", "f5", "f6", "f7"], ["f8", "f9"], ["f10"], ["f11"]]


def test_a_name_with_unicode_line_breaks_stays_on_one_manifest_line() -> None:
    name = "/minutes\u2028draft\x85v2\u2029.pdf"
    entry = ManifestEntry(item_id="1", version="1", etag="e", original_path=name,
                          written_path="minutes_draft_v2_.pdf", size=3, sha256="ab",
                          status="exported")

    text = b"".join(encode_lines([entry])).decode()

    assert len(text.splitlines()) == 1
    assert json.loads(text)["original_path"] == name
    assert list(parse_lines(text.encode().splitlines())) == [entry]
