"""Regression tests for what a fresh-user trial of `vdr export` / `vdr worker` ran into."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rq import Queue

from jobs import api, defaults, store
from jobs import engine as export_engine
from jobs.local_dest import LocalDestination
from jobs.plan import ExportSpec
from jobs.state import JobState, active_jobs, shard_task
from jobs.tasks import requeue_abandoned
from jobs.worker import recover_intermediate
from proxy import DirectoryBackend, FaultConfig, ProxyServer
from tests.fixtures.jobs import JobsEnv, descendants, export_services, kill_hard, start_worker
from tests.fixtures.services import free_port
from vdr_client import VdrClient
from vdr_ops.cli import main
from vdr_ops.settings import get_settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proxy_url(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    server = make_proxy(DirectoryBackend(directory_root))
    monkeypatch.setenv("VDR_API_URL", server.url)
    get_settings.cache_clear()
    return server.url


def vdr(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_enqueue_with_redis_down_stores_no_job_and_names_redis_url(
    proxy_url: str, jobs_env: JobsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(jobs_env.tmp / "out")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()

    code, output = vdr("export", "Project Beta", "--enqueue", "--to", out)

    assert code == 1 and "REDIS_URL" in output and "Traceback" not in output
    assert store.list_jobs(jobs_env.engine) == []
    monkeypatch.setenv("REDIS_URL", jobs_env.redis_url)
    get_settings.cache_clear()
    code, output = vdr("export", "Project Beta", "--enqueue", "--to", out)
    assert code == 0 and "queued export job" in output


def test_a_job_whose_redis_state_is_gone_does_not_block_the_next_export(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    client = VdrClient(proxy_url)
    options = {"room_ref": "Project Beta", "requested_by": "U1", "redis": jobs_env.redis,
               "engine": jobs_env.engine, "client": client,
               "local_root": str(jobs_env.tmp / "out")}
    first = api.enqueue_export(**options)
    jobs_env.redis.flushdb()  # Redis restarted empty: no worker will ever see the first job

    second = api.enqueue_export(**options)

    assert second.id != first.id
    old = store.get_job(jobs_env.engine, first.id)
    assert old is not None and old.state == "failed" and "took over" in (old.error or "")


def test_an_inline_job_whose_lease_expired_is_taken_over_by_a_rerun(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    out = str(jobs_env.tmp / "out")
    client = VdrClient(proxy_url)
    options = {"room_ref": "Project Beta", "requested_by": "U1", "redis": jobs_env.redis,
               "engine": jobs_env.engine, "client": client, "local_root": out}
    killed = api.enqueue_export(**options)  # stands for an inline run killed mid-plan:
    state = JobState(jobs_env.redis, killed.id)
    state.set_task("plan", "running")  # running, no lease held, no RQ job behind it
    jobs_env.redis.delete(state.key("rq"))

    code, output = vdr("export", "Project Beta", "--to", out)

    assert code == 0 and "succeeded" in output, output
    assert store.get_job(jobs_env.engine, killed.id).state == "failed"  # type: ignore[union-attr]


def test_a_job_with_a_live_lease_still_blocks_a_second_export(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    out = str(jobs_env.tmp / "out")
    options = {"room_ref": "Project Beta", "requested_by": "U1", "redis": jobs_env.redis,
               "engine": jobs_env.engine, "client": VdrClient(proxy_url), "local_root": out}
    running = api.enqueue_export(**options)
    state = JobState(jobs_env.redis, running.id)
    state.set_task("plan", "running")
    state.acquire_lease("plan", 30)

    code, output = vdr("export", "Project Beta", "--to", out)

    assert code == 1 and "already being exported" in output and running.id in output


def test_a_second_export_sharing_one_destination_with_a_running_one_is_refused(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    s3_url = f"s3://{jobs_env.bucket}/archive"
    options = {"room_ref": "Project Beta", "requested_by": "U1", "redis": jobs_env.redis,
               "engine": jobs_env.engine, "client": VdrClient(proxy_url),
               "local_root": str(jobs_env.tmp / "first"), "s3_url": s3_url}
    running = api.enqueue_export(**options)
    state = JobState(jobs_env.redis, running.id)
    state.set_task("plan", "running")
    state.acquire_lease("plan", 30)

    code, output = vdr("export", "Project Beta", "--to", str(jobs_env.tmp / "second"),
                       "--s3", s3_url)

    assert code == 1 and running.id in output and s3_url in output, output
    assert f"vdr cancel {running.id}" in output


def test_vdr_cancel_closes_a_job_whose_process_is_gone(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    options = {"room_ref": "Project Beta", "requested_by": "U1", "redis": jobs_env.redis,
               "engine": jobs_env.engine, "client": VdrClient(proxy_url),
               "local_root": str(jobs_env.tmp / "out")}
    job = api.enqueue_export(**options)
    state = JobState(jobs_env.redis, job.id)
    state.set_task("plan", "running")
    jobs_env.redis.delete(state.key("rq"))

    code, output = vdr("cancel", job.id)

    assert code == 0 and "cancelled" in output, output
    assert store.get_report(jobs_env.engine, job.id).state == "cancelled"  # type: ignore[union-attr]
    assert vdr("cancel", "nosuchjob")[0] == 3


@pytest.mark.parametrize("database_url", [
    "notaurl",
    "postgresql://postgres@127.0.0.1:{port}/test",
    "sqlite:///{tmp}/missing/folder/vdr.db",
    "mysql://nobody@127.0.0.1:{port}/vdr",  # a dialect whose driver is not installed
])
def test_a_bad_database_url_is_one_line_naming_the_setting(
    database_url: str, proxy_url: str, jobs_env: JobsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = database_url.format(port=free_port(), tmp=jobs_env.tmp)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    started = time.monotonic()

    code, output = vdr("reports")

    assert code == 1 and "DATABASE_URL" in output and "Traceback" not in output, output
    assert time.monotonic() - started < 30


def test_vdr_worker_with_redis_down_says_so_in_one_line(
    jobs_env: JobsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()

    code, output = vdr("worker", "--burst")

    assert code == 1 and "REDIS_URL" in output and "Traceback" not in output


@pytest.mark.parametrize("command", [("reports",), ("worker", "--burst")])
def test_a_redis_url_that_is_not_one_is_one_line_naming_the_setting(
    command: tuple[str, ...], jobs_env: JobsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "garbage")
    get_settings.cache_clear()

    code, output = vdr(*command)

    assert code == 1 and "REDIS_URL" in output and "Traceback" not in output, output


def wait_for(probe: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s")


def test_a_sigkilled_worker_leaves_no_child_that_swallows_the_next_job(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    env = jobs_env.worker_env(proxy_url)
    log = jobs_env.tmp / "workers.log"
    first = start_worker(env, log=log)
    children: list[int] = []
    try:
        children = wait_for(lambda: descendants(first.pid), 30)  # RQ's scheduler
        time.sleep(1.5)  # the worker is now waiting in its blocking dequeue
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 5)

        job = api.enqueue_export(
            room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
            engine=jobs_env.engine, client=VdrClient(proxy_url),
            local_root=str(jobs_env.tmp / "out"))
        second = start_worker(env, log=log)
        try:
            done = lambda: store.get_job(jobs_env.engine, job.id).state == "succeeded"  # type: ignore[union-attr]  # noqa: E731
            wait_for(done, 20)
        finally:
            kill_hard(second)
    finally:
        if first.poll() is None:
            kill_hard(first)
        for pid in children:  # without the fix they outlive the worker: end them here
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(log.read_text(errors="replace") if log.exists() else "")


def test_a_job_a_dead_worker_took_but_never_started_is_put_back_on_its_queue(
    jobs_env: JobsEnv
) -> None:
    queue = Queue("vdr-test-recover", connection=jobs_env.redis)
    rq_job = queue.enqueue("builtins.print", "x")
    jobs_env.redis.lmove(queue.key, queue.intermediate_queue_key)  # taken, then the taker died

    recovered = recover_intermediate(jobs_env.redis, [queue.name], grace_s=0.2)

    assert recovered == [rq_job.id]
    assert queue.job_ids == [rq_job.id]
    assert jobs_env.redis.llen(queue.intermediate_queue_key) == 0


def test_inline_export_says_on_stderr_that_it_retries_a_failing_proxy(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_proxy(DirectoryBackend(directory_root), faults=FaultConfig(p5xx=0.5, seed=3))
    monkeypatch.setenv("VDR_API_URL", server.url)
    get_settings.cache_clear()

    code, output = vdr("export", "Project Beta", "--to", str(jobs_env.tmp / "out"))

    assert code == 0 and "succeeded" in output, output
    assert "retrying (attempt" in output


def test_an_inline_export_that_fails_at_its_end_leaves_no_step_for_the_workers(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    out = jobs_env.tmp / "out"
    assert vdr("export", "Project Beta", "--to", str(out))[0] == 0
    manifest = next(out.iterdir()) / defaults.MANIFEST_NAME
    manifest.unlink()
    manifest.mkdir()  # the manifest cannot be written: the job fails in its last step

    code, output = vdr("export", "Project Beta", "--to", str(out))

    assert code == 1 and "failed" in output and "Traceback" not in output, output
    assert active_jobs(jobs_env.redis) == []
    assert requeue_abandoned(jobs_env.redis) == []


def test_a_worker_on_another_proxy_refuses_the_job_instead_of_archiving_another_room(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path
) -> None:
    queued_on = make_proxy(DirectoryBackend(directory_root))
    elsewhere = make_proxy(DirectoryBackend(directory_root))  # same ids, another proxy
    job = api.enqueue_export(
        room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
        engine=jobs_env.engine, client=VdrClient(queued_on.url),
        local_root=str(jobs_env.tmp / "out"))
    log = jobs_env.tmp / "worker.log"

    worker = start_worker(jobs_env.worker_env(elsewhere.url), "--burst", log=log)
    assert worker.wait(timeout=60) == 0, log.read_text()

    failed = store.get_job(jobs_env.engine, job.id)
    assert failed is not None and failed.state == "failed"
    assert "VDR_API_URL" in (failed.error or "") and queued_on.url in (failed.error or "")
    assert not (jobs_env.tmp / "out").exists() or not any((jobs_env.tmp / "out").iterdir())


def test_a_resumed_shard_counts_the_files_it_kept_as_already_there(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    services = export_services(proxy_url, jobs_env)
    job = api.enqueue_export(
        room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
        engine=jobs_env.engine, client=VdrClient(proxy_url),
        local_root=str(jobs_env.tmp / "out"))
    state = JobState(jobs_env.redis, job.id)
    spec = ExportSpec.model_validate(state.load_spec())
    numbers = export_engine.plan(spec, services) or []
    export_engine.run_shards(spec, numbers, services)
    for number in numbers:  # its worker died after the files, before saying the shard was done
        state.set_task(shard_task(number), "running")

    export_engine.run_shards(spec, numbers, services)

    report = export_engine.finalize(spec, services)
    assert report is not None and report.state == "succeeded"
    assert report.files_done == report.files_total == 3
    assert report.files_skipped == 3


@pytest.mark.parametrize(
    "s3_url", ["s3://bucket/../../x", "s3://bucket/a//b", "s3://bucket/a/./b", "s3://bucket//x"]
)
def test_an_s3_prefix_with_dot_or_empty_segments_is_refused(
    s3_url: str, proxy_url: str, jobs_env: JobsEnv
) -> None:
    code, output = vdr("export", "Project Beta", "--no-local", "--s3", s3_url, "--enqueue")

    assert code == 1 and "may not contain" in output, output
    assert store.list_jobs(jobs_env.engine) == []


def test_an_empty_to_folder_is_refused(proxy_url: str, jobs_env: JobsEnv) -> None:
    code, output = vdr("export", "Project Beta", "--to", "")

    assert code == 2 and "--to" in output
    assert store.list_jobs(jobs_env.engine, active_only=False) == []


def test_terminal_escapes_in_room_names_are_printed_escaped(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "rooms"
    (root / "Evil\x1b]0;pwned\x07 [red]room").mkdir(parents=True)
    (root / "Evil\x1b]0;pwned\x07 [red]room" / "a.txt").write_bytes(b"a")
    server = make_proxy(DirectoryBackend(root))
    monkeypatch.setenv("VDR_API_URL", server.url)
    get_settings.cache_clear()

    code, output = vdr("export", "Evil", "--to", str(tmp_path / "out"))
    listed = vdr("reports")[1]

    assert code == 0, output
    for shown in (output, listed):  # (rich's own cursor codes for the bar may be there)
        assert "\x1b]0;" not in shown and "\x07" not in shown and "Evil\\x1b]0;p" in shown
    assert "\\x1b]0;pwned\\x07 [red]room" in output  # the table may wrap the name


def test_an_export_refused_by_s3_leaves_nothing_in_the_local_folder(
    jobs_env: JobsEnv, proxy_url: str
) -> None:
    exports = jobs_env.tmp / "refused"

    code, output = vdr("export", "Project Beta", "--to", str(exports),
                       "--s3", "s3://no-such-bucket-here/archive")

    assert code == 1 and "no-such-bucket-here" in output, output
    assert store.list_reports(jobs_env.engine)[0].state == "failed"
    assert list(exports.iterdir()) == []  # neither the room folder nor its .vdr-partial


def test_a_job_cancelled_before_any_file_leaves_no_folder(
    jobs_env: JobsEnv, proxy_url: str
) -> None:
    client = VdrClient(proxy_url)
    job = api.enqueue_export(room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
                             engine=jobs_env.engine, client=client,
                             local_root=str(jobs_env.tmp / "cancelled"))
    spec = ExportSpec.model_validate(JobState(jobs_env.redis, job.id).load_spec())
    services = export_engine.Services(redis=jobs_env.redis, engine=jobs_env.engine)
    LocalDestination(Path(spec.local_root or "") / spec.room_folder).check()  # a run began
    JobState(jobs_env.redis, job.id).request_cancel("U2")

    numbers = export_engine.plan(spec, services)
    export_engine.run_shards(spec, numbers or [], services)
    report = export_engine.finalize(spec, services)

    assert report is not None and report.state == "cancelled"
    assert list((jobs_env.tmp / "cancelled").iterdir()) == []


def test_a_queued_export_to_a_folder_that_can_never_take_it_fails_at_once(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    blocker = jobs_env.tmp / "a-file"
    blocker.write_text("not a folder")
    job = api.enqueue_export(
        room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
        engine=jobs_env.engine, client=VdrClient(proxy_url), local_root=str(blocker / "out"))
    log = jobs_env.tmp / "worker.log"

    worker = start_worker(jobs_env.worker_env(proxy_url), "--burst", log=log)
    assert worker.wait(timeout=60) == 0, log.read_text()

    # No retry was scheduled: a burst worker leaves a scheduled retry behind, job unfinished.
    failed = store.get_job(jobs_env.engine, job.id)
    assert failed is not None and failed.state == "failed", log.read_text()
    assert "cannot write in" in (failed.error or "") and "Not a directory" in (failed.error or "")
    assert requeue_abandoned(jobs_env.redis) == []


def test_a_task_of_an_ended_job_neither_runs_again_nor_rewrites_its_report(
    proxy_url: str, jobs_env: JobsEnv
) -> None:
    from jobs import tasks

    report = api.run_export(
        room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis,
        engine=jobs_env.engine, client=VdrClient(proxy_url), local_root=str(jobs_env.tmp / "out"),
        services=export_services(proxy_url, jobs_env))
    assert report is not None and report.state == "succeeded"
    spec = ExportSpec.model_validate(store.job_params(jobs_env.engine, report.job_id))

    assert tasks.run_export_plan(report.job_id) == 0  # e.g. a retry RQ had scheduled
    assert tasks.run_export_shard(report.job_id, 0) == []
    assert tasks.run_export_finalize(report.job_id) is None
    late = export_engine.fail_job(spec, export_services(proxy_url, jobs_env), "a late failure")

    assert late == report
    assert store.get_report(jobs_env.engine, report.job_id) == report
    job = store.get_job(jobs_env.engine, report.job_id)
    assert job is not None and job.state == "succeeded" and job.error is None
    assert report.job_id not in active_jobs(jobs_env.redis)
