"""Job threads: the bot's side of the `vdr:events` stream, drawn into each job's Slack thread.

Jobs only append to a Redis stream; they never wait for Slack. The watcher reads the stream in
a consumer group (several bot processes share the work), keeps per-job state in memory, and a
small pool of sender threads makes the Slack calls:

- the job's channel message is redrawn from `read_progress` (which sums every shard) at most
  once per `edit_interval_s` per job — the interval is a Redis key, so it holds across bot
  processes too;
- retries are summed up and failed files listed in thread replies, at most once per
  `summary_interval_s`;
- on `finished`, the message gets its final state and the thread the report, with the
  manifest attached (v2 upload) when it is small and readable here, else its location.

Slack answering slowly or with 429 (waited out by the WebClient's retry handler) delays only
that job's own updates; consuming the stream never waits for Slack. Slack errors are logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError, ResponseError
from slack_sdk.errors import SlackApiError

import jobs.api as jobs_api
from bot import dedupe, views
from bot.deps import Deps
from jobs import defaults as jobs_defaults
from jobs.store import get_report

log = logging.getLogger("vdr.bot.watcher")

GROUP = "vdr-bot"
"""Consumer group of the bot processes on the events stream."""

EDIT_INTERVAL_S = 3.0
"""A job's channel message is edited at most this often."""

SUMMARY_INTERVAL_S = 30.0
"""Retries and failures are summed up in the thread at most this often per job."""

MANIFEST_ATTACH_MAX = 1024 * 1024
"""Manifests up to this size are attached to the thread; larger ones are linked by location."""

CLAIM_IDLE_MS = 60_000
"""Events another bot process read but did not acknowledge for this long are taken over."""

REPORT_WAIT_S = 10.0
"""How long to wait for a finished job's report to appear in SQL."""

FINISH_RETRY_S = 30.0
"""When Slack refuses a job's report, it is tried again after this long."""


@dataclass
class _JobThread:
    """What the watcher knows of one job with a Slack thread."""

    job_id: str
    channel: str
    ts: str
    dirty: bool = True
    finished: bool = False
    finish_entries: list[str] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    retries_since: float = field(default_factory=time.monotonic)
    failures: list[dict[str, str]] = field(default_factory=list)
    failures_total: int = 0
    last_summary: float = field(default_factory=time.monotonic)
    not_before: float = 0.0
    busy: bool = False


