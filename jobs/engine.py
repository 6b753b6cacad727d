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
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from jobs import store
from jobs._leases import LeaseKeeper, claim_shards, held_lease, requeued
from jobs._runner import ShardRunner
from jobs._services import Services, open_client, open_destinations, s3_first
from jobs.destinations import Destination
from jobs.errors import DestinationRefused
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
from jobs.progress import emit_event
from jobs.state import JobState, shard_number, shard_task

__all__ = [
    "Services", "fail_job", "fail_job_on", "finalize", "plan", "run_shards",
    "shards_ready_for_finalize", "tidy_destinations",
]

log = logging.getLogger("vdr.jobs.export")


# --- planning ---------------------------------------------------------------------------------


def plan(spec: ExportSpec, services: Services) -> list[int] | None:
    """List the room and store its shards; returns the shard numbers (None: another holds it)."""
    state = JobState(services.redis, spec.job_id)
    with held_lease(state, "plan", services.config) as held:
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
    """The room's tree, and its files cut into shards, knowing what earlier exports left.

    What the destinations hold (earlier manifests, what is already there) is asked while the
    room is listed: both mostly wait on the network, and a small room's export is short enough
    for that wait to count."""
    with open_destinations(spec, services) as destinations:
        for dest in destinations:
            dest.check()  # refuse now, not after listing a large room
        with ThreadPoolExecutor(1, thread_name_prefix="vdr-plan") as side:
            held = side.submit(_what_destinations_hold, destinations)
            with open_client(services, spec, state, {}) as client:
                tree = walk_tree(client, spec.root_folder_id,
                                 concurrency=services.config.list_concurrency)
            earlier, present = held.result()
    tree.files = merge_earlier(tree.files, earlier)
    for url, paths in present.items():
        mark_unseen(tree.files, url, paths)
    limits = {"max_files": spec.shard_max_files, "max_bytes": spec.shard_max_bytes}
    return tree, split_shards(tree.files, **limits)


def _what_destinations_hold(
    destinations: list[Destination],
) -> tuple[list[list[ManifestEntry]], dict[str, set[str]]]:
    """Earlier manifests (S3's first), and the paths each destination lists as present."""
    earlier = [dest.read_manifest() for dest in s3_first(destinations)]
    present: dict[str, set[str]] = {}
    for dest in destinations:
        paths = dest.existing_paths()
        if paths is not None:
            present[dest.url] = paths
    return earlier, present


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
    held = claim_shards(state, numbers, services.config)
    if not held:
        return []
    keeper = LeaseKeeper(state, held, services.config)
    keeper.start()
    try:
        runner = ShardRunner(spec, state, services, keeper.stop)
        finished = runner.run([n for n in numbers if shard_task(n) in held])
    except BaseException:
        requeued(state, list(held))
        raise
    finally:
        keeper.close()
    return finished


def shards_ready_for_finalize(state: JobState) -> bool:
    """True once for a job whose shards are all over: the caller then runs the finalizer."""
    return _shards_over(state) and state.claim_task("finalize")


# --- finalizing -------------------------------------------------------------------------------


def finalize(spec: ExportSpec, services: Services) -> store.Report | None:
    """Write the manifest everywhere, clean up, store the report; None if not this one's turn."""
    state = JobState(services.redis, spec.job_id)
    with held_lease(state, "finalize", services.config) as held:
        if not held or state.tasks().get("finalize") == "done" or not _shards_over(state):
            return None
        entries = state.manifest_entries()
        locations: list[str] = []
        if entries or not state.cancel_requested():
            locations = _write_manifests(spec, state, services, entries)
        else:  # stopped before any file: no manifest, and nothing of ours left behind
            tidy_destinations(spec, services)
        report = _report(spec, state, services, locations=locations)
        report = _close_job(spec, state, services, report)
        state.set_task("finalize", "done")
    return report


def _write_manifests(
    spec: ExportSpec, state: JobState, services: Services, entries: dict[str, ManifestEntry]
) -> list[str]:
    """Each destination's manifest: this run's entries, plus earlier ones for files of the
    room this run did not reach (cancelled), so the manifest keeps describing what is there."""
    planned = {task["item_id"] for n in _shard_numbers(state) for task in state.load_shard(n)}
    locations = []
    with open_destinations(spec, services) as destinations:
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


def fail_job(
    spec: ExportSpec, services: Services, error: str, *, tidy: bool = False
) -> store.Report:
    """End a job that cannot go on (room gone, destination refused): a failed report.

    With `tidy`, for a process that can reach the destinations (the one running the export),
    its temp folder and open multipart uploads are removed first; elsewhere they stay until
    the next export to the same place."""
    if tidy:
        tidy_destinations(spec, services)
    state = JobState(services.redis, spec.job_id)
    report = _report(spec, state, services, locations=[], error=error)
    return _close_job(spec, state, services, report)


def fail_job_on(spec: ExportSpec, services: Services, error: BaseException) -> store.Report:
    """End a job that `error` stopped, in the process that ran it, with what it left in its
    destinations tidied."""
    return fail_job(spec, services, f"{type(error).__name__}: {error}", tidy=True)


def tidy_destinations(spec: ExportSpec, services: Services) -> None:
    """Remove what an unfinished job left in its destinations (temp files, open multipart
    uploads); finished files stay. Best effort: a destination out of reach is left as it is."""
    try:
        with open_destinations(spec, services) as destinations:
            for dest in destinations:
                _tidy(spec, dest)
    except Exception as error:  # the job's own error is what its report gives
        log.warning("job %s: destinations not tidied: %s", spec.job_id, error)


def _tidy(spec: ExportSpec, dest: Destination) -> None:
    """One destination's clean-up; one that cannot be reached does not stop the others'."""
    try:
        dest.clean_up()
    except DestinationRefused as error:  # a missing bucket, say: the report tells it already
        log.info("job %s: %s not tidied: %s", spec.job_id, dest.url, error)
    except Exception as error:
        log.warning("job %s: %s not tidied: %s", spec.job_id, dest.url, error)


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


def _close_job(
    spec: ExportSpec, state: JobState, services: Services, report: store.Report
) -> store.Report:
    """Store the report and end the job; the report that stands (a job already over keeps
    its first one, and nothing is announced again)."""
    standing = store.close_job(services.engine, report)
    if standing.id != report.id:
        log.info("job %s had ended already (%s); its report stands", spec.job_id, standing.state)
        return standing
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
    return report
