"""End to end: a signed `/vdr export` to the files at both destinations and the job's thread.

Slack is the fake over HTTP; the app is served on loopback; the job runs in a real RQ worker
process (`vdr worker --burst`) against the proxy over a synthetic room, writing to a local
folder and to moto's S3 server; the watcher draws progress and the report into the thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from redis import Redis

from bot import blockkit, views
from bot.fake_slack import FakeSlack
from bot.watcher import JobWatcher
from jobs import api as jobs_api
from jobs.store import get_report
from proxy import FaultConfig, RoomSpec, SyntheticBackend
from tests.fixtures.slack import CHANNEL, OPERATOR, grant_roles, serve_bot
from vdr_client import VdrClient

EDIT_INTERVAL_S = 1.0
JITTER_S = 0.02
"""The watcher counts each interval from when Slack has answered the previous edit, so arrivals
are spaced by a whole interval; this only absorbs Redis expiry and clock granularity."""
ROOM = RoomSpec("Project Falcon", files=400, file_size=6000, folders=8, depth=2)
SMALL_ROOM = RoomSpec("Project Heron", files=60, file_size=2000, folders=3, depth=1)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def proxy_url(make_proxy: Callable[..., Any]) -> str:
    backend = SyntheticBackend(seed=5, rooms=0, specs=[ROOM, SMALL_ROOM])
    faults = FaultConfig(latency_ms=25, p429=0.03, retry_after_s=0.2, seed=3)
    return str(make_proxy(backend, faults=faults).url)


@contextmanager
def worker(redis_url: str, database_url: str, proxy_url: str) -> Iterator[None]:
    """`vdr worker` in its own process, configured only by its environment; stopped after."""
    env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url,
               VDR_API_URL=proxy_url, VDR_EXPORT_PROGRESS_INTERVAL_S="0.05",
               VDR_EXPORT_SHARD_MAX_FILES="150", VDR_EXPORT_CONCURRENCY="4",
               VDR_EXPORT_FSYNC="false")
    vdr = Path(sys.executable).with_name("vdr")
    process = subprocess.Popen([str(vdr), "worker", "--simple", "--no-scheduler"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        assert "Traceback" not in output, output[-3000:]


@contextmanager
def slack_with_watcher(fake_slack: FakeSlack, redis: Redis, engine: Any,
                       vdr: VdrClient) -> Iterator[Any]:
    with serve_bot(fake_slack, redis=redis, engine=engine, vdr=vdr) as deps:
        watcher = JobWatcher(deps, edit_interval_s=EDIT_INTERVAL_S, summary_interval_s=1.0,
                             block_ms=100).start()
        try:
            yield deps
        finally:
            watcher.stop()


def test_slack_export_runs_in_a_worker_and_reports_in_its_thread(
        fake_slack: FakeSlack, redis: Redis, redis_url: str, sqlite_url: str,
        sqlite_engine: Any, proxy_url: str, s3_env: str, tmp_path: Path) -> None:
    export_root = tmp_path / "exports"
    grant_roles(sqlite_engine, redis, export_root=str(export_root), s3_bucket=s3_env,
                s3_prefix="legal")
    vdr = VdrClient(proxy_url)
    room = vdr.find_room(ROOM.name)

    with slack_with_watcher(fake_slack, redis, sqlite_engine, vdr) as deps:
        job = submit_export(fake_slack, deps, room.name, s3=True)
        with worker(redis_url, sqlite_url, proxy_url):
            report_message = fake_slack.wait_for(
                lambda: report_in_thread(fake_slack, job.origin["ts"]), timeout_s=60,
                what="report in the thread")
        manifest_message = fake_slack.wait_for(
            lambda: [m for m in fake_slack.thread(CHANNEL, job.origin["ts"]) if m.files],
            what="manifest upload")[0]

    report = get_report(sqlite_engine, job.id)
    assert report is not None and report.state == "succeeded"
    assert (report.files_done, report.files_failed) == (ROOM.files, 0)
    assert report.bytes_done == room.size.total_bytes

    check_local_copy(export_root, room.size.total_bytes)
    check_s3_copy(s3_env, "legal/", ROOM.files)
    check_thread(fake_slack, job, report, report_message, manifest_message)
    check_throttled_edits(fake_slack, job.origin["ts"])
    assert fake_slack.failed_calls() == []


@pytest.mark.slow
def test_slack_throttling_the_thread_never_holds_the_job_back(
        fake_slack: FakeSlack, redis: Redis, redis_url: str, sqlite_url: str,
        sqlite_engine: Any, proxy_url: str, tmp_path: Path) -> None:
    grant_roles(sqlite_engine, redis, export_root=str(tmp_path / "exports"))
    vdr = VdrClient(proxy_url)

    with slack_with_watcher(fake_slack, redis, sqlite_engine, vdr) as deps:
        job = submit_export(fake_slack, deps, SMALL_ROOM.name, s3=False)
        fake_slack.throttle("chat.update", times=3, retry_after_s=2)
        with worker(redis_url, sqlite_url, proxy_url):
            fake_slack.wait_for(lambda: report_in_thread(fake_slack, job.origin["ts"]),
                                timeout_s=60, what="report in the thread")

    report = get_report(sqlite_engine, job.id)
    assert report is not None and report.state == "succeeded"
    ts = job.origin["ts"]
    edits = [c for c in fake_slack.calls("chat.update") if c.params.get("ts") == ts]
    # The bot's own "queued" edit, then the watcher's first edit waits out three 429s.
    assert [c.status for c in edits[:5]] == [200, 429, 429, 429, 200]
    assert edits[4].at - edits[1].at >= 6.0
    assert report.finished_at.timestamp() < edits[4].at  # the job did not wait for Slack
    assert "*Succeeded*" in str(fake_slack.message(CHANNEL, ts).blocks)  # type: ignore[union-attr]


def submit_export(slack: FakeSlack, deps: Any, room_name: str, *, s3: bool) -> Any:
    """Export `room_name` through the modal; returns the job once its message shows it."""
    slack.command(f'export "{room_name}"', user=OPERATOR, channel=CHANNEL)
    modal = slack.wait_for(lambda: (v := slack.open_modal(OPERATOR))
                           and v.body.get("callback_id") == views.EXPORT_MODAL and v,
                           what="export form")
    values: dict[str, Any] = {views.DESTINATIONS: ["local", "s3"] if s3 else ["local"],
                              views.CONFIRM: ["yes"]}
    if s3:
        values[views.S3_PREFIX] = "legal"
    delivery = slack.submit(modal.id, user=OPERATOR, values=values)
    assert delivery.status == 200 and not delivery.late
    jobs = slack.wait_for(lambda: [j for j in jobs_api.list_jobs(engine=deps.engine)
                                   if j.origin], what="queued job")
    ts = jobs[0].origin["ts"]
    slack.wait_for(lambda: "job `" in str(slack.message(CHANNEL, ts).blocks),  # type: ignore[union-attr]
                   what="job message")
    return jobs[0]


def report_in_thread(slack: FakeSlack, ts: str) -> Any:
    for message in slack.thread(CHANNEL, ts):
        if message.blocks and "report" in message.blocks[0].get("text", {}).get("text", ""):
            return message
    return None


def check_local_copy(export_root: Path, total_bytes: int) -> None:
    files = [p for p in export_root.rglob("*") if p.is_file()]
    data = [p for p in files if not p.name.startswith("manifest")]
    assert len(data) == ROOM.files
    assert sum(p.stat().st_size for p in data) == total_bytes
    assert any(p.name.startswith("manifest") for p in files)


def check_s3_copy(bucket: str, prefix: str, count: int) -> None:
    s3 = boto3.client("s3")
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])]
    assert len([k for k in keys if "manifest" not in k.rsplit("/", 1)[-1]]) == count


def check_thread(slack: FakeSlack, job: Any, report: Any, report_message: Any,
                 manifest_message: Any) -> None:
    parent = slack.message(CHANNEL, job.origin["ts"])
    assert parent is not None and "*Succeeded*" in str(parent.blocks)
    assert all(b["type"] != "actions" for b in parent.blocks)  # no Cancel once done
    body = str(report_message.blocks)
    assert f"{ROOM.files:,} of {ROOM.files:,}" in body and "s3://" in body
    assert not blockkit.message_problems(report_message.text, report_message.blocks)

    uploaded = slack.file(manifest_message.files[0])
    local_manifest = next(loc for loc in report.manifest_locations if "://" not in loc)
    assert uploaded is not None and uploaded.content == Path(local_manifest).read_bytes()
    assert len(uploaded.content.splitlines()) >= ROOM.files
    assert json.loads(uploaded.content.splitlines()[-1])

    if report.retries:
        assert any(":repeat:" in m.text for m in slack.thread(CHANNEL, job.origin["ts"]))


def check_throttled_edits(slack: FakeSlack, ts: str) -> None:
    """After the bot's own 'queued' edit, the watcher edits at most once per interval."""
    edits = [c for c in slack.calls("chat.update") if c.params.get("ts") == ts]
    watcher_edits = edits[1:-1]  # the last one is the final state, drawn at once
    assert len(watcher_edits) >= 2, f"only {len(edits)} edits: the job ran too briefly"
    gaps = [b.at - a.at for a, b in zip(watcher_edits, watcher_edits[1:], strict=False)]
    assert all(gap >= EDIT_INTERVAL_S - JITTER_S for gap in gaps), gaps
