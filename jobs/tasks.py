"""RQ entry points, importable by dotted path (`jobs.tasks.run_export_shard`), and queueing.

Each export is three kinds of task: one planner, one task per shard, one finalizer. The
planner queues the shards; the shard that finishes last queues the finalizer. Tasks are
retried by RQ when they raise (with back-off); when a worker dies outright, its lease expires
and the reaper in `vdr worker` queues the task again (`requeue_abandoned`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from jobs import defaults, engine, store
from jobs.config import EngineConfig
from jobs.errors import DestinationRefused, InvalidRequest, JobNotFound
from jobs.plan import ExportSpec
from jobs.state import ACTIVE_JOBS, JobState, active_jobs, shard_number, shard_task
from vdr_client import BadRequest, NotFound, Unauthorized

__all__ = [
    "enqueue_task",
    "job_abandoned",
    "requeue_abandoned",
    "run_export_finalize",
    "run_export_plan",
    "run_export_shard",
]

log = logging.getLogger("vdr.jobs.tasks")

PERMANENT_ERRORS = (NotFound, Unauthorized, BadRequest, InvalidRequest, DestinationRefused)
"""Errors no retry can fix: the job fails at once with the error as its reason."""

RETRY_INTERVALS_S = [5, 30, 120]
"""RQ waits this long before the 1st, 2nd, 3rd retry of a task that raised."""

REAPER_LOCK = "vdr:reaper"
"""Held for a moment by the worker whose reaper is looking for abandoned tasks."""

_LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


# --- the tasks --------------------------------------------------------------------------------


def run_export_plan(job_id: str) -> int:
    """List the room, store its shards and queue them; returns the number of shards."""
    services, spec = _context(job_id)
    if _job_over(services, job_id):
        return 0
    with _fail_job_when_hopeless(spec, services):
        _refuse_another_proxy(spec)
        numbers = engine.plan(spec, services)
        states = JobState(services.redis, job_id).tasks()
        for number in numbers or []:
            if states.get(shard_task(number)) == "queued":  # a rerun skips what already ran
                enqueue_task(services.redis, spec, shard_task(number))
        _queue_finalize_if_ready(services, spec)
        return len(numbers or [])
    return 0


def run_export_shard(job_id: str, number: int) -> list[int]:
    """Export one shard's files; the last shard to finish queues the finalizer."""
    services, spec = _context(job_id)
    if _job_over(services, job_id):
        return []
    state = JobState(services.redis, job_id)
    try:
        _refuse_another_proxy(spec)
        finished = engine.run_shards(spec, [number], services)
    except Exception:
        if _last_attempt():
            state.set_task(shard_task(number), "failed")
            _queue_finalize_if_ready(services, spec)
        raise
    _queue_finalize_if_ready(services, spec)
    return finished


def run_export_finalize(job_id: str) -> str | None:
    """Write manifests, clean up and store the report; returns the report id."""
    services, spec = _context(job_id)
    if _job_over(services, job_id):
        return None
    with _fail_job_when_hopeless(spec, services):
        report = engine.finalize(spec, services)
        return report.id if report else None
    return None


# --- queueing ---------------------------------------------------------------------------------

_TASKS: dict[str, tuple[Callable[..., Any], int]] = {
    "plan": (run_export_plan, defaults.PLAN_TIMEOUT_S),
    "shard": (run_export_shard, defaults.SHARD_TIMEOUT_S),
    "finalize": (run_export_finalize, defaults.FINALIZE_TIMEOUT_S),
}


def enqueue_task(redis: Redis, spec: ExportSpec, task: str) -> Job:
    """Queue one task of a job on the job's queue, remembering which RQ job runs it."""
    kind = task.split(":", 1)[0]
    function, timeout = _TASKS[kind]
    args: tuple[Any, ...] = (spec.job_id, shard_number(task)) if kind == "shard" else (spec.job_id,)
    queue = Queue(spec.queue, connection=redis)
    rq_job = queue.enqueue(
        function, *args,
        job_id=f"{spec.job_id}-{task.replace(':', '-')}-{uuid.uuid4().hex[:6]}",
        job_timeout=timeout, retry=Retry(max=defaults.TASK_RETRIES, interval=RETRY_INTERVALS_S),
        result_ttl=defaults.STATE_TTL_S, failure_ttl=defaults.STATE_TTL_S,
        description=f"export {spec.room_name!r} ({spec.job_id}) {task}",
    )
    state = JobState(redis, spec.job_id)
    state.claim_task(task)
    redis.hset(state.key("rq"), task, rq_job.id)
    redis.expire(state.key("rq"), defaults.STATE_TTL_S)
    return rq_job


