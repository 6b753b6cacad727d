"""A job's shared state in Redis: plan, task leases, manifest entries, counters, cancel flag.

Every process working on a job (the planner, any number of shard runners on any machines,
the finalizer, the bot reading progress) meets here. Key layout, all under `vdr:job:{id}:`:

    spec        JSON of the ExportSpec
    shard:{n}   JSON list of the shard's FileTasks
    folders     JSON list of written folder paths (empty folders are created at the end)
    tasks       hash task name -> queued | running | done | failed
    attempts    hash task name -> times started
    lease:{t}   token of the process running task t; expires unless renewed
    progress    hash of counters (files/bytes done and total, retries, failures, times)
    manifest    hash item id -> JSON ManifestEntry
    failures    hash item id -> JSON {"path", "reason"}
    retried     hash "path\\0reason" -> count
    inflight    hash item id -> bytes of that file received so far (large files)
    samples     list of "time bytes_moved" for the rate over the last minute
    cancel      who asked to cancel
    tick        set for a moment after a progress event, so shards together send few

`vdr:jobs:active` is the set of jobs with work left; the reaper looks only there.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from redis import Redis

from jobs import defaults
from jobs.manifest import ManifestEntry

ACTIVE_JOBS = "vdr:jobs:active"
"""Set of job ids that still have tasks to run or finish."""

TASK_STATES = ("queued", "running", "done", "failed")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def shard_task(number: int) -> str:
    return f"shard:{number:05d}"


def shard_number(task: str) -> int:
    return int(task.split(":", 1)[1])


class JobState:
    """Redis state of one job; thread-safe (redis-py clients are)."""

    def __init__(self, redis: Redis, job_id: str) -> None:
        self.redis = redis
        self.job_id = job_id
        self.prefix = f"vdr:job:{job_id}:"

    def key(self, name: str) -> str:
        return self.prefix + name

    # --- spec and plan ------------------------------------------------------------------------

    def save_spec(self, spec: dict[str, Any]) -> None:
        self.redis.set(self.key("spec"), json.dumps(spec), ex=defaults.STATE_TTL_S)
        self.redis.sadd(ACTIVE_JOBS, self.job_id)

    def load_spec(self) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("spec"))
        return json.loads(raw) if raw else None

    def save_plan(
        self, shards: list[list[dict[str, Any]]], folders: list[str], totals: dict[str, int]
    ) -> None:
        """Store the shards and mark each as queued; totals seed the progress counters."""
        ttl = defaults.STATE_TTL_S
        with self.redis.pipeline() as pipe:
            for number, tasks in enumerate(shards):
                pipe.set(self.key(f"shard:{number}"), json.dumps(tasks), ex=ttl)
                pipe.hsetnx(self.key("tasks"), shard_task(number), "queued")
            pipe.set(self.key("folders"), json.dumps(folders), ex=ttl)
            counters: dict[str, int] = {**totals, "shards_total": len(shards)}
            pipe.hset(self.key("progress"), mapping=counters)  # type: ignore[arg-type]
            for name in ("tasks", "attempts", "progress"):
                pipe.expire(self.key(name), ttl)
            pipe.execute()

    def load_shard(self, number: int) -> list[dict[str, Any]]:
        raw = self.redis.get(self.key(f"shard:{number}"))
        return json.loads(raw) if raw else []

    def load_folders(self) -> list[str]:
        raw = self.redis.get(self.key("folders"))
        return json.loads(raw) if raw else []

    def shard_count(self) -> int:
        return sum(1 for task in self.tasks() if task.startswith("shard:"))

    # --- tasks and leases ---------------------------------------------------------------------

    def tasks(self) -> dict[str, str]:
        raw = self.redis.hgetall(self.key("tasks"))
        return {_text(name): _text(value) for name, value in raw.items()}

    def set_task(self, task: str, state: str) -> None:
        self.redis.hset(self.key("tasks"), task, state)
        self.redis.expire(self.key("tasks"), defaults.STATE_TTL_S)

    def claim_task(self, task: str) -> bool:
        """Mark `task` queued unless it already has a state; True if this call did it."""
        claimed = bool(self.redis.hsetnx(self.key("tasks"), task, "queued"))
        self.redis.expire(self.key("tasks"), defaults.STATE_TTL_S)
        return claimed

    def count_attempt(self, task: str) -> int:
        attempts = int(self.redis.hincrby(self.key("attempts"), task, 1))
        self.redis.expire(self.key("attempts"), defaults.STATE_TTL_S)
        return attempts

    def attempts(self, task: str) -> int:
        return int(self.redis.hget(self.key("attempts"), task) or 0)

    def acquire_lease(self, task: str, lease_s: float) -> str | None:
        """A token if this process now runs `task`; None if a live process holds it."""
        token = uuid.uuid4().hex
        acquired = self.redis.set(self.key(f"lease:{task}"), token, nx=True, px=int(lease_s * 1000))
        return token if acquired else None

    def renew_lease(self, task: str, token: str, lease_s: float) -> bool:
        renewed = self.redis.eval(_RENEW, 1, self.key(f"lease:{task}"), token, int(lease_s * 1000))
        return bool(renewed)

    def release_lease(self, task: str, token: str) -> None:
        self.redis.eval(_RELEASE, 1, self.key(f"lease:{task}"), token)

    def lease_held(self, task: str) -> bool:
        return bool(self.redis.exists(self.key(f"lease:{task}")))

    # --- cancel -------------------------------------------------------------------------------

    def request_cancel(self, actor: str) -> None:
        self.redis.set(self.key("cancel"), actor, ex=defaults.STATE_TTL_S)

    def cancel_requested(self) -> bool:
        return bool(self.redis.exists(self.key("cancel")))

    # --- results ------------------------------------------------------------------------------

    def record_entry(self, entry: ManifestEntry, counters: dict[str, int]) -> None:
        """Store a file's manifest entry and bump the counters in one round trip."""
        self.record_entries([entry], counters)

    def record_entries(self, entries: list[ManifestEntry], counters: dict[str, int]) -> None:
        """Store manifest entries and bump the counters by their sum, in one round trip."""
        failed: dict[Any, Any] = {
            e.item_id: json.dumps({"path": e.original_path, "reason": e.error or "failed"})
            for e in entries if e.status == "failed"
        }
        done = [e.item_id for e in entries if e.status != "failed"]
        stored: dict[Any, Any] = {e.item_id: e.model_dump_json() for e in entries}
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key("manifest"), mapping=stored)
            pipe.hdel(self.key("inflight"), *(e.item_id for e in entries))
            if failed:
                pipe.hset(self.key("failures"), mapping=failed)
            if done:
                pipe.hdel(self.key("failures"), *done)
            for name, amount in counters.items():
                if amount:
                    pipe.hincrby(self.key("progress"), name, amount)
            pipe.hset(self.key("progress"), "updated_at", time.time())
            for name in ("manifest", "failures", "progress"):
                pipe.expire(self.key(name), defaults.STATE_TTL_S)
            pipe.execute()

    def record_moved(self, item_id: str, written: int, *, moved: int = 0) -> None:
        """Bytes of a file in flight so far (0: none any more), and bytes moved for the rate."""
        with self.redis.pipeline(transaction=False) as pipe:
            if written:
                pipe.hset(self.key("inflight"), item_id, written)
                pipe.expire(self.key("inflight"), defaults.STATE_TTL_S)
            else:
                pipe.hdel(self.key("inflight"), item_id)
            if moved:
                pipe.hincrby(self.key("progress"), "bytes_moved", moved)
            pipe.execute()

    def bytes_in_flight(self) -> int:
        return sum(int(value) for value in self.redis.hvals(self.key("inflight")))

    def record_retry(self, path: str, reason: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.key("retried"), f"{path}\0{reason}", 1)
            pipe.hincrby(self.key("progress"), "retries", 1)
            pipe.expire(self.key("retried"), defaults.STATE_TTL_S)
            pipe.execute()

    def manifest_entries(self) -> dict[str, ManifestEntry]:
        return {
            _text(item_id): ManifestEntry.model_validate_json(raw)
            for item_id, raw in self._scan_hash("manifest")
        }

    def entries_for(self, item_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """Manifest entries an earlier attempt of this job stored for these items."""
        ids = list(item_ids)
        if not ids:
            return {}
        values = self.redis.hmget(self.key("manifest"), ids)
        return {
            item_id: ManifestEntry.model_validate_json(raw)
            for item_id, raw in zip(ids, values, strict=True)
            if raw is not None
        }

    def failures(self) -> list[dict[str, str]]:
        found = [json.loads(raw) for _, raw in self._scan_hash("failures")]
        return sorted(found, key=lambda failure: failure["path"])

    def retried(self) -> list[dict[str, Any]]:
        found = []
        for field, count in self._scan_hash("retried"):
            path, _, reason = _text(field).partition("\0")
            found.append({"path": path, "reason": reason, "count": int(count)})
        return sorted(found, key=lambda item: (item["path"], item["reason"]))

    def counters(self) -> dict[str, float]:
        """The numeric progress fields (the final state is read with `final_state`)."""
        raw = self.redis.hgetall(self.key("progress"))
        return {_text(name): float(value) for name, value in raw.items() if _text(name) != "state"}

    def set_counter(self, name: str, value: float) -> None:
        self.redis.hset(self.key("progress"), name, value)

    def set_final_state(self, state: str) -> None:
        self.redis.hset(self.key("progress"), "state", state)
        self.redis.expire(self.key("progress"), defaults.STATE_TTL_S)

    def final_state(self) -> str | None:
        raw = self.redis.hget(self.key("progress"), "state")
        return _text(raw) if raw else None

    def sample_rate(self, now: float, bytes_done: float) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self.key("samples"), f"{now} {bytes_done}")
            pipe.ltrim(self.key("samples"), 0, 59)
            pipe.expire(self.key("samples"), defaults.STATE_TTL_S)
            pipe.execute()

    def samples(self) -> list[tuple[float, float]]:
        pairs = []
        for raw in self.redis.lrange(self.key("samples"), 0, -1):
            moment, done = _text(raw).split()
            pairs.append((float(moment), float(done)))
        return pairs

    def progress_tick(self, interval_s: float) -> bool:
        """True for one caller per interval across all processes: that one sends the event."""
        if interval_s <= 0:
            return True
        return bool(self.redis.set(self.key("tick"), 1, nx=True, px=int(interval_s * 1000)))

    # --- end ----------------------------------------------------------------------------------

    def finish(self) -> None:
        """Drop the bulky keys once the report is in SQL; counters stay until they expire."""
        shards = [self.key(f"shard:{n}") for n in range(self.shard_count())]
        bulky = ["manifest", "folders", "spec", "failures", "retried", "samples", "tick",
                 "inflight"]
        self.redis.delete(*shards, *(self.key(name) for name in bulky))
        self.redis.srem(ACTIVE_JOBS, self.job_id)

    def _scan_hash(self, name: str) -> Iterator[tuple[Any, Any]]:
        yield from self.redis.hscan_iter(self.key(name), count=1000)


def active_jobs(redis: Redis) -> list[str]:
    return sorted(_text(job_id) for job_id in redis.smembers(ACTIVE_JOBS))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
