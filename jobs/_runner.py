"""Running shards: every file of them through one bounded, adaptive pool of threads.

`ShardRunner` takes the files of the shards this process leased, moves each with
`jobs.transfer.FileMover`, records what became of it (`Recorder`, in batches), and marks a
shard done only once its entries are stored and its files durable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from jobs._services import Services, emit_retry, item_path, open_client, open_destinations
from jobs.destinations import Destination
from jobs.errors import Cancelled
from jobs.flow import THROTTLE_REASONS, AdaptiveLimit, ByteBudget
from jobs.manifest import ManifestEntry
from jobs.plan import ExportSpec, FileTask
from jobs.progress import emit_event, maybe_emit_progress
from jobs.state import JobState, shard_task
from jobs.transfer import FileFailed, FileMover, failed_entry
from vdr_client import RetryEvent

__all__ = ["Recorder", "ShardRunner"]

log = logging.getLogger("vdr.jobs.export")


class ShardRunner:
    """Runs the files of some shards through one bounded, adaptive pool of threads."""

    def __init__(
        self, spec: ExportSpec, state: JobState, services: Services, stop: threading.Event
    ) -> None:
        self.spec = spec
        self.state = state
        self.services = services
        self.config = services.config
        self.stop = stop
        ceiling = min(spec.concurrency, self.config.max_concurrency)  # what the admin allows
        self.limit = AdaptiveLimit(ceiling, minimum=self.config.min_concurrency, maximum=ceiling)
        self._lock = threading.Lock()
        self._reported: dict[str, int] = {}  # item id -> bytes of it already in the counters
        self._earlier: dict[str, ManifestEntry] = {}  # this job's entries from a crashed run
        self._paths: dict[str, str] = {}
        self._synced: list[Destination] = []  # destinations to make durable as shards end
        self._recorder = Recorder(state)

    def run(self, numbers: list[int]) -> list[int]:
        if self.state.cancel_requested():  # queued before the cancel: nothing to do
            self._close_cancelled(set(numbers))
            return []
        shards = {number: self._load(number) for number in numbers}
        self._remaining = {number: len(tasks) for number, tasks in shards.items()}
        self._queue = iter([(n, task) for n, tasks in shards.items() for task in tasks])
        self._finished: list[int] = []
        for number, count in self._remaining.items():
            if count == 0:
                self._finish_shard(number)
        with self._mover() as mover, self._recorder:
            self.mover = mover
            self._synced = mover.destinations
            self._run_pool(sum(self._remaining.values()))
        if self.state.cancel_requested():
            self._close_cancelled(set(numbers) - set(self._finished))
        return self._finished

    def _run_pool(self, files: int) -> None:
        """Twice as many threads as the limit may ever allow: as many downloads as it lets
        run, and as many files again being checked or committed meanwhile."""
        threads = max(1, min(2 * self.limit.maximum, files))
        with ThreadPoolExecutor(threads, thread_name_prefix="vdr-export") as pool:
            for future in [pool.submit(self._work) for _ in range(threads)]:
                future.result()

    def _work(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                number, task = next(self._queue, (-1, None))
            if task is None:
                return
            self._process(task)
            with self._lock:
                self._remaining[number] -= 1
                last = self._remaining[number] == 0
            if last and not self.stop.is_set():
                self._finish_shard(number)

    def _load(self, number: int) -> list[FileTask]:
        tasks = [FileTask.model_validate(raw) for raw in self.state.load_shard(number)]
        earlier = self.state.entries_for(task.item_id for task in tasks)
        for task in tasks:
            self._paths[task.item_id] = task.original_path
        mine = {item: e for item, e in earlier.items() if e.job_id == self.spec.job_id}
        self._earlier.update(mine)
        rerun = self.state.attempts(shard_task(number)) > 1
        return [_resumed(task.remember(earlier.get(task.item_id)), rerun) for task in tasks]

    def _process(self, task: FileTask) -> None:
        try:
            entry, _ = self.mover.move(task)
        except FileFailed as failure:
            entry = failed_entry(task, failure.reason)
            emit_event(self.services.redis, self.spec.job_id, "file_failed",
                       {"path": task.original_path, "reason": failure.reason})
        except Cancelled:
            return
        except Exception as error:  # a bug or an unforeseen library error: this file fails
            log.exception("job %s: %s failed unexpectedly", self.spec.job_id, task.original_path)
            entry = failed_entry(task, f"unexpected {type(error).__name__}")
        self._record(entry)

    def _record(self, entry: ManifestEntry) -> None:
        """Store the entry; counters move by the difference to what an earlier (crashed) run
        of this job already counted for the file, so every file counts once."""
        entry = entry.model_copy(update={"job_id": self.spec.job_id})
        earlier = self._earlier.get(entry.item_id)
        with self._lock:
            moved = entry.size - self._reported.pop(entry.item_id, 0)
        moved = moved if entry.status == "exported" else 0
        if earlier is not None and earlier.status == "verified" and entry.status == "verified":
            return  # already counted as kept by that run
        counters = _minus(_contribution(entry), _contribution(earlier))
        self._recorder.add(entry, {**counters, "bytes_moved": moved})
        maybe_emit_progress(self.services.redis, self.spec.job_id, self.config.progress_interval_s)

    def _on_bytes(self, task: FileTask, written: int) -> None:
        """Bytes of a file so far (per attempt); shown in progress every few megabytes."""
        with self._lock:
            reported = self._reported.get(task.item_id, 0)
            if written < reported:  # a new attempt started over
                self._reported[task.item_id] = reported = 0
            if written - reported < _BYTES_FLUSH:
                return
            self._reported[task.item_id] = written
        self.state.record_moved(task.item_id, written, moved=written - reported)

    def _on_retry(self, task: FileTask, reason: str) -> None:
        self.state.record_retry(task.original_path, reason)

    def _on_client_retry(self, event: RetryEvent) -> None:
        if event.reason in THROTTLE_REASONS:
            self.limit.throttled()
        path = item_path(event.path, self._paths)
        self.state.record_retry(path, event.reason)
        emit_retry(self.services.redis, self.spec.job_id, path, event.reason)

    def _finish_shard(self, number: int) -> None:
        self._recorder.flush()  # a shard is done only once its entries are stored ...
        for dest in self._synced:
            dest.sync()  # ... and its files durable
        self.state.set_task(shard_task(number), "done")
        self._finished.append(number)
        log.info("job %s: shard %d done", self.spec.job_id, number)

    def _close_cancelled(self, numbers: set[int]) -> None:
        """A cancelled job's unfinished shards count as over, so the finalizer can report."""
        for number in numbers:
            self.state.set_task(shard_task(number), "done")

    @contextmanager
    def _mover(self) -> Iterator[FileMover]:
        client_scope = open_client(
            self.services, self.spec, self.state, self._paths, self._on_client_retry
        )
        with client_scope as client, open_destinations(self.spec, self.services) as destinations:
            yield FileMover(
                client, destinations, source_limit=self.limit,
                budget=ByteBudget(self.config.memory_budget),
                stop=self.stop, attempts=self.config.file_attempts,
                on_bytes=self._on_bytes, on_retry=self._on_retry,
            )


