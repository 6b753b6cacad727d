"""Progress of a job across all its shards: counters in Redis, events on `vdr:events`.

Counters are summed by Redis itself (HINCRBY from every shard), so a reader sees one job
whatever the number of workers. The rate is measured over the last minute of samples, the ETA
follows from it. Progress events are rate-limited per job through a short-lived Redis key, so
a hundred shards together still send one event every few seconds.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis import Redis
from redis.exceptions import RedisError

from jobs import defaults
from jobs.state import JobState

__all__ = ["EventType", "Progress", "emit_event", "read_progress"]

log = logging.getLogger("vdr.jobs.progress")

EventType = Literal["started", "progress", "retry", "file_failed", "finished"]

RATE_WINDOW_S = 60.0
"""The rate is bytes moved over (at most) this many recent seconds."""


class Progress(BaseModel):
    """Where a job stands, summed over every shard."""

    job_id: str
    state: str
    files_total: int = 0
    files_done: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    retries: int = 0
    failures: int = 0
    shards_total: int = 0
    shards_done: int = 0
    rate_bps: float = 0.0
    eta_s: float | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def fraction(self) -> float:
        """Share done, by bytes when there are any, else by files."""
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(1.0, self.files_done / self.files_total)
        return 1.0 if self.state in ("succeeded", "failed", "cancelled") else 0.0


def read_progress(job_id: str, *, redis: Redis) -> Progress:
    """The job's progress now (all zero for a job Redis knows nothing of)."""
    state = JobState(redis, job_id)
    counters = state.counters()
    tasks = state.tasks()
    shard_states = [value for name, value in tasks.items() if name.startswith("shard:")]
    counters["bytes_done"] = min(
        counters.get("bytes_done", 0) + state.bytes_in_flight(), counters.get("bytes_total", 0)
    )
    rate = _rate(state.samples(), counters)
    return Progress(
        job_id=job_id,
        state=state.final_state() or _running_state(counters, tasks),
        files_total=int(counters.get("files_total", 0)),
        files_done=int(counters.get("files_done", 0)),
        files_skipped=int(counters.get("files_skipped", 0)),
        files_failed=int(counters.get("files_failed", 0)),
        bytes_total=int(counters.get("bytes_total", 0)),
        bytes_done=int(counters.get("bytes_done", 0)),
        retries=int(counters.get("retries", 0)),
        failures=int(counters.get("files_failed", 0)),
        shards_total=len(shard_states),
        shards_done=sum(1 for value in shard_states if value in ("done", "failed")),
        rate_bps=rate,
        eta_s=_eta(counters, rate),
        started_at=_when(counters.get("started_at")),
        updated_at=_when(counters.get("updated_at")),
    )


def emit_event(redis: Redis, job_id: str, type_: EventType, data: dict[str, Any]) -> None:
    """Append one event to `vdr:events`; a Redis hiccup never fails the job."""
    fields = {"job_id": job_id, "type": type_, "data": json.dumps(data, default=str)}
    try:
        stream = defaults.EVENTS_STREAM
        redis.xadd(stream, fields, maxlen=defaults.EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
    except RedisError as error:
        log.warning("job %s: %s event not sent: %s", job_id, type_, error)


def maybe_emit_progress(redis: Redis, job_id: str, interval_s: float) -> None:
    """Send a progress event unless one was sent for this job less than `interval_s` ago."""
    now = time.monotonic()
    if interval_s > 0 and now - _last_tick.get(job_id, 0.0) < interval_s / 2:
        return  # this process asked Redis very recently: no need to ask again per file
    _last_tick[job_id] = now
    state = JobState(redis, job_id)
    try:
        if not state.progress_tick(interval_s):
            return
        now = time.time()
        state.sample_rate(now, state.counters().get("bytes_moved", 0))
    except RedisError as error:
        log.warning("job %s: progress not updated: %s", job_id, error)
        return
    progress = read_progress(job_id, redis=redis)
    emit_event(redis, job_id, "progress", progress.model_dump(mode="json"))


_last_tick: dict[str, float] = {}


def _rate(samples: list[tuple[float, float]], counters: dict[str, float]) -> float:
    """Bytes per second over the recent window, from the newest sample back."""
    if len(samples) >= 2:
        newest_time, newest_bytes = samples[0]
        oldest_time, oldest_bytes = samples[1]  # even when older than the window (a stall)
        for moment, done in samples[2:]:
            if newest_time - moment >= RATE_WINDOW_S:
                break
            oldest_time, oldest_bytes = moment, done
        elapsed = newest_time - oldest_time
        if elapsed > 0:
            return max(0.0, (newest_bytes - oldest_bytes) / elapsed)
    started = counters.get("started_at")
    moved = counters.get("bytes_moved", 0)
    if started and moved:
        elapsed = counters.get("updated_at", time.time()) - started
        return moved / elapsed if elapsed > 0 else 0.0
    return 0.0


def _eta(counters: dict[str, float], rate: float) -> float | None:
    """Seconds left at the current rate; None while there is no rate to go by."""
    remaining = counters.get("bytes_total", 0) - counters.get("bytes_done", 0)
    if remaining <= 0:
        return 0.0
    return remaining / rate if rate > 0 else None


def _running_state(counters: dict[str, float], tasks: dict[str, str]) -> str:
    return "running" if tasks and counters.get("started_at") else "queued"


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None