class JobWatcher:
    """Consumes `vdr:events` and keeps every job's Slack message and thread up to date."""

    def __init__(self, deps: Deps, *, edit_interval_s: float = EDIT_INTERVAL_S,
                 summary_interval_s: float = SUMMARY_INTERVAL_S, senders: int = 4,
                 consumer: str | None = None, block_ms: int = 500) -> None:
        self.deps = deps
        self.edit_interval_s = edit_interval_s
        self.summary_interval_s = summary_interval_s
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.block_ms = block_ms
        self.stream = jobs_defaults.EVENTS_STREAM
        self._jobs: dict[str, _JobThread] = {}
        self._skipped: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="vdr-slack")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> JobWatcher:
        self.ensure_group()
        self._thread = threading.Thread(target=self._run, name="vdr-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def ensure_group(self) -> None:
        """Create the consumer group at the stream's end (new events only) unless it exists."""
        try:
            self.deps.redis.xgroup_create(self.stream, GROUP, id="$", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _run(self) -> None:
        last_claim = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_claim > CLAIM_IDLE_MS / 1000:
                    self._take_over_stale()
                    last_claim = time.monotonic()
                self.poll()
            except RedisError as error:
                log.warning("events stream unreadable, retrying: %s", error)
                self._stop.wait(1.0)
            except Exception:  # the watcher outlives any one bad event or database hiccup
                log.exception("watcher loop failed; continuing")
                self._stop.wait(1.0)

    # -- reading events ------------------------------------------------------------------------

    def poll(self) -> None:
        """Read one batch of events (waiting up to `block_ms`), then start what is due."""
        batches: Any = self.deps.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                             count=200, block=self.block_ms)
        for _, entries in batches or []:
            for entry_id, fields in entries:
                self._take(_text(entry_id), fields)
        self._dispatch_due()

    def _take_over_stale(self) -> None:
        """Adopt events a vanished bot process read but never acknowledged."""
        answer: Any = self.deps.redis.xautoclaim(self.stream, GROUP, self.consumer,
                                            min_idle_time=CLAIM_IDLE_MS, start_id="0-0",
                                            count=200)
        for entry_id, fields in answer[1] if len(answer) > 1 else []:
            if fields:
                self._take(_text(entry_id), fields)

    def _take(self, entry_id: str, fields: dict[Any, Any]) -> None:
        event = {_text(k): _text(v) for k, v in fields.items()}
        job_id, kind = event.get("job_id", ""), event.get("type", "")
        try:
            data = json.loads(event.get("data") or "{}")
        except ValueError:
            data = {}
        job = self._job(job_id)
        if job is None:
            self._ack(entry_id)
            return
        with self._lock:
            self._record(job, entry_id, kind, data)

    def _record(self, job: _JobThread, entry_id: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "retry":
            job.retries[str(data.get("reason") or "retry")] += 1
        elif kind == "file_failed":
            job.failures.append({"path": str(data.get("path", "?")),
                                 "reason": str(data.get("reason", "?"))})
            job.failures_total += 1
        elif kind == "finished":
            job.finished = True
            job.finish_entries.append(entry_id)
            return  # acknowledged once the report is in the thread
        job.dirty = True
        self._ack(entry_id)

    def _job(self, job_id: str) -> _JobThread | None:
        """The job's thread, looked up once; None for jobs started outside Slack."""
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id]
            if not job_id or job_id in self._skipped:
                return None
        record = jobs_api.get_job(job_id, engine=self.deps.engine)
        origin = (record.origin or {}) if record else {}
        with self._lock:
            if not origin.get("channel") or not origin.get("ts"):
                self._skipped.add(job_id)
                return None
            return self._jobs.setdefault(job_id, _JobThread(job_id, str(origin["channel"]),
                                                            str(origin["ts"])))

    def _ack(self, *entry_ids: str) -> None:
        if entry_ids:
            self.deps.redis.xack(self.stream, GROUP, *entry_ids)

    # -- talking to Slack ----------------------------------------------------------------------

    def _dispatch_due(self) -> None:
        with self._lock:
            due = [job for job in self._jobs.values() if not job.busy and self._has_work(job)]
            for job in due:
                job.busy = True
        for job in due:
            self._pool.submit(self._sync, job)

    def _has_work(self, job: _JobThread) -> bool:
        if time.monotonic() < job.not_before:
            return False
        return job.dirty or job.finished or bool(job.failures) or bool(job.retries)

    def _sync(self, job: _JobThread) -> None:
        """Bring one job's Slack message and thread up to date (on a sender thread)."""
        try:
            self._post_summaries(job, force=job.finished)
            if job.finished:
                self._finish(job)
            elif job.dirty:
                self._redraw(job, throttled=True)
        except Exception:  # a sender must survive anything one job's data throws at it
            log.exception("job %s: Slack update failed", job.job_id)
        finally:
            with self._lock:
                job.busy = False

    def _redraw(self, job: _JobThread, *, throttled: bool) -> None:
        if throttled and self._edited_recently(job.job_id):
            return
        record = jobs_api.get_job(job.job_id, engine=self.deps.engine)
        if record is None:
            return
        progress = jobs_api.read_progress(job.job_id, redis=self.deps.redis)
        # The slot is taken only now, with the message ready, so edits leave at the pace
        # the interval sets rather than at the pace of the reads above.
        if throttled and not self._edit_slot(job.job_id):
            return
        with self._lock:
            job.dirty = False
        try:
            self._slack("chat_update", job, channel=job.channel, ts=job.ts,
                        **views.job_message(record, progress))
        finally:
            if throttled:
                self._rearm_edit_slot(job.job_id)

    def _edited_recently(self, job_id: str) -> bool:
        return bool(self.deps.redis.exists(self._edit_key(job_id)))

    def _edit_slot(self, job_id: str) -> bool:
        """True when this job's message may be edited now (once per interval, all processes)."""
        return bool(self.deps.redis.set(self._edit_key(job_id), b"1", nx=True,
                                        px=self._edit_interval_ms))

    def _rearm_edit_slot(self, job_id: str) -> None:
        """Count the interval from when Slack has the edit, not from when it left.

        A slow or delayed call would otherwise let the next edit land sooner than one interval
        after it; re-arming once the call returns keeps the spacing Slack sees exact."""
        self.deps.redis.set(self._edit_key(job_id), b"1", px=self._edit_interval_ms)

    @staticmethod
    def _edit_key(job_id: str) -> str:
        return f"vdr:bot:edit:{job_id}"

    @property
    def _edit_interval_ms(self) -> int:
        return max(1, int(self.edit_interval_s * 1000))

    def _post_summaries(self, job: _JobThread, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - job.last_summary < self.summary_interval_s:
            return
        with self._lock:
            retries, window = dict(job.retries), now - job.retries_since
            failures, total = list(job.failures), job.failures_total
            job.retries.clear()
            job.failures.clear()
            job.failures_total = 0
            job.retries_since = job.last_summary = now
        if retries:
            self._reply(job, views.retries_message(retries, window))
        if failures:
            self._reply(job, views.failures_message(failures, total))

    def _finish(self, job: _JobThread) -> None:
        """Final state, report and manifest; tried again later if Slack refuses the report."""
        claim = f"report-posted:{job.job_id}"
        if dedupe.claim(self.deps.redis, claim, ttl_s=7 * 24 * 3600):
            self._redraw(job, throttled=False)
            report = self._wait_for_report(job.job_id)
            if report is None:
                log.warning("job %s finished but has no report in SQL", job.job_id)
            elif not self._reply(job, views.report_message(report)):
                self.deps.redis.delete(dedupe.PREFIX + claim)
                with self._lock:
                    job.not_before = time.monotonic() + FINISH_RETRY_S
                return
            else:
                self._share_manifest(job, report.manifest_locations)
                log.info("job %s: report posted to %s", job.job_id, job.channel)
        with self._lock:
            entries, job.finish_entries = job.finish_entries, []
            self._jobs.pop(job.job_id, None)
            self._skipped.add(job.job_id)
        self._ack(*entries)

    def _wait_for_report(self, job_id: str) -> Any:
        deadline = time.monotonic() + REPORT_WAIT_S
        while True:
            report = get_report(self.deps.engine, job_id)
            if report is not None or time.monotonic() > deadline:
                return report
            time.sleep(0.25)

    def _share_manifest(self, job: _JobThread, locations: list[str]) -> None:
        if not locations:
            return
        local = next((Path(loc) for loc in locations if _readable_file(loc)), None)
        size = local.stat().st_size if local else None
        if local is not None and size is not None and size <= MANIFEST_ATTACH_MAX:
            self._slack("files_upload_v2", job, channel=job.channel, thread_ts=job.ts,
                        file=str(local), filename=local.name,
                        title=f"Manifest of job {job.job_id}")
            return
        self._reply(job, views.manifest_location_message(locations, size))

    def _reply(self, job: _JobThread, message: views.Message) -> bool:
        return self._slack("chat_postMessage", job, channel=job.channel, thread_ts=job.ts,
                           **message)

    def _slack(self, method: str, job: _JobThread, **kwargs: Any) -> bool:
        """Make one Web API call; False (logged) when Slack refused it even after retries."""
        try:
            getattr(self.deps.client, method)(**kwargs)
        except SlackApiError as error:
            log.warning("job %s: Slack %s failed: %s", job.job_id, method,
                        error.response.get("error"))
            return False
        return True


def _readable_file(location: str) -> bool:
    if "://" in location:
        return False
    path = Path(location)
    return path.is_file() and os.access(path, os.R_OK)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
