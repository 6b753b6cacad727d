"""Trash, restore and purge of a room, run by an RQ worker once a request was approved.

`enqueue(redis, job_id)` sends an approved job (see `jobs.approvals.decide`) to the workers;
`run_deletion(job_id)` is the task, importable by dotted path. Every step is audited with the
room id as target and the request id, job id, requester and approver in the detail.

Purge, in order:
1. the room must still be what was approved (its etag then), and unless an admin overrode the
   guard, its newest export must match it item for item (`jobs.guard`);
2. a room not yet in the trash is trashed first (a backend purges only trashed rooms);
3. where capabilities say `room_purge: native`, one room purge with `If-Match` of the etag
   the guard verified; where they say `by_items`, every item is purged from the leaves up —
   files first, then folders deepest level first, each level in parallel — and then the
   empty room; where they say `none`, nothing is touched;
4. the room must then be gone (404); the audit says what was removed: counts, bytes, and the
   export manifest that lists every file (or, after an override, the paths walked).

A task that raised is retried by RQ; each step checks what an earlier attempt already did.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from redis import Redis
from rq import Queue, Retry, get_current_job

from jobs import defaults, store
from jobs._tables import JobRow
from jobs.errors import InvalidRequest, JobNotFound
from jobs.guard import LiveItem, inspect_room, walk_room
from jobs.progress import emit_event
from jobs.state import JobState
from vdr_client import (
    BadRequest,
    Conflict,
    NotFound,
    Operation,
    PreconditionFailed,
    Room,
    Unauthorized,
    VdrClient,
    VdrError,
)
from vdr_ops import defaults as process_defaults

__all__ = [
    "DeletionFailed",
    "DeletionRefused",
    "Removal",
    "enqueue",
    "execute",
    "purge_levels",
    "run_deletion",
    "set_origin",
]

log = logging.getLogger("vdr.jobs.deletion")

DELETION_TIMEOUT_S = 6 * 3600
"""RQ timeout of one deletion task (a by-items purge of a huge room takes long)."""

OPERATION_TIMEOUT_S = 600.0
"""How long one asynchronous backend operation may take before the step fails."""

PURGE_CONCURRENCY = 8
"""Items purged at once within one level of a by-items purge."""

LIST_CONCURRENCY = 8
"""Folder listings at once while walking a room before a purge."""

PATHS_AUDITED = 200
"""Paths named in the audit of a purge without an archive; the digest covers them all."""

RETRY_INTERVALS_S = [5, 30, 120]
"""RQ waits this long before the 1st, 2nd, 3rd retry of a task that raised."""

PERMANENT_ERRORS = (NotFound, Unauthorized, BadRequest, Conflict, PreconditionFailed)
"""VDR answers a retry cannot change: the job fails at once."""

FINAL_STATES = ("succeeded", "failed", "cancelled")


class DeletionRefused(InvalidRequest):
    """The guard, the room's state or the backend forbids the deletion; nothing was touched."""


class DeletionFailed(InvalidRequest):
    """A step was sent but did not do what it should have (operation failed, room not gone)."""


@dataclass
class Removal:
    """What one deletion did to the room."""

    files: int = 0
    folders: int = 0
    bytes: int = 0
    manifest_locations: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class _Run:
    """One run of a deletion job and what it needs."""

    job: store.JobRecord
    params: dict[str, Any]
    engine: sa.Engine
    redis: Redis
    client: VdrClient
    state: JobState

    def audit(self, action: str, detail: dict[str, Any] | None = None,
              actor: str = "vdr-worker") -> None:
        base = {"job_id": self.job.id, "approval_id": self.params.get("approval_id"),
                "action": self.job.kind, "room_name": self.job.room_name,
                "requested_by": self.job.requested_by,
                "approved_by": self.params.get("approved_by")}
        store.audit(self.engine, actor=actor, action=action, target=self.job.room_id,
                    detail={**base, **(detail or {})})


# --- queueing ---------------------------------------------------------------------------------


def enqueue(redis: Redis, job_id: str, *, queue: str = process_defaults.QUEUE_NAME) -> bool:
    """Send an approved deletion job to the workers; False if it was already sent."""
    claimed = redis.set(f"vdr:deletion:{job_id}:queued", 1, nx=True, ex=defaults.STATE_TTL_S)
    if not claimed:
        return False
    Queue(queue, connection=redis).enqueue(
        run_deletion, job_id, job_id=f"{job_id}-deletion", job_timeout=DELETION_TIMEOUT_S,
        retry=Retry(max=defaults.TASK_RETRIES, interval=RETRY_INTERVALS_S),
        result_ttl=defaults.STATE_TTL_S, failure_ttl=defaults.STATE_TTL_S,
        description=f"deletion job {job_id}",
    )
    log.info("job %s: deletion queued on %s", job_id, queue)
    return True


