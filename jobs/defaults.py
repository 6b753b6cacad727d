"""Defaults of the export engine and job plumbing, each in one place.

Every tunable here can be overridden from the environment through `jobs.config.EngineConfig`
(`VDR_EXPORT_<NAME>`); the runtime settings row overrides `concurrency` per deployment.
"""

from __future__ import annotations

MiB = 1024 * 1024

CONCURRENCY = 16
"""Files transferred at once by one process when nothing throttles."""

MAX_CONCURRENCY = 64
"""Ceiling the adaptive limit may grow back to."""

MIN_CONCURRENCY = 1
"""Floor the adaptive limit shrinks to under sustained throttling."""

LIST_CONCURRENCY = 8
"""Folder listings run at once while walking a room's tree."""

PART_SIZE = 16 * MiB
"""S3 multipart part size; larger files get larger parts so they stay under 10,000 parts. Half
as many requests as boto3's 8 MiB: each part costs the S3 server a request's overhead, and
costs us one more buffer's worth of hashing hand-offs."""

MULTIPART_THRESHOLD = 16 * MiB
"""Files up to this size go to S3 in one PUT; larger ones as multipart uploads."""

PART_UPLOADS_PER_FILE = 4
"""Parts of one file uploaded at once, when it streams (a source without ranges)."""

RANGED_PARTS_IN_FLIGHT = 4
"""Parts of one large file moved at once (each downloaded as a range, hashed, written, uploaded),
when the source serves ranges; their buffers count against the memory budget. More parts at
once made the S3 server (moto, in the benchmark) spend more CPU per byte, not go faster."""

PART_ATTEMPTS = 3
"""Times one part of a ranged transfer is downloaded (after the client's own retries) before
the whole file counts as failed."""

SYNC_ONE_BY_ONE_FILES = 16
"""A local destination makes at most this many new files durable with an fsync each; more share
one syncfs of the file system, which also writes back other programs' dirty pages."""

MEMORY_BUDGET = 192 * MiB
"""Bytes of S3 buffers one process may hold across all files in flight."""

SHARD_MAX_FILES = 500
"""Files per shard: a room with more is split so several workers can share it."""

SHARD_MAX_BYTES = 4 * 1024 * MiB
"""Bytes per shard (a single larger file is a shard of its own)."""

FILE_ATTEMPTS = 3
"""Times one file is tried from scratch (after the client's own retries) before it is failed."""

SOURCE_ATTEMPTS = 12
"""Attempts at each request to the source in an export, the first included (`vdr rooms` makes
three, a client eight by default): an archive that runs for hours should wait out a VDR or
proxy gone for a few minutes. The backoff doubles from 0.2 s up to 30 s with full jitter, so
twelve attempts wait about 70 s in all, and each file is tried `FILE_ATTEMPTS` times."""

LEASE_S = 30
"""A task's lease: a worker that stops renewing it for this long is considered dead."""

REAP_INTERVAL_S = 10
"""How often `vdr worker` looks for tasks whose lease expired."""

PROGRESS_INTERVAL_S = 2.0
"""At most one progress event per job per this many seconds, whatever the number of shards."""

EVENTS_STREAM = "vdr:events"
"""The Redis stream every job appends its events to."""

EVENTS_MAXLEN = 100_000
"""Approximate length the events stream is trimmed to."""

STATE_TTL_S = 14 * 24 * 3600
"""Redis keys of a job (plan, manifest entries, counters) expire this long after last use."""

PLAN_TIMEOUT_S = 2 * 3600
"""RQ timeout of the planning task (listing a huge room)."""

SHARD_TIMEOUT_S = 24 * 3600
"""RQ timeout of one shard: large rooms over slow links take hours."""

FINALIZE_TIMEOUT_S = 2 * 3600
"""RQ timeout of the finalizer (manifest assembly and upload)."""

TASK_RETRIES = 3
"""RQ retries of a task that crashed (exception or killed work horse)."""

MANIFEST_NAME = "manifest.jsonl"
"""Manifest file name at the top of every destination."""

PARTIAL_DIR = ".vdr-partial"
"""Folder for files still being written; its content never counts as exported."""
