"""The export engine: plan a room, run its shards, finalize the report.

The three steps are plain functions of a job id, so the same code runs inline (`vdr export`,
benchmarks) and as RQ tasks spread over any number of workers (`jobs.tasks`). Each step holds
a lease in Redis while it runs; a step whose worker died loses its lease and is queued again
by the reaper, and because every step checks what is already done, running one twice is safe.
The job is final only when the finalizer ran, and the finalizer runs only once every shard is
done: success is never reported while any part is still running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redis import Redis

from jobs import store
from jobs.config import EngineConfig
from jobs.destinations import Destination
from jobs.errors import Cancelled
from jobs.flow import THROTTLE_REASONS, AdaptiveLimit, ByteBudget
from jobs.local_dest import LocalDestination
from jobs.manifest import ManifestEntry, encode_lines
from jobs.plan import (
    ExportSpec,
    FileTask,
    Tree,
    mark_unseen,
    merge_earlier,
    split_shards,
    walk_tree,
)
from jobs.progress import emit_event, maybe_emit_progress
from jobs.s3_dest import S3Destination, parse_s3_url, shared_s3_client
from jobs.state import JobState, shard_number, shard_task
from jobs.transfer import FileFailed, FileMover, failed_entry
from vdr_client import RetryEvent, VdrClient

__all__ = ["Services", "finalize", "plan", "run_shards", "shards_ready_for_finalize"]

log = logging.getLogger("vdr.jobs.export")

MAX_TASK_ATTEMPTS = 5
"""A task started this many times (crashes, killed workers) is given up as failed."""

ClientFactory = Callable[..., VdrClient]


@dataclass
class Services:
    """What the engine needs from outside; tests and benchmarks pass their own."""

    redis: Redis
    engine: sa.Engine
    config: EngineConfig = field(default_factory=lambda: EngineConfig())
    client_factory: ClientFactory = VdrClient.from_settings
    s3_client_factory: Callable[[int], Any] = shared_s3_client


# --- planning ---------------------------------------------------------------------------------


def plan(spec: ExportSpec, services: Services) -> list[int] | None:
    """List the room and store its shards; returns the shard numbers (None: another holds it)."""
    state = JobState(services.redis, spec.job_id)
    with _lease(state, "plan", services.config) as held:
        if not held:
            return None
        if state.tasks().get("plan") == "done":
            return _shard_numbers(state)
        _mark_started(state, spec, services)
        shards: list[list[FileTask]] = []
        if state.cancel_requested():
            tree = Tree()
        else:
            tree, shards = _list_and_split(spec, state, services)
        totals = {"files_total": len(tree.files), "bytes_total": tree.total_bytes}
        state.save_plan([[t.model_dump() for t in shard] for shard in shards], tree.folders, totals)
        state.set_task("plan", "done")
    log.info("job %s: %d files, %d bytes, %d shards", spec.job_id, totals["files_total"],
             totals["bytes_total"], len(shards))
    started = {**totals, "shards": len(shards), "not_exportable": tree.skipped}
    emit_event(services.redis, spec.job_id, "started", started)
    return list(range(len(shards)))


def _list_and_split(
    spec: ExportSpec, state: JobState, services: Services
) -> tuple[Tree, list[list[FileTask]]]:
    """The room's tree, and its files cut into shards, knowing what earlier exports left."""
    with _client(services, spec, state, {}) as client:
        tree = walk_tree(client, spec.root_folder_id, concurrency=services.config.list_concurrency)
    with _destinations(spec, services) as destinations:
        earlier = [dest.read_manifest() for dest in _s3_first(destinations)]
        tree.files = merge_earlier(tree.files, earlier)
        for dest in destinations:
            present = dest.existing_paths()
            if present is not None:
                mark_unseen(tree.files, dest.url, present)
    limits = {"max_files": spec.shard_max_files, "max_bytes": spec.shard_max_bytes}
    return tree, split_shards(tree.files, **limits)


def _mark_started(state: JobState, spec: ExportSpec, services: Services) -> None:
    store.set_job_state(services.engine, spec.job_id, "running", only_from=("queued", "running"))
    services.redis.hsetnx(state.key("progress"), "started_at", time.time())


def _shard_numbers(state: JobState) -> list[int]:
    return sorted(shard_number(task) for task in state.tasks() if task.startswith("shard:"))


