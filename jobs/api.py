"""What the bot and the CLI call: queue, run, watch and cancel exports.

Every function takes its Redis connection and SQL engine explicitly. Room references are
resolved here, once, so a job always names one room by id. Errors: `jobs.errors` for what
the jobs package refuses, `vdr_client` errors (NotFound, AmbiguousRoom, ...) for a room that
cannot be resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError

from jobs import engine as export_engine
from jobs import store
from jobs._services import warm_s3_client
from jobs.config import EngineConfig
from jobs.errors import (
    ExportAlreadyRunning,
    InvalidRequest,
    JobNotFound,
    JobsError,
    ServiceUnavailable,
)
from jobs.plan import ExportSpec, room_folder_name
from jobs.progress import Progress
from jobs.progress import read_progress as _read_progress
from jobs.runtime_settings import load_runtime_settings
from jobs.s3_dest import parse_s3_url
from jobs.state import JobState
from jobs.store import JobRecord, Report
from jobs.tasks import PERMANENT_ERRORS, enqueue_task, job_abandoned
from vdr_client import VdrClient, VdrError
from vdr_ops import defaults as process_defaults

__all__ = [
    "Progress",
    "cancel_job",
    "enqueue_export",
    "get_job",
    "list_jobs",
    "read_progress",
    "run_export",
]

log = logging.getLogger("vdr.jobs.api")

FINAL_STATES = ("succeeded", "failed", "cancelled")


def enqueue_export(
    *,
    room_ref: str,
    to_local: bool = True,
    s3_url: str | None = None,
    requested_by: str,
    origin: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    redis: Redis,
    engine: sa.Engine,
    client: VdrClient | None = None,
    local_root: str | None = None,
    queue: str | None = None,
    concurrency: int | None = None,
) -> JobRecord:
    """Queue an export of a room for the workers; returns the job at once.

    `local_root` defaults to the runtime settings' export root; `s3_url` (`s3://bucket/prefix`)
    adds an S3 destination; `concurrency` overrides the runtime settings' files in flight.
    With an `idempotency_key` already used, the first job is returned
    and nothing is queued. Raises ExportAlreadyRunning when the same room is being exported
    to the same places, InvalidRequest when there is no destination.
    """
    if idempotency_key:
        existing = store.find_job_by_key(engine, idempotency_key)
        if existing is not None:
            return existing
    _check_redis(redis)
    spec, record = _prepare(
        room_ref=room_ref, to_local=to_local, s3_url=s3_url, local_root=local_root,
        requested_by=requested_by, origin=origin, idempotency_key=idempotency_key,
        redis=redis, engine=engine, client=client, queue=queue, concurrency=concurrency,
    )
    stored, created = store.insert_job(engine, record, params=spec.model_dump())
    if not created:
        return stored
    with _undone_without_redis(engine, spec.job_id):
        JobState(redis, spec.job_id).save_spec(spec.model_dump())
        enqueue_task(redis, spec, "plan")
    _audit_request(engine, spec, origin)
    log.info("job %s: export of %s queued by %s", spec.job_id, spec.room_id, requested_by)
    return stored


def run_export(
    *,
    room_ref: str,
    to_local: bool = True,
    s3_url: str | None = None,
    requested_by: str,
    redis: Redis,
    engine: sa.Engine,
    client: VdrClient | None = None,
    local_root: str | None = None,
    services: export_engine.Services | None = None,
    on_job: Any = None,
    concurrency: int | None = None,
) -> Report | None:
    """Run an export in this process (plan, every shard, finalize) and return its report.

    `services` lets a benchmark or test choose the client factory, S3 client and limits;
    `on_job(JobRecord)` is called once the job exists (the CLI starts its progress bar).
    Returns None only if another process holds part of the job and will finish it.
    """
    _check_redis(redis)
    services = services or export_engine.Services(redis=redis, engine=engine)
    if s3_url:
        warm_s3_client(services)  # meanwhile the job is prepared
    spec, record = _prepare(
        room_ref=room_ref, to_local=to_local, s3_url=s3_url, local_root=local_root,
        requested_by=requested_by, origin=None, idempotency_key=None, redis=redis,
        engine=engine, client=client, queue=None, concurrency=concurrency,
    )
    store.insert_job(engine, record, params=spec.model_dump())
    state = JobState(redis, spec.job_id)
    with _undone_without_redis(engine, spec.job_id):
        state.save_spec(spec.model_dump())
        state.claim_task("plan")
    _audit_request(engine, spec, None)
    if on_job is not None:
        on_job(record)
    return _run_inline(spec, services)


def _check_redis(redis: Redis) -> None:
    """Refuse before anything is stored when Redis is down: a job stored in SQL that no
    worker can see would block the room's next exports."""
    try:
        redis.ping()
    except RedisError as error:
        raise ServiceUnavailable(_redis_down(error)) from error


