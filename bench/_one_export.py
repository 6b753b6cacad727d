"""Run one export inline, the way `vdr export` does, and print what it took as one JSON line.

    python bench/_one_export.py ROOM --to DIR --s3 s3://bucket/prefix --result OUT.json

A process of its own, so its RSS high-water mark is the exporter's alone and no other part of
the benchmark shares its GIL. Settings come from the environment (VDR_API_URL, REDIS_URL,
DATABASE_URL, AWS_*, VDR_EXPORT_*), as for the product.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

from redis import Redis

from jobs import api, defaults, store
from vdr_client import VdrClient
from vdr_ops.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("room")
    parser.add_argument("--to", required=True)
    parser.add_argument("--no-local", action="store_true", help="S3 only (for experiments).")
    parser.add_argument("--s3", default=None)
    parser.add_argument("--result", required=True, help="File the JSON summary is written to.")
    args = parser.parse_args()

    settings = get_settings()
    redis = Redis.from_url(settings.redis_url)
    engine = store.get_engine(settings.database_url)
    client = VdrClient.from_settings()
    room = client.find_room(args.room)  # resolved before the clock starts, as a job's spec is

    before = _cpu()
    wall_start = time.time()
    started = time.perf_counter()
    report = api.run_export(
        room_ref=room.id, s3_url=args.s3, requested_by="bench", redis=redis, engine=engine,
        client=client, local_root=args.to, to_local=not args.no_local,
    )
    elapsed = time.perf_counter() - started
    cpu = _cpu() - before

    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = report.model_dump(mode="json", include={
        "state", "files_total", "files_done", "files_skipped", "files_failed", "bytes_done",
        "retries", "error",
    }) if report else {"state": "none"}
    result = {"elapsed_s": elapsed, "max_rss_mib": usage.ru_maxrss / 1024, "cpu_s": cpu,
              "process_cpu_s": usage.ru_utime + usage.ru_stime,
              "plan_s": _planned_at(redis, report.job_id if report else "") - wall_start,
              **summary}
    with open(args.result, "w") as sink:  # a file, not stdout: a profiler may print there too
        json.dump(result, sink)


def _planned_at(redis: Redis, job_id: str) -> float:
    """When the job's "started" event (sent once the room is listed) reached Redis."""
    entries: Any = redis.xrange(defaults.EVENTS_STREAM)
    for entry_id, fields in entries:
        if fields.get(b"job_id") == job_id.encode() and fields.get(b"type") == b"started":
            return int(entry_id.split(b"-")[0]) / 1000  # stream ids begin with the time in ms
    return float("nan")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