# --- shards -----------------------------------------------------------------------------------


def run_shards(spec: ExportSpec, numbers: Sequence[int], services: Services) -> list[int]:
    """Export the files of these shards with one pool; returns the shards this call finished.

    A shard another live process holds, or one already done, is left alone.
    """
    state = JobState(services.redis, spec.job_id)
    held = _claim_shards(state, numbers, services.config)
    if not held:
        return []
    keeper = _Keeper(state, held, services.config)
    keeper.start()
    try:
        runner = _ShardRunner(spec, state, services, keeper.stop)
        finished = runner.run([n for n in numbers if shard_task(n) in held])
    finally:
        keeper.close()
    return finished


def shards_ready_for_finalize(state: JobState) -> bool:
    """True once for a job whose shards are all over: the caller then runs the finalizer."""
    return _shards_over(state) and state.claim_task("finalize")


def _claim_shards(state: JobState, numbers: Sequence[int], config: EngineConfig) -> dict[str, str]:
    """Leases of the shards this process may run: task name -> lease token."""
    held: dict[str, str] = {}
    for number in numbers:
        task = shard_task(number)
        if state.tasks().get(task) in ("done", "failed"):
            continue
        token = state.acquire_lease(task, config.lease_s)
        if token is None:
            continue
        if state.count_attempt(task) > MAX_TASK_ATTEMPTS:
            log.error("job %s: %s started too often, giving up", state.job_id, task)
            state.set_task(task, "failed")
            state.release_lease(task, token)
            continue
        state.set_task(task, "running")
        held[task] = token
    return held


class _Keeper(threading.Thread):
    """Renews this process's leases and watches the cancel flag, off the transfer threads."""

    def __init__(self, state: JobState, leases: dict[str, str], config: EngineConfig) -> None:
        super().__init__(name=f"vdr-keeper-{state.job_id}", daemon=True)
        self.state = state
        self.leases = dict(leases)
        self.config = config
        self.stop = threading.Event()
        self.lost = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        renew_every = self.config.lease_s / 3
        last_renewal = time.monotonic()
        while not self._closed.wait(min(0.5, renew_every)):
            if self.state.cancel_requested():
                self.stop.set()
            if time.monotonic() - last_renewal >= renew_every:
                self._renew()
                last_renewal = time.monotonic()

    def release(self, task: str) -> None:
        with self._lock:
            token = self.leases.pop(task, None)
        if token is not None:
            self.state.release_lease(task, token)

    def close(self) -> None:
        self._closed.set()
        self.join()
        for task in list(self.leases):
            self.release(task)

    def _renew(self) -> None:
        with self._lock:
            leases = dict(self.leases)
        for task, token in leases.items():
            if not self.state.renew_lease(task, token, self.config.lease_s):
                log.warning("job %s: lease of %s lost; stopping here", self.state.job_id, task)
                self.lost.set()
                self.stop.set()


class _ShardRunner:
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
        self._recorder = _Recorder(state)

    def run(self, numbers: list[int]) -> list[int]:
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
        """As many threads as the limit may ever allow; the limit decides how many work."""
        threads = max(1, min(self.limit.maximum, files))
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
        if not self.limit.acquire(self.stop):
            return
        success = False
        try:
            entry, _ = self.mover.move(task)
            success = True
        except FileFailed as failure:
            entry = failed_entry(task, failure.reason)
            emit_event(self.services.redis, self.spec.job_id, "file_failed",
                       {"path": task.original_path, "reason": failure.reason})
        except Cancelled:
            return
        except Exception as error:  # a bug or an unforeseen library error: this file fails
            log.exception("job %s: %s failed unexpectedly", self.spec.job_id, task.original_path)
            entry = failed_entry(task, f"unexpected {type(error).__name__}")
        finally:
            self.limit.release(success=success)
        self._record(entry)

    def _record(self, entry: ManifestEntry) -> None:
        """Store the entry; counters move by the difference to what an earlier (crashed) run
        of this job already counted for the file, so every file counts once."""
        entry = entry.model_copy(update={"job_id": self.spec.job_id})
        earlier = self._earlier.get(entry.item_id)
        with self._lock:
            moved = entry.size - self._reported.pop(entry.item_id, 0)
        moved = moved if entry.status == "exported" else 0
        if earlier is not None and earlier.status != "failed" and entry.status == "verified":
            return  # intact since that run: its entry stays
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
        path = _item_path(event.path, self._paths)
        self.state.record_retry(path, event.reason)
        _emit_retry(self.services.redis, self.spec.job_id, path, event.reason)

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
        client_scope = _client(self.services, self.spec, self.state, self._paths,
                               self._on_client_retry)
        with client_scope as client, _destinations(self.spec, self.services) as destinations:
            yield FileMover(
                client, destinations, budget=ByteBudget(self.config.memory_budget),
                stop=self.stop, attempts=self.config.file_attempts,
                on_bytes=self._on_bytes, on_retry=self._on_retry,
            )