def _redis_down(error: Exception) -> str:
    return (f"cannot reach Redis ({type(error).__name__}: {error}); start it or set REDIS_URL "
            "to where it runs")


@contextmanager
def _undone_without_redis(engine: sa.Engine, job_id: str) -> Iterator[None]:
    """Redis failing between the SQL row and the job's Redis state: the row is marked failed,
    so it does not stand for a job that will never run."""
    try:
        yield
    except RedisError as error:
        store.set_job_state(engine, job_id, "failed", error=_redis_down(error),
                            only_from=("queued",))
        raise ServiceUnavailable(_redis_down(error)) from error


def _run_inline(spec: ExportSpec, services: export_engine.Services) -> Report | None:
    """Every step in this process; an error that stops the job still leaves a report."""
    try:
        numbers = export_engine.plan(spec, services) or []
        export_engine.run_shards(spec, numbers, services)
        if export_engine.shards_ready_for_finalize(JobState(services.redis, spec.job_id)):
            return export_engine.finalize(spec, services)
    except (*PERMANENT_ERRORS, JobsError, VdrError) as error:
        return export_engine.fail_job_on(spec, services, error)
    except Exception as error:  # closed here, or the reaper hands its steps to workers forever
        log.error("job %s: inline export stopped: %r", spec.job_id, error,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        return export_engine.fail_job_on(spec, services, error)
    return None


def get_job(job_id: str, *, engine: sa.Engine) -> JobRecord | None:
    return store.get_job(engine, job_id)


def list_jobs(*, engine: sa.Engine, active_only: bool = True, limit: int = 20) -> list[JobRecord]:
    """Newest jobs first; by default only those queued or running."""
    return store.list_jobs(engine, active_only=active_only, limit=limit)


def cancel_job(job_id: str, *, actor: str, redis: Redis, engine: sa.Engine) -> JobRecord:
    """Ask a job to stop. A job not yet started ends at once; a running one within a second or
    two (between files, or mid-file), then reports as cancelled. A finished job is unchanged."""
    job = store.get_job(engine, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}")
    if job.state in FINAL_STATES:
        return job
    state = JobState(redis, job_id)
    state.request_cancel(actor)
    store.audit(engine, actor=actor, action=f"{job.kind}.cancel", target=job.room_id,
                detail={"job_id": job_id, "state_before": job.state})
    if job.kind != "export":
        # A deletion reads the flag when a worker picks it up and ends itself as cancelled;
        # one already running is not stopped half-way (a half-purged room helps nobody).
        return store.get_job(engine, job_id) or job
    if state.load_spec() is None:
        _end_orphan(job_id, redis, engine)
    elif job_abandoned(redis, job_id):
        _end_stopped(job_id, redis, engine)
    elif job.state == "queued":
        _end_unstarted(job_id, redis, engine)
    return store.get_job(engine, job_id) or job


def _end_abandoned(job: JobRecord, redis: Redis, engine: sa.Engine, *, replaced_by: str) -> None:
    """Close a job nothing works on any more (state lost, holder gone) with a report."""
    log.warning("job %s: abandoned (no live worker or process holds it); closed, replaced by %s",
                job.id, replaced_by)
    state = JobState(redis, job.id)
    data = state.load_spec() or store.job_params(engine, job.id)
    spec = ExportSpec.model_validate(data)
    services = export_engine.Services(redis=redis, engine=engine)
    export_engine.fail_job(spec, services, "abandoned: the process running it stopped "
                           f"(its lease expired or its state was lost); job {replaced_by} "
                           "took over")


def _end_orphan(job_id: str, redis: Redis, engine: sa.Engine) -> None:
    """A job Redis no longer knows (flushed, expired): nothing can run it; close it here."""
    spec = ExportSpec.model_validate(store.job_params(engine, job_id))
    services = export_engine.Services(redis=redis, engine=engine)
    export_engine.fail_job(spec, services, "the job's state was lost from Redis")


def _end_stopped(job_id: str, redis: Redis, engine: sa.Engine) -> None:
    """A cancelled job whose process is gone (killed inline run): no one else will close it."""
    spec = ExportSpec.model_validate(store.job_params(engine, job_id))
    services = export_engine.Services(redis=redis, engine=engine)
    export_engine.fail_job(spec, services, "cancelled after the process running it stopped")


def _end_unstarted(job_id: str, redis: Redis, engine: sa.Engine) -> None:
    """A cancelled job no worker has started: close it here, touching no destination."""
    spec = ExportSpec.model_validate(store.job_params(engine, job_id))
    services = export_engine.Services(redis=redis, engine=engine)
    if export_engine.plan(spec, services) is None:
        return  # a worker is planning it right now; it sees the flag and stops
    if export_engine.shards_ready_for_finalize(JobState(redis, job_id)):
        export_engine.finalize(spec, services)


def read_progress(job_id: str, *, redis: Redis, engine: sa.Engine | None = None) -> Progress:
    """Progress summed over every shard, from Redis; from the report once Redis forgot it."""
    progress = _read_progress(job_id, redis=redis)
    if progress.started_at is not None or progress.files_total or engine is None:
        return progress
    report = store.get_report(engine, job_id)
    if report is None:
        job = store.get_job(engine, job_id)
        return progress.model_copy(update={"state": job.state}) if job else progress
    return Progress(
        job_id=job_id, state=report.state, files_total=report.files_total,
        files_done=report.files_done, files_skipped=report.files_skipped,
        files_failed=report.files_failed, bytes_total=report.bytes_total,
        bytes_done=report.bytes_done, retries=report.retries, failures=report.files_failed,
        eta_s=0.0, updated_at=report.finished_at,
    )


def _prepare(
    *, room_ref: str, to_local: bool, s3_url: str | None, local_root: str | None,
    requested_by: str, origin: dict[str, Any] | None, idempotency_key: str | None,
    redis: Redis, engine: sa.Engine, client: VdrClient | None, queue: str | None,
    concurrency: int | None,
) -> tuple[ExportSpec, JobRecord]:
    """Resolve the room and destinations into the job's spec and its first record."""
    if not to_local and not s3_url:
        raise InvalidRequest("choose a destination: the local export folder, S3, or both")
    if s3_url:
        _check_s3_prefix(s3_url)
    runtime = load_runtime_settings(engine, redis)
    limits = EngineConfig()
    room, api_url = _resolve_room(room_ref, client)
    spec = ExportSpec(
        job_id=store.new_id(), room_id=room.id, room_name=room.name,
        root_folder_id=room.root_folder_id, room_folder=room_folder_name(room),
        local_root=str(Path(local_root or runtime.export_root).absolute()) if to_local else None,
        s3_url=s3_url.rstrip("/") if s3_url else None, requested_by=requested_by,
        concurrency=concurrency or runtime.concurrency, queue=queue or process_defaults.QUEUE_NAME,
        shard_max_files=limits.shard_max_files, shard_max_bytes=limits.shard_max_bytes,
        api_url=api_url,
    )
    running = store.find_active_job(engine, room.id, spec.destination_urls())
    if running is not None and job_abandoned(redis, running.id):
        _end_abandoned(running, redis, engine, replaced_by=spec.job_id)
        running = store.find_active_job(engine, room.id, spec.destination_urls())
    if running is not None:
        shared = ", ".join(sorted(set(running.destinations) & set(spec.destination_urls())))
        raise ExportAlreadyRunning(
            f"{room.name} is already being exported to {shared} (job {running.id}); wait for "
            f"it or `vdr cancel {running.id}`. A job whose process was killed counts as gone "
            f"about {limits.lease_s:.0f} s later.", job_id=running.id
        )
    record = JobRecord(
        id=spec.job_id, kind="export", room_id=room.id, room_name=room.name,
        requested_by=requested_by, state="queued", destinations=spec.destination_urls(),
        origin=origin, created_at=store.utcnow(), idempotency_key=idempotency_key,
    )
    return spec, record


def _check_s3_prefix(s3_url: str) -> None:
    """Refuse `..`, `.` and empty segments: S3 keeps them literally, so `s3://b/../../x` would
    write keys starting `../../x` that tools copying the export out resolve elsewhere."""
    bucket, prefix = parse_s3_url(s3_url)
    segments = set(prefix.split("/")) if prefix else set()
    doubled = s3_url.strip().startswith(f"s3://{bucket}//")  # parsing drops that slash
    if not doubled and not segments & {"", ".", ".."}:
        return
    raise InvalidRequest(f"{s3_url!r}: the S3 prefix may not contain '..', '.' or empty "
                         "segments (//); write s3://bucket/folder/subfolder")


def _resolve_room(room_ref: str, client: VdrClient | None) -> tuple[Any, str]:
    """The room, and the URL of the proxy that knows it by that id."""
    if client is not None:
        return client.find_room(room_ref), client.base_url
    with VdrClient.from_settings() as own:
        return own.find_room(room_ref), own.base_url


def _audit_request(engine: sa.Engine, spec: ExportSpec, origin: dict[str, Any] | None) -> None:
    detail = {"job_id": spec.job_id, "room_name": spec.room_name,
              "destinations": spec.destination_urls(), "origin": origin}
    store.audit(engine, actor=spec.requested_by, action="export.request", target=spec.room_id,
                detail=detail)

