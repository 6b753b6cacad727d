"""Exports run by real `vdr worker` processes (RQ) on real Redis, against the proxy over HTTP."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rq import Queue

from jobs import api, store
from jobs.manifest import ManifestEntry, parse_lines
from jobs.runtime_settings import load_runtime_settings, save_runtime_settings
from jobs.state import JobState
from proxy import FaultConfig, ProxyServer, RoomSpec
from tests.fixtures.jobs import JobsEnv, count_content_requests, kill_hard, start_worker
from vdr_client import VdrClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def workers(jobs_env: JobsEnv) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `vdr worker` processes; whatever still runs at the end is stopped."""
    started: list[subprocess.Popen[bytes]] = []
    log = jobs_env.tmp / "workers.log"

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        process = start_worker(env, *args, log=log)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            kill_hard(process)
    print(log.read_text(errors="replace") if log.exists() else "")  # shown when a test fails


def set_concurrency(env: JobsEnv, concurrency: int) -> None:
    current = load_runtime_settings(env.engine, env.redis)
    changed = current.model_copy(update={"concurrency": concurrency})
    save_runtime_settings(env.engine, env.redis, changed, actor="test")


def enqueue(env: JobsEnv, server: ProxyServer, room: str, **kwargs: Any) -> store.JobRecord:
    return api.enqueue_export(
        room_ref=room, s3_url=f"s3://{env.bucket}/archive", requested_by="U1",
        redis=env.redis, engine=env.engine, client=VdrClient(server.url),
        local_root=str(env.tmp / "exports"), **kwargs,
    )


def wait_for(probe: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def files_in(report: store.Report) -> int:
    root = Path(report.destinations[0])
    return sum(1 for p in root.rglob("*") if p.is_file() and p != root / "manifest.jsonl")


def report_manifest(report: store.Report) -> list[ManifestEntry]:
    return list(parse_lines(Path(report.manifest_locations[0]).read_bytes().splitlines()))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, as an operator's SIGTERM does it."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_workers_share_the_shards_of_a_queued_export_and_report_once(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any], workers: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(latency_ms=5))
    monkeypatch.setenv("VDR_EXPORT_SHARD_MAX_FILES", "25")
    env = jobs_env.worker_env(server.url)
    job = enqueue(jobs_env, server, "bench-small")
    pool = [workers(env), workers(env)]

    report = wait_for(lambda: store.get_report(jobs_env.engine, job.id))
    for process in pool:
        stop(process)

    assert report.state == "succeeded", report
    assert report.files_done == report.files_total == 200
    assert files_in(report) == 200
    rq_ids = jobs_env.redis.hgetall(JobState(jobs_env.redis, job.id).key("rq"))
    assert len(rq_ids) == 1 + 8 + 1  # plan, 8 shards, finalizer
    assert api.get_job(job.id, engine=jobs_env.engine).state == "succeeded"  # type: ignore[union-attr]
    assert not JobState(jobs_env.redis, job.id).load_spec()  # bulky state dropped
    assert api.read_progress(job.id, redis=jobs_env.redis).state == "succeeded"


def test_an_idempotency_key_queues_one_export(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend())

    first = enqueue(jobs_env, server, "bench-small", idempotency_key="V123:abc")
    second = enqueue(jobs_env, server, "bench-small", idempotency_key="V123:abc")

    assert first == second
    assert Queue("vdr", connection=jobs_env.redis).count == 1
    assert len(store.list_audit(jobs_env.engine, target=first.room_id)) == 1


def test_a_worker_killed_mid_export_is_replaced_without_fetching_finished_files_again(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any], workers: Callable[..., subprocess.Popen[bytes]],
) -> None:
    backend = synthetic_backend(specs=[RoomSpec("slow", files=240, file_size=8192, folders=6,
                                                depth=2)])
    requests = count_content_requests(backend)
    server = make_proxy(backend, faults=FaultConfig(latency_ms=25))
    set_concurrency(jobs_env, 4)
    env = jobs_env.worker_env(server.url, VDR_EXPORT_LEASE_S="2")
    job = enqueue(jobs_env, server, "slow")
    state = JobState(jobs_env.redis, job.id)

    first = workers(env, "--burst")
    wait_for(lambda: api.read_progress(job.id, redis=jobs_env.redis).files_done >= 60)
    kill_hard(first)
    finished = {item for item, entry in state.manifest_entries().items()
                if entry.status == "exported"}
    wait_for(lambda: not jobs_env.redis.keys(f"vdr:job:{job.id}:lease:*"), timeout_s=10)
    second = workers(env, "--burst")
    second.wait(timeout=90)
    report = store.get_report(jobs_env.engine, job.id)

    assert report is not None and report.state == "succeeded", report
    assert report.files_done == report.files_total == 240
    assert 60 <= len(finished) < 240
    assert all(requests[item] == 1 for item in finished)  # not one finished file fetched again
    # Fetched twice at most: the files in flight at the kill, one per pool thread (2 × the
    # concurrency: as many downloading, and as many downloaded but not yet committed).
    assert sum(requests.values()) <= 240 + 2 * 4
    entries = report_manifest(report)
    assert {entry.status for entry in entries} <= {"exported", "verified"}
    assert all(entry.sha256 == entry.backend_hashes["sha256"] for entry in entries)
    assert files_in(report) == 240


def test_cancelling_a_queued_job_ends_it_at_once_and_touches_no_destination(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend())
    job = enqueue(jobs_env, server, "bench-small")

    cancelled = api.cancel_job(job.id, actor="U2", redis=jobs_env.redis, engine=jobs_env.engine)

    assert cancelled.state == "cancelled"
    report = store.get_report(jobs_env.engine, job.id)
    assert report is not None and report.state == "cancelled" and report.files_total == 0
    assert report.manifest_locations == [] and not (jobs_env.tmp / "exports").exists()
    again = api.cancel_job(job.id, actor="U3", redis=jobs_env.redis, engine=jobs_env.engine)
    assert again == cancelled  # a second click changes nothing


def test_a_job_whose_redis_state_was_lost_can_still_be_cancelled(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend())
    job = enqueue(jobs_env, server, "bench-small")
    store.set_job_state(jobs_env.engine, job.id, "running")
    jobs_env.redis.flushdb()

    cancelled = api.cancel_job(job.id, actor="U2", redis=jobs_env.redis, engine=jobs_env.engine)

    assert cancelled.state == "cancelled"
    report = store.get_report(jobs_env.engine, job.id)
    assert report is not None and "lost" in (report.error or "")


def test_cancelling_a_running_export_stops_every_shard_and_reports_cancelled(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any], workers: Callable[..., subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(latency_ms=30))
    monkeypatch.setenv("VDR_EXPORT_SHARD_MAX_FILES", "25")
    set_concurrency(jobs_env, 2)
    job = enqueue(jobs_env, server, "bench-small")
    worker = workers(jobs_env.worker_env(server.url))
    wait_for(lambda: api.read_progress(job.id, redis=jobs_env.redis).files_done >= 30)

    api.cancel_job(job.id, actor="U2", redis=jobs_env.redis, engine=jobs_env.engine)
    report = wait_for(lambda: store.get_report(jobs_env.engine, job.id), timeout_s=30)
    stop(worker)

    assert report.state == "cancelled"
    assert 30 <= report.files_done < 200
    assert files_in(report) == report.files_done
    assert api.get_job(job.id, engine=jobs_env.engine).state == "cancelled"  # type: ignore[union-attr]