def _resumed(task: FileTask, rerun: bool) -> FileTask:
    """A task of a shard run before: an earlier run may have written it since planning, so
    every destination is asked (a crash may have lost its last entries from Redis)."""
    return task.model_copy(update={"unseen": []}) if rerun else task


class _Recorder:
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

    def __enter__(self) -> _Recorder:
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


# --- finalizing -------------------------------------------------------------------------------


def finalize(spec: ExportSpec, services: Services) -> store.Report | None:
    """Write the manifest everywhere, clean up, store the report; None if not this one's turn."""
    state = JobState(services.redis, spec.job_id)
    with _lease(state, "finalize", services.config) as held:
        if not held or state.tasks().get("finalize") == "done" or not _shards_over(state):
            return None
        entries = state.manifest_entries()
        locations: list[str] = []
        if entries or not state.cancel_requested():  # a job stopped before any file: leave all
            locations = _write_manifests(spec, state, services, entries)
        report = _report(spec, state, services, locations=locations)
        _close_job(spec, state, services, report)
        state.set_task("finalize", "done")
    return report


def _write_manifests(
    spec: ExportSpec, state: JobState, services: Services, entries: dict[str, ManifestEntry]
) -> list[str]:
    """Each destination's manifest: this run's entries, plus earlier ones for files of the
    room this run did not reach (cancelled), so the manifest keeps describing what is there."""
    planned = {task["item_id"] for n in _shard_numbers(state) for task in state.load_shard(n)}
    locations = []
    with _destinations(spec, services) as destinations:
        for dest in destinations:
            carried = [
                entry for entry in dest.read_manifest()
                if entry.item_id in planned and entry.item_id not in entries
                and entry.status != "failed"
            ]
            lines = encode_lines([*entries.values(), *carried])
            locations.append(dest.write_manifest(lines))
            dest.make_folders(state.load_folders())
            dest.clean_up()
    return locations


def _shards_over(state: JobState) -> bool:
    tasks = state.tasks()
    shards = [value for name, value in tasks.items() if name.startswith("shard:")]
    return tasks.get("plan") == "done" and all(value in ("done", "failed") for value in shards)


def fail_job(spec: ExportSpec, services: Services, error: str) -> store.Report:
    """End a job that cannot go on (room gone, destination refused): a failed report."""
    state = JobState(services.redis, spec.job_id)
    report = _report(spec, state, services, locations=[], error=error)
    _close_job(spec, state, services, report)
    return report


def _report(
    spec: ExportSpec, state: JobState, services: Services, *, locations: list[str],
    error: str | None = None,
) -> store.Report:
    counters = state.counters()
    failed_shards = [name for name, value in state.tasks().items() if value == "failed"]
    started = counters.get("started_at") or time.time()
    now = datetime.now(UTC)
    job = store.get_job(services.engine, spec.job_id)
    files_total = int(counters.get("files_total", 0))
    files_done = int(counters.get("files_done", 0))
    if failed_shards and error is None:
        error = f"{len(failed_shards)} shard(s) crashed repeatedly and were given up"
    return store.Report(
        id=store.new_id(), job_id=spec.job_id, kind="export", room_id=spec.room_id,
        room_name=spec.room_name, requested_by=spec.requested_by,
        state=_final_state(state, counters, error, files_done, files_total),
        destinations=spec.destination_urls(), files_total=files_total, files_done=files_done,
        files_skipped=int(counters.get("files_skipped", 0)),
        files_failed=int(counters.get("files_failed", 0)),
        bytes_total=int(counters.get("bytes_total", 0)),
        bytes_done=int(counters.get("bytes_done", 0)), retries=int(counters.get("retries", 0)),
        duration_s=round(time.time() - started, 3), failures=state.failures(),
        retried=state.retried(), manifest_locations=locations, error=error,
        created_at=job.created_at if job else now, finished_at=now,
    )