def requeue_abandoned(redis: Redis, *, every_s: float | None = None) -> list[str]:
    """Queue again every task whose worker died; returns "job/task" of each one requeued.

    A running task without a lease lost its worker; a queued task without a live RQ job was
    lost between two steps; a job whose shards are all over but has no finalizer gets one.
    With `every_s`, only one process in that many seconds does the work (a hundred workers
    need not all look).
    """
    if every_s and not redis.set(REAPER_LOCK, 1, nx=True, px=int(every_s * 1000)):
        return []
    requeued = []
    for job_id in active_jobs(redis):
        state = JobState(redis, job_id)
        spec_data = state.load_spec()
        if spec_data is None:
            redis.srem(ACTIVE_JOBS, job_id)  # its state expired: nothing left to run
            continue
        spec = ExportSpec.model_validate(spec_data)
        for task in _abandoned_tasks(redis, state):
            log.warning("job %s: %s was abandoned by its worker; queued again", job_id, task)
            enqueue_task(redis, spec, task)
            requeued.append(f"{job_id}/{task}")
        if engine.shards_ready_for_finalize(state):
            enqueue_task(redis, spec, "finalize")
            requeued.append(f"{job_id}/finalize")
    return requeued


def job_abandoned(redis: Redis, job_id: str) -> bool:
    """True when nothing can still be working on the job: its state is gone from Redis, or no
    task of it holds a lease or waits in RQ (its process died, a Ctrl-C'd or killed inline
    run). Such a job must not block a new export of the same room to the same place."""
    state = JobState(redis, job_id)
    if state.load_spec() is None:
        return True
    tasks = state.tasks()
    if not tasks:
        return False  # between being stored and having its first task: a moment, not a death
    rq_ids = {_text(k): _text(v) for k, v in redis.hgetall(state.key("rq")).items()}
    active = [task for task, value in tasks.items() if value in ("queued", "running")]
    if not active:
        return False  # every step over and the finalizer not yet queued: a worker is on it
    return not any(state.lease_held(task) or _rq_job_live(redis, rq_ids.get(task))
                   for task in active)


def _abandoned_tasks(redis: Redis, state: JobState) -> list[str]:
    rq_ids = {_text(k): _text(v) for k, v in redis.hgetall(state.key("rq")).items()}
    abandoned = []
    for task, value in state.tasks().items():
        if value not in ("queued", "running") or state.lease_held(task):
            continue
        if value == "queued" and _rq_job_live(redis, rq_ids.get(task)):
            continue
        if value == "running":
            state.set_task(task, "queued")
            state.record_retry(f"job step {task}", "its worker stopped; run again")
        abandoned.append(task)
    return abandoned


def _rq_job_live(redis: Redis, rq_id: str | None) -> bool:
    if rq_id is None:
        return False
    try:
        return Job.fetch(rq_id, connection=redis).get_status() in _LIVE
    except NoSuchJobError:
        return False


# --- helpers ----------------------------------------------------------------------------------


def _context(job_id: str) -> tuple[engine.Services, ExportSpec]:
    """The services and spec of a task run by a worker (Redis: the worker's own connection)."""
    current = get_current_job()
    redis = current.connection if current is not None else Redis.from_url(_redis_url())
    services = engine.Services(redis=redis, engine=store.get_engine(), config=EngineConfig())
    data = JobState(redis, job_id).load_spec()
    if data is None:
        data = store.job_params(services.engine, job_id)
    if not data:
        raise JobNotFound(f"job {job_id} has no parameters")
    return services, ExportSpec.model_validate(data)


def _job_over(services: engine.Services, job_id: str) -> bool:
    """True for a job that has ended. A task of it may still come by (a retry RQ scheduled
    before the end, a copy the reaper queued meanwhile): it must neither run the export again
    nor rewrite the report."""
    job = store.get_job(services.engine, job_id)
    if job is None or job.state in store.ACTIVE_STATES:
        return False
    log.info("job %s has ended (%s): a leftover task of it does nothing", job_id, job.state)
    return True


@contextmanager
def _fail_job_when_hopeless(spec: ExportSpec, services: engine.Services) -> Iterator[None]:
    """Fail the job with a report when an error is permanent, or when retries ran out."""
    try:
        yield
    except PERMANENT_ERRORS as error:  # a retry won't help
        engine.fail_job_on(spec, services, error)
    except Exception as error:
        if _last_attempt():
            engine.fail_job_on(spec, services, error)
        raise


def _refuse_another_proxy(spec: ExportSpec) -> None:
    """Refuse a job queued against another proxy: ids repeat between proxies, so this worker
    could archive a different room under the job's room name and call it a success."""
    from vdr_ops.settings import get_settings

    mine = get_settings().vdr_api_url.rstrip("/")
    if spec.api_url is not None and spec.api_url.rstrip("/") != mine:
        raise InvalidRequest(
            f"the job was queued against the proxy at {spec.api_url} but this worker's "
            f"VDR_API_URL is {mine}: refused, so no other room is archived under the name "
            f"{spec.room_name!r}; run workers with VDR_API_URL={spec.api_url}"
        )


def _queue_finalize_if_ready(services: engine.Services, spec: ExportSpec) -> None:
    if engine.shards_ready_for_finalize(JobState(services.redis, spec.job_id)):
        enqueue_task(services.redis, spec, "finalize")


def _last_attempt() -> bool:
    current = get_current_job()
    return current is None or not current.retries_left


def _redis_url() -> str:
    from vdr_ops.settings import get_settings

    return get_settings().redis_url


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