def _resumed(task: FileTask, rerun: bool) -> FileTask:
    """A task of a shard run before: an earlier run may have written it since planning, so
    every destination is asked (a crash may have lost its last entries from Redis)."""
    return task.model_copy(update={"unseen": []}) if rerun else task


class Recorder:
    """Manifest entries and counters of finished files, written to Redis in batches.

    One round trip per file cost as much as the rest of a small file's handling; a batch goes
    out every tenth of a second instead. A crash loses at most that last batch, whose files the
    rerun then checks at their destination like any other.
    """

    INTERVAL_S = 0.1

    def __init__(self, state: JobState) -> None:
        self.state = state
        self._entries: list[ManifestEntry] = []
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the batch
        self._flushing = threading.Lock()  # one writer at a time, in order
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vdr-recorder", daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed.set()
        self._thread.join()
        self.flush()

    def add(self, entry: ManifestEntry, counters: dict[str, int]) -> None:
        with self._lock:
            self._entries.append(entry)
            for name, amount in counters.items():
                self._counters[name] = self._counters.get(name, 0) + amount

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                entries, counters = self._entries, self._counters
                self._entries, self._counters = [], {}
            if not entries:
                return
            try:
                self.state.record_entries(entries, counters)
            except Exception:
                with self._lock:  # keep them for the next try
                    self._entries[:0] = entries
                    for name, amount in counters.items():
                        self._counters[name] = self._counters.get(name, 0) + amount
                raise

    def _run(self) -> None:
        while not self._closed.wait(self.INTERVAL_S):
            try:
                self.flush()
            except Exception as error:  # Redis away for a moment: the next tick tries again
                log.warning("job %s: progress not stored yet: %s", self.state.job_id, error)


_BYTES_FLUSH = 8 * 1024 * 1024
"""Bytes of a large file between two progress updates of it."""


def _contribution(entry: ManifestEntry | None) -> dict[str, int]:
    """What one file adds to the job's counters."""
    if entry is None:
        return {}
    if entry.status == "failed":
        return {"files_failed": 1}
    counted = {"files_done": 1, "bytes_done": entry.size}
    if entry.status == "verified":
        counted["files_skipped"] = 1
    return counted


def _minus(new: dict[str, int], old: dict[str, int]) -> dict[str, int]:
    return {name: new.get(name, 0) - old.get(name, 0) for name in {*new, *old}}