def set_origin(engine: sa.Engine, job_id: str, origin: dict[str, Any]) -> None:
    """Where the job's Slack message is, so the bot's watcher reports in its thread."""
    statement = sa.update(JobRow).where(JobRow.id == job_id).values(origin=origin)
    with engine.begin() as connection:
        connection.execute(statement)


# --- the task ---------------------------------------------------------------------------------


def run_deletion(job_id: str) -> str | None:
    """RQ entry point: run the job with the worker's Redis, DATABASE_URL and VDR_API_URL."""
    current = get_current_job()
    redis = current.connection if current is not None else Redis.from_url(_redis_url())
    with VdrClient.from_settings() as client:
        report = execute(job_id, engine=store.get_engine(), redis=redis, client=client,
                         last_attempt=_last_attempt())
    return report.id if report else None


def execute(
    job_id: str, *, engine: sa.Engine, redis: Redis, client: VdrClient,
    last_attempt: bool = True,
) -> store.Report | None:
    """Run one deletion job to its report; None if it had already finished.

    Errors a retry may cure (the VDR unreachable, 5xx) are raised again for RQ to retry,
    unless `last_attempt`; everything else ends the job with a failed report.
    """
    job = store.get_job(engine, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}")
    if job.state in FINAL_STATES:
        return None
    run = _Run(job, store.job_params(engine, job_id), engine, redis, client,
               JobState(redis, job_id))
    if run.state.cancel_requested():
        run.audit("deletion.cancelled", {"reason": "cancelled before it started"})
        return _finish(run, "cancelled", Removal(), error="cancelled before it started")
    _start(run)
    try:
        removal = _STEPS[job.kind](run)
    except (DeletionRefused, DeletionFailed) as error:
        run.audit(f"{job.kind}.refused" if isinstance(error, DeletionRefused)
                  else f"{job.kind}.failed", {"reason": str(error)})
        return _finish(run, "failed", Removal(), error=str(error))
    except VdrError as error:
        if not isinstance(error, PERMANENT_ERRORS) and not last_attempt:
            run.audit(f"{job.kind}.retrying", {"reason": f"{type(error).__name__}: {error}"})
            raise
        reason = f"{type(error).__name__}: {error}"
        run.audit(f"{job.kind}.failed", {"reason": reason})
        return _finish(run, "failed", Removal(), error=reason)
    return _finish(run, "succeeded", removal)


def _start(run: _Run) -> None:
    store.set_job_state(run.engine, run.job.id, "running", only_from=("queued", "running"))
    run.state.set_task("delete", "running")
    run.redis.hsetnx(run.state.key("progress"), "started_at", time.time())
    run.audit("deletion.started", {"attempt": run.state.count_attempt("delete")})
    emit_event(run.redis, run.job.id, "started", {"kind": run.job.kind})
    log.info("job %s: %s of %s started", run.job.id, run.job.kind, run.job.room_id)


def _finish(run: _Run, state: store.JobState, removal: Removal, *,
            error: str | None = None) -> store.Report:
    counters = run.state.counters()
    started = counters.get("started_at") or time.time()
    now = store.utcnow()
    report = store.Report(
        id=store.new_id(), job_id=run.job.id, kind=run.job.kind, room_id=run.job.room_id,
        room_name=run.job.room_name, requested_by=run.job.requested_by, state=state,
        destinations=[], files_total=int(counters.get("files_total", removal.files)),
        files_done=removal.files, bytes_total=int(counters.get("bytes_total", removal.bytes)),
        bytes_done=removal.bytes, duration_s=round(time.time() - started, 3),
        manifest_locations=removal.manifest_locations, error=error or removal.note,
        created_at=run.job.created_at, finished_at=now,
    )
    store.save_report(run.engine, report)
    store.set_job_state(run.engine, run.job.id, state, error=error)
    run.state.set_task("delete", "done")
    run.state.set_final_state(state)
    run.audit(f"deletion.{state}", {"report_id": report.id, "files": removal.files,
                                    "folders": removal.folders, "bytes": removal.bytes,
                                    "error": error})
    emit_event(run.redis, run.job.id, "finished", {"report_id": report.id, "state": state,
                                                   "error": error})
    log.info("job %s: %s %s (%d files, %d bytes)", run.job.id, run.job.kind, state,
             removal.files, removal.bytes)
    return report


