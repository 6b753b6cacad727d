"""What the export engine needs from outside, and how it opens its client and destinations.

`Services` is the seam tests and benchmarks use: their own Redis, SQL engine, limits, a VDR
client factory (e.g. pointed at a proxy on a free port) and an S3 client factory (e.g. with a
failure injected by a botocore event hook).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from redis import Redis

from jobs.config import EngineConfig
from jobs.destinations import Destination
from jobs.local_dest import LocalDestination
from jobs.plan import ExportSpec
from jobs.progress import emit_event
from jobs.s3_dest import S3Destination, direct_puts_for, parse_s3_url, shared_s3_client
from jobs.state import JobState
from vdr_client import RetryEvent, RetryPolicy, VdrClient

__all__ = ["ClientFactory", "Services", "open_client", "open_destinations", "warm_s3_client"]

log = logging.getLogger("vdr.jobs.export")

ClientFactory = Callable[..., VdrClient]


@dataclass
class Services:
    """What the engine needs from outside; tests and benchmarks pass their own."""

    redis: Redis
    engine: sa.Engine
    config: EngineConfig = field(default_factory=lambda: EngineConfig())
    client_factory: ClientFactory = VdrClient.from_settings
    s3_client_factory: Callable[[int], Any] = shared_s3_client


@contextmanager
def open_client(
    services: Services, spec: ExportSpec, state: JobState, paths: dict[str, str],
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> Iterator[VdrClient]:
    def record(event: RetryEvent) -> None:
        path = item_path(event.path, paths)
        state.record_retry(path, event.reason)
        emit_retry(services.redis, spec.job_id, path, event.reason)

    config = services.config
    connections = config.max_concurrency + config.list_concurrency
    client = services.client_factory(
        on_retry=on_retry or record, max_connections=connections,
        retry=RetryPolicy(attempts=config.source_attempts),
    )
    try:
        yield client
    finally:
        client.close()


@contextmanager
def open_destinations(spec: ExportSpec, services: Services) -> Iterator[list[Destination]]:
    config = services.config
    destinations: list[Destination] = []
    part_threads = _part_threads(config)
    pool = ThreadPoolExecutor(part_threads, thread_name_prefix="vdr-s3-part")
    try:
        if spec.local_root:
            root = Path(spec.local_root) / spec.room_folder
            destinations.append(LocalDestination(root, sync_each_file=config.sync_each_file))
        if spec.s3_url:
            bucket, prefix = parse_s3_url(spec.s3_url)
            connections = s3_connections(config)
            client = services.s3_client_factory(connections)
            destinations.append(S3Destination(
                client, bucket, f"{prefix}/{spec.room_folder}".strip("/"), part_pool=pool,
                part_size=config.part_size, multipart_threshold=config.multipart_threshold,
                parts_in_flight=config.part_uploads_per_file,
                direct=direct_puts_for(client, connections) if config.direct_s3_puts else None,
            ))
        yield destinations
    finally:
        pool.shutdown(wait=True)


def s3_connections(config: EngineConfig) -> int:
    """Connections of the S3 client: every file in flight, and every part upload."""
    return config.max_concurrency + _part_threads(config)


def _part_threads(config: EngineConfig) -> int:
    return config.part_uploads_per_file * 4


def warm_s3_client(services: Services) -> None:
    """Build the S3 client in the background (loading botocore's models takes ~0.1 s of CPU),
    so that it is ready, or nearly, when the export first needs it."""
    connections = s3_connections(services.config)
    threading.Thread(target=_build_quietly, args=(services, connections), daemon=True,
                     name="vdr-s3-warm-up").start()


def _build_quietly(services: Services, connections: int) -> None:
    try:
        services.s3_client_factory(connections)
    except Exception as error:  # the export itself will report what is wrong
        log.debug("S3 client not built ahead: %s", error)


def s3_first(destinations: list[Destination]) -> list[Destination]:
    return sorted(destinations, key=lambda dest: not isinstance(dest, S3Destination))


def item_path(api_path: str, paths: dict[str, str]) -> str:
    """The room path of the file a request was about, else the API path itself."""
    parts = api_path.split("/")
    if len(parts) >= 4 and parts[2] == "files":
        return paths.get(unquote(parts[3]), api_path)
    return api_path


_last_retry_event: dict[str, float] = {}


def emit_retry(redis: Redis, job_id: str, path: str, reason: str) -> None:
    """At most one retry event per job and second from this process; all are counted."""
    now = time.monotonic()
    if now - _last_retry_event.get(job_id, 0.0) < 1.0:
        return
    _last_retry_event[job_id] = now
    emit_event(redis, job_id, "retry", {"path": path, "reason": reason})
