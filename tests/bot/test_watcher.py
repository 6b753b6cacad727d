"""The job-thread watcher, fed by the jobs' own event emitter on a real Redis stream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from bot import watcher as watcher_module
from bot.deps import Deps, slack_retry_handlers
from bot.fake_slack import FakeSlack
from bot.watcher import JobWatcher
from jobs import store
from jobs.progress import emit_event
from jobs.store import JobRecord, Report
from tests.fixtures.services import free_port
from tests.fixtures.slack import CHANNEL, OPERATOR, bot_settings
from vdr_client import VdrClient

INTERVAL_S = 0.5
JITTER_S = 0.02
"""The watcher counts each interval from when Slack has answered the previous edit, so arrivals
are spaced by a whole interval; this only absorbs Redis expiry and clock granularity."""


@pytest.fixture
def deps(fake_slack: FakeSlack, redis_url: str, sqlite_engine: Any) -> Iterator[Deps]:
    redis = Redis.from_url(redis_url)
    vdr = VdrClient(f"http://127.0.0.1:{free_port()}")
    client = fake_slack.web_client(retry_handlers=slack_retry_handlers())
    yield Deps(bot_settings(fake_slack), client, redis, sqlite_engine, vdr)
    vdr.close()
    redis.close()


@pytest.fixture
def watcher(deps: Deps) -> Iterator[JobWatcher]:
    running = JobWatcher(deps, edit_interval_s=INTERVAL_S, summary_interval_s=INTERVAL_S,
                         block_ms=50).start()
    yield running
    running.stop()


def new_job(deps: Deps, *, with_origin: bool = True) -> JobRecord:
    origin = None
    if with_origin:
        posted = deps.client.chat_postMessage(channel=CHANNEL, text="export queued")
        origin = {"channel": CHANNEL, "ts": posted["ts"]}
    record = JobRecord(id=store.new_id(), kind="export", room_id="r1", room_name="Project Kite",
                       requested_by=OPERATOR, state="running", destinations=["s3://b/kite"],
                       origin=origin, created_at=store.utcnow())
    store.insert_job(deps.engine, record, params={})
    return record


def finish(deps: Deps, job: JobRecord, *, failures: int = 0) -> Report:
    report = Report(
        id=store.new_id(), job_id=job.id, kind="export", room_id=job.room_id,
        room_name=job.room_name, requested_by=job.requested_by,
        state="failed" if failures else "succeeded", destinations=job.destinations,
        files_total=100, files_done=100 - failures, files_failed=failures, bytes_total=10**6,
        bytes_done=10**6, duration_s=12.0,
        failures=[{"path": f"/docs/{n}.pdf", "reason": "hash mismatch"} for n in range(failures)],
        manifest_locations=["s3://b/kite/manifest.jsonl"], created_at=store.utcnow(),
        finished_at=store.utcnow(),
    )
    store.save_report(deps.engine, report)
    store.set_job_state(deps.engine, job.id, report.state)
    emit_event(deps.redis, job.id, "finished", {"report_id": report.id})
    return report


def edits_of(slack: FakeSlack, job: JobRecord) -> list[Any]:
    return [c for c in slack.calls("chat.update") if c.params.get("ts") == job.origin["ts"]
            and c.status == 200]  # type: ignore[index]


def thread_texts(slack: FakeSlack, job: JobRecord) -> list[str]:
    return [m.text for m in slack.thread(CHANNEL, job.origin["ts"])]  # type: ignore[index]


def wait_for_report(slack: FakeSlack, job: JobRecord) -> list[str]:
    return slack.wait_for(lambda: (texts := thread_texts(slack, job))
                          and any(t.startswith("Export of") for t in texts) and texts,
                          what="report in the thread")


def test_a_storm_of_progress_events_gives_spaced_edits(fake_slack: FakeSlack, deps: Deps,
                                                       watcher: JobWatcher) -> None:
    job = new_job(deps)
    deadline = time.monotonic() + 2.6
    while time.monotonic() < deadline:
        emit_event(deps.redis, job.id, "progress", {})
        time.sleep(0.01)
    fake_slack.wait_for(lambda: len(edits_of(fake_slack, job)) >= 3, what="edits")
    time.sleep(INTERVAL_S)

    edits = edits_of(fake_slack, job)
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:], strict=False)]
    assert len(edits) >= 3
    assert all(gap >= INTERVAL_S - JITTER_S for gap in gaps), gaps


def test_retries_and_failures_are_summed_up_in_the_thread(fake_slack: FakeSlack, deps: Deps,
                                                          watcher: JobWatcher) -> None:
    job = new_job(deps)
    for n in range(5):
        emit_event(deps.redis, job.id, "retry", {"path": f"/a/{n}", "reason": "429"})
    for n in range(30):
        emit_event(deps.redis, job.id, "file_failed", {"path": f"/docs/{n}.pdf",
                                                       "reason": "hash mismatch"})
    finish(deps, job, failures=30)
    texts = wait_for_report(fake_slack, job)

    retried = [int(m.group(1)) for t in texts if (m := re.search(r":repeat: (\d+) retr", t))]
    assert sum(retried) == 5
    failed = [int(m.group(1)) for t in texts if (m := re.fullmatch(r"(\d+) file\(s\) failed", t))]
    assert sum(failed) == 30
    named = sum(str(m.blocks).count("hash mismatch") for m in fake_slack.thread(
        CHANNEL, job.origin["ts"]) if "file(s) failed" in m.text)  # type: ignore[index]
    assert named == min(30, 15 * len(failed))  # at most 15 named per reply, the rest counted
    location = fake_slack.wait_for(lambda: [m for m in fake_slack.thread(
        CHANNEL, job.origin["ts"]) if m.text == "Manifest location"],  # type: ignore[index]
        what="manifest location")
    assert "s3://b/kite/manifest.jsonl" in str(location[0].blocks)
    parent = fake_slack.message(CHANNEL, job.origin["ts"])  # type: ignore[index]
    assert parent is not None and "*Failed*" in str(parent.blocks)


def test_jobs_started_outside_slack_are_left_alone(fake_slack: FakeSlack, deps: Deps,
                                                  watcher: JobWatcher) -> None:
    job = new_job(deps, with_origin=False)
    emit_event(deps.redis, job.id, "progress", {})
    finish(deps, job)
    calls = len(fake_slack.calls())
    fake_slack.wait_for(lambda: not deps.redis.xpending("vdr:events", watcher_module.GROUP)[
        "pending"], what="events acknowledged")
    assert len(fake_slack.calls()) == calls


def test_a_refused_report_is_posted_on_a_later_try(fake_slack: FakeSlack, deps: Deps,
                                                   watcher: JobWatcher,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher_module, "FINISH_RETRY_S", 0.5)
    job = new_job(deps)
    fake_slack.fail("chat.postMessage", "service_unavailable")
    finish(deps, job)
    texts = wait_for_report(fake_slack, job)
    assert sum(t.startswith("Export of") for t in texts) == 1
    posts = [(c.error, c.params.get("text", "")) for c in fake_slack.calls("chat.postMessage")]
    refused = [text for error, text in posts if error]
    assert refused == ["Export of Project Kite: succeeded"], posts


def test_two_bot_processes_share_events_and_the_edit_interval(
        fake_slack: FakeSlack, deps: Deps, watcher: JobWatcher) -> None:
    other = JobWatcher(deps, edit_interval_s=INTERVAL_S, block_ms=50, consumer="other").start()
    try:
        job = new_job(deps)
        deadline = time.monotonic() + 2.1
        while time.monotonic() < deadline:
            emit_event(deps.redis, job.id, "progress", {})
            time.sleep(0.005)
        finish(deps, job)
        wait_for_report(fake_slack, job)
    finally:
        other.stop()
    consumers = fake_slack.wait_for(lambda: (found := deps.redis.xinfo_consumers(
        "vdr:events", watcher_module.GROUP)) and all(c["pending"] == 0 for c in found)
        and found, what="every event acknowledged")
    assert len(consumers) == 2
    progress_edits = edits_of(fake_slack, job)[:-1]
    gaps = [b.at - a.at for a, b in zip(progress_edits, progress_edits[1:], strict=False)]
    assert len(progress_edits) >= 2 and all(gap >= INTERVAL_S - JITTER_S for gap in gaps), gaps
    assert sum(t.startswith("Export of") for t in thread_texts(fake_slack, job)) == 1