# --- trash and restore ------------------------------------------------------------------------


def _trash(run: _Run) -> Removal:
    room = run.client.get_room(run.job.room_id)
    _totals(run, room)
    _trash_room(run, room)
    _progress(run, room.file_count, room.size.total_bytes)
    return Removal(files=room.file_count, folders=room.folder_count, bytes=room.size.total_bytes)


def _trash_room(run: _Run, room: Room) -> Room:
    """Move the room to the trash unless it is there already; the room as it is after."""
    if room.status == "trashed":
        run.audit("room.already_trashed", {"room_etag": room.etag})
        return room
    operation = _wait(run, run.client.trash_room(room.id))
    after = run.client.get_room(room.id)
    if after.status != "trashed":
        raise DeletionFailed(f"the backend reported the trash done, yet the room is {after.status}")
    run.audit("room.trashed", {"operation_id": operation.id, "status_before": room.status,
                               "files": room.file_count, "folders": room.folder_count,
                               "bytes": room.size.total_bytes, "room_etag": after.etag})
    return after


def _restore(run: _Run) -> Removal:
    if not run.client.capabilities().supports_restore:
        raise DeletionRefused("this VDR cannot restore rooms from the trash")
    room = run.client.get_room(run.job.room_id)
    _totals(run, room)
    if room.status != "trashed":
        raise DeletionRefused(f"the room is not in the trash (it is {room.status})")
    operation = _wait(run, run.client.restore_room(room.id))
    after = run.client.get_room(room.id)
    if after.status == "trashed":
        raise DeletionFailed("the backend reported the restore done, yet the room is still trashed")
    run.audit("room.restored", {"operation_id": operation.id, "status_after": after.status,
                                "files": after.file_count, "folders": after.folder_count,
                                "bytes": after.size.total_bytes})
    _progress(run, after.file_count, after.size.total_bytes)
    return Removal(files=after.file_count, folders=after.folder_count,
                   bytes=after.size.total_bytes)


# --- purge ------------------------------------------------------------------------------------


def _purge(run: _Run) -> Removal:
    mode = run.client.capabilities().room_purge
    if mode == "none":
        raise DeletionRefused("this VDR cannot purge rooms, neither whole nor item by item")
    room = _room_to_purge(run)
    if room is None:
        return Removal(note="the room was already gone when this attempt started")
    _totals(run, room)
    live, locations = _verified_listing(run, room)
    trashed = _trash_room(run, room)
    if trashed.etag != room.etag and not run.params.get("override_id"):
        run.audit("guard.recheck", {"reason": "the etag changed when the room was trashed"})
        live, locations = _verified_listing(run, trashed)
    room = trashed
    removal = _removal(live, locations)
    if mode == "native":
        _purge_native(run, room)
    else:
        _purge_by_items(run, room, live)
    _check_gone(run, room)
    _audit_removed(run, room, live, removal, mode)
    _progress(run, removal.files, removal.bytes)
    return removal


def _room_to_purge(run: _Run) -> Room | None:
    """The room, still as approved; None if an earlier attempt of this job already purged it."""
    try:
        room = run.client.get_room(run.job.room_id)
    except NotFound:
        if run.state.tasks().get("purge_sent"):
            return None
        raise DeletionRefused("the room no longer exists") from None
    approved = run.params.get("room_etag")
    if approved and room.etag != approved and not run.state.tasks().get("purge_sent"):
        raise DeletionRefused("the room changed after the purge was requested; its content is "
                              "not what was approved. Export it again and ask again")
    return room


def _verified_listing(run: _Run, room: Room) -> tuple[list[LiveItem], list[str]]:
    """The room's items, checked against its export unless an admin overrode the guard."""
    override_id = run.params.get("override_id")
    if override_id:
        live = walk_room(run.client, room.root_folder_id, concurrency=LIST_CONCURRENCY)
        run.audit("guard.overridden", {"override_id": override_id, "files": _count(live, "file")})
        return live, []
    verdict, live = inspect_room(run.client, run.engine, room, concurrency=LIST_CONCURRENCY)
    run.audit("guard.checked", {"ok": verdict.ok, "problem": verdict.problem,
                                "report_id": verdict.report_id, "counts": verdict.counts,
                                "room_etag": verdict.room_etag})
    if not verdict.ok:
        raise DeletionRefused(f"purge blocked: {verdict.problem}. Export the room again, then "
                              "request the purge again")
    return live, verdict.manifest_locations