def _final_state(
    state: JobState, counters: dict[str, float], error: str | None, done: int, total: int
) -> store.JobState:
    if state.cancel_requested():
        return "cancelled"
    if error or counters.get("files_failed", 0) or done < total:
        return "failed"
    return "succeeded"


def _close_job(spec: ExportSpec, state: JobState, services: Services, report: store.Report) -> None:
    store.save_report(services.engine, report)
    store.set_job_state(services.engine, spec.job_id, report.state, error=report.error)
    state.set_final_state(report.state)
    summary = report.model_dump(mode="json", include={
        "id", "state", "files_total", "files_done", "files_skipped", "files_failed",
        "bytes_done", "retries", "duration_s", "manifest_locations", "error",
    })
    emit_event(services.redis, spec.job_id, "finished", {"report_id": report.id, **summary})
    state.finish()
    log.info("job %s: %s, %d/%d files, %d failed, %d retries in %.1fs", spec.job_id, report.state,
             report.files_done, report.files_total, report.files_failed, report.retries,
             report.duration_s)


# --- shared plumbing --------------------------------------------------------------------------


@contextmanager
def _lease(state: JobState, task: str, config: EngineConfig) -> Iterator[bool]:
    """Hold `task`'s lease (renewed in the background) for the block; False if taken."""
    token = state.acquire_lease(task, config.lease_s)
    if token is None:
        yield False
        return
    state.count_attempt(task)
    if state.tasks().get(task) != "done":
        state.set_task(task, "running")
    keeper = _Keeper(state, {task: token}, config)
    keeper.start()
    try:
        yield True
    finally:
        keeper.close()


@contextmanager
def _client(
    services: Services, spec: ExportSpec, state: JobState, paths: dict[str, str],
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> Iterator[VdrClient]:
    def record(event: RetryEvent) -> None:
        path = _item_path(event.path, paths)
        state.record_retry(path, event.reason)
        _emit_retry(services.redis, spec.job_id, path, event.reason)

    connections = services.config.max_concurrency + services.config.list_concurrency
    client = services.client_factory(on_retry=on_retry or record, max_connections=connections)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _destinations(spec: ExportSpec, services: Services) -> Iterator[list[Destination]]:
    config = services.config
    destinations: list[Destination] = []
    part_threads = config.part_uploads_per_file * 4
    pool = ThreadPoolExecutor(part_threads, thread_name_prefix="vdr-s3-part")
    try:
        if spec.local_root:
            root = Path(spec.local_root) / spec.room_folder
            destinations.append(LocalDestination(root, sync_each_file=config.sync_each_file))
        if spec.s3_url:
            bucket, prefix = parse_s3_url(spec.s3_url)
            client = services.s3_client_factory(config.max_concurrency + part_threads)
            destinations.append(S3Destination(
                client, bucket, f"{prefix}/{spec.room_folder}".strip("/"), part_pool=pool,
                part_size=config.part_size, multipart_threshold=config.multipart_threshold,
                parts_in_flight=config.part_uploads_per_file,
            ))
        yield destinations
    finally:
        pool.shutdown(wait=True)


def _s3_first(destinations: list[Destination]) -> list[Destination]:
    return sorted(destinations, key=lambda dest: not isinstance(dest, S3Destination))


def _item_path(api_path: str, paths: dict[str, str]) -> str:
    """The room path of the file a request was about, else the API path itself."""
    parts = api_path.split("/")
    if len(parts) >= 4 and parts[2] == "files":
        from urllib.parse import unquote

        return paths.get(unquote(parts[3]), api_path)
    return api_path


_last_retry_event: dict[str, float] = {}


def _emit_retry(redis: Redis, job_id: str, path: str, reason: str) -> None:
    """At most one retry event per job and second from this process; all are counted."""
    now = time.monotonic()
    if now - _last_retry_event.get(job_id, 0.0) < 1.0:
        return
    _last_retry_event[job_id] = now
    emit_event(redis, job_id, "retry", {"path": path, "reason": reason})