def _purge_native(run: _Run, room: Room) -> None:
    run.state.set_task("purge_sent", "1")
    try:
        operation = _wait(run, run.client.purge_room(room.id, room.etag))
    except PreconditionFailed as error:
        raise DeletionRefused(f"the room changed just before the purge: {error}") from error
    run.audit("room.purge_sent", {"operation_id": operation.id, "mode": "native",
                                  "if_match": room.etag})


def _purge_by_items(run: _Run, room: Room, live: list[LiveItem]) -> None:
    """Leaves first: files, then folders from the deepest level up, each level in parallel."""
    run.state.set_task("purge_sent", "1")
    with ThreadPoolExecutor(PURGE_CONCURRENCY, thread_name_prefix="vdr-purge") as pool:
        for name, level in purge_levels(live):
            gone = list(pool.map(lambda item: _purge_item(run, item), level))
            run.audit("items.purged", {"level": name, "items": len(level),
                                       "already_gone": gone.count(False),
                                       "bytes": sum(i.size for i in level if i.type != "folder")})
    try:
        empty = run.client.get_room(room.id)
        operation = _wait(run, run.client.purge_room(room.id, empty.etag))
    except NotFound:
        return  # the backend dropped the room with its last item
    run.audit("room.purge_sent", {"operation_id": operation.id, "mode": "by_items",
                                  "if_match": empty.etag})


def purge_levels(items: list[LiveItem]) -> list[tuple[str, list[LiveItem]]]:
    """The order of a by-items purge: every non-folder, then folders by depth, deepest first."""
    leaves = [item for item in items if item.type != "folder"]
    by_depth: dict[int, list[LiveItem]] = defaultdict(list)
    for item in items:
        if item.type == "folder":
            by_depth[item.depth].append(item)
    levels = [("files", leaves)] if leaves else []
    levels += [(f"folders at depth {depth}", by_depth[depth])
               for depth in sorted(by_depth, reverse=True)]
    return levels


def _purge_item(run: _Run, item: LiveItem) -> bool:
    """Purge one item; False when it was already gone (an earlier attempt took it)."""
    try:
        _wait(run, run.client.purge_item(item.id))
    except NotFound:
        return False
    return True


def _check_gone(run: _Run, room: Room) -> None:
    try:
        left = run.client.get_room(room.id)
    except NotFound:
        run.audit("room.gone", {"checked": "GET room answered 404"})
        return
    raise DeletionFailed(f"the purge was reported done, yet the room is still there "
                         f"({left.status}, {left.file_count} files)")


def _removal(live: list[LiveItem], locations: list[str]) -> Removal:
    files = [item for item in live if item.type != "folder"]
    return Removal(files=len(files), folders=_count(live, "folder"),
                   bytes=sum(item.size for item in files), manifest_locations=locations)


def _audit_removed(run: _Run, room: Room, live: list[LiveItem], removal: Removal,
                   mode: str) -> None:
    """What was removed: totals, and the archive listing every file (or the paths walked)."""
    listing = "\n".join(f"{item.type}\t{item.size}\t{item.path}" for item in live)
    detail: dict[str, Any] = {
        "mode": mode, "files": removal.files, "folders": removal.folders,
        "bytes": removal.bytes, "manifest_locations": removal.manifest_locations,
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }
    if not removal.manifest_locations:
        detail["paths"] = [item.path for item in live][:PATHS_AUDITED]
        detail["paths_total"] = len(live)
    run.audit("room.purged", detail)


# --- plumbing ---------------------------------------------------------------------------------


def _wait(run: _Run, operation: Operation) -> Operation:
    if operation.state not in ("succeeded", "failed"):
        operation = run.client.wait_operation(operation.id, timeout_s=OPERATION_TIMEOUT_S)
    if operation.state == "failed":
        raise DeletionFailed(f"the VDR's {operation.kind} of {operation.target_id} failed: "
                             f"{operation.error or 'no reason given'}")
    return operation


def _totals(run: _Run, room: Room) -> None:
    run.state.set_counter("files_total", room.file_count)
    run.state.set_counter("bytes_total", room.size.total_bytes)


def _progress(run: _Run, files: int, size: int) -> None:
    run.state.set_counter("files_done", files)
    run.state.set_counter("bytes_done", size)


def _count(items: list[LiveItem], kind: str) -> int:
    return sum(1 for item in items if item.type == kind)


_STEPS: dict[str, Callable[[_Run], Removal]] = {
    "trash": _trash, "restore": _restore, "purge": _purge,
}


def _last_attempt() -> bool:
    current = get_current_job()
    return current is None or not current.retries_left


def _redis_url() -> str:
    from vdr_ops.settings import get_settings

    return get_settings().redis_url
