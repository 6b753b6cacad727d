"""Large files in parallel ranges, over HTTP against the proxy (with its cut and drop faults) and
moto's S3 server: byte-identical results, composite checksums, nothing left after a failure or a
cancel, a local-only export, and the memory budget respected."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from jobs import api, defaults
from jobs.errors import Cancelled, VerificationFailed
from jobs.flow import AdaptiveLimit, ByteBudget
from jobs.local_dest import LocalDestination
from jobs.plan import FileTask
from jobs.ranged import RangedMove, plan_parts
from jobs.s3_dest import S3Destination, composite_checksum, direct_puts_for, make_s3_client
from jobs.store import Report
from proxy import FaultConfig, ProxyServer, SyntheticBackend
from tests.fixtures.jobs import JobsEnv, export_services
from tests.fixtures.ranged import LARGE_SIZE, PART_SIZE, OneFileRoom, large_room
from vdr_client import RetryPolicy, VdrClient, VersionChanged

LIMITS = {"part_size": PART_SIZE, "multipart_threshold": PART_SIZE}
"""Engine limits that make the large file a multipart upload of five parts."""


@pytest.fixture
def room(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> OneFileRoom:
    return large_room(make_proxy, synthetic_backend)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def expected_checksum(data: bytes, part_size: int = PART_SIZE) -> str:
    """The composite checksum S3 keeps for `data` uploaded in parts of `part_size`."""
    parts = [data[start:start + part_size] for start in range(0, len(data), part_size)]
    return composite_checksum(
        [base64.b64encode(hashlib.sha256(part).digest()).decode() for part in parts]
    )


def export(room: OneFileRoom, env: JobsEnv, *, s3: bool = True, **config: Any) -> Report:
    services = export_services(room.server.url, env, **{**LIMITS, **config})
    return run(room, env, services, s3=s3)


def run(room: OneFileRoom, env: JobsEnv, services: Any, *, s3: bool = True) -> Report:
    report = api.run_export(
        room_ref="Large", s3_url=f"s3://{env.bucket}/archive" if s3 else None,
        requested_by="U1", redis=env.redis, engine=env.engine, client=VdrClient(room.server.url),
        local_root=str(env.tmp / "exports"), services=services,
    )
    assert report is not None
    return report


def s3_objects(env: JobsEnv) -> dict[str, Any]:
    """Every object of the bucket but manifests, by key, with its stored checksum."""
    client = make_s3_client()
    listed = client.list_objects_v2(Bucket=env.bucket).get("Contents", [])
    return {
        obj["Key"]: client.get_object(Bucket=env.bucket, Key=obj["Key"], ChecksumMode="ENABLED")
        for obj in listed if not obj["Key"].endswith("manifest.jsonl")
    }


def manifest(report: Report) -> list[dict[str, Any]]:
    lines = Path(report.manifest_locations[0]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def open_uploads(bucket: str) -> list[str]:
    answer = make_s3_client().list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def files_under(root: Path) -> list[str]:
    """Every file below `root` (temp files included), but manifests."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if path.is_file() and path.name != "manifest.jsonl")


def within_parts(spans: list[tuple[int, int]], size: int) -> bool:
    """Every span asked lies inside one part, and each part was asked for from its start."""
    parts = plan_parts(size, PART_SIZE)
    firsts = {(part.offset, part.offset + part.length - 1) for part in parts}
    inside = all(
        any(part.offset <= start <= end < part.offset + part.length for part in parts)
        for start, end in spans
    )
    return inside and firsts <= set(spans)


# -- whole exports -------------------------------------------------------------------------


def test_a_large_file_lands_byte_identical_on_disk_and_in_s3_through_cuts_and_drops(
    jobs_env: JobsEnv, room: OneFileRoom
) -> None:
    asked = room.record_ranges()
    room.server.set_faults(FaultConfig(p_cut=0.3, p_drop=0.1, seed=8, retry_after_s=0.05))

    report = export(room, jobs_env)

    assert report.state == "succeeded", report.failures
    local_root = Path(report.destinations[0])
    assert (local_root / room.item.name).read_bytes() == room.data
    assert files_under(local_root) == [room.item.name]  # no temp file left
    ((key, stored),) = s3_objects(jobs_env).items()
    assert key.endswith(f"/{room.item.name}") and stored["Body"].read() == room.data
    checksum = expected_checksum(room.data)
    assert checksum.endswith("-5")
    assert stored["ChecksumSHA256"].split("-")[0] == checksum.split("-")[0]
    (entry,) = manifest(report)
    assert entry["sha256"] == hashlib.sha256(room.data).hexdigest()
    assert entry["s3_checksum"] == checksum and entry["status"] == "exported"
    assert open_uploads(jobs_env.bucket) == []
    assert within_parts(asked.spans, LARGE_SIZE)
    faults = room.server.faults.counts
    assert faults["cut"] + faults["drop"] > 0
    assert f"/{room.item.name}" in {retry["path"] for retry in report.retried}


def test_a_local_only_export_takes_the_large_file_in_ranges(
    jobs_env: JobsEnv, room: OneFileRoom
) -> None:
    asked = room.record_ranges()

    report = export(room, jobs_env, s3=False)

    assert report.state == "succeeded", report.failures
    local_root = Path(report.destinations[0])
    assert files_under(local_root) == [room.item.name]
    assert (local_root / room.item.name).read_bytes() == room.data
    # Local only, the engine's own part size applies, not the S3 limits given above.
    assert sorted(asked.spans) == [
        (start, min(start + defaults.PART_SIZE, LARGE_SIZE) - 1)
        for start in range(0, LARGE_SIZE, defaults.PART_SIZE)
    ]


def test_an_s3_failure_mid_way_leaves_no_object_no_open_upload_and_no_local_file(
    jobs_env: JobsEnv, room: OneFileRoom
) -> None:
    services = export_services(room.server.url, jobs_env, **LIMITS)

    def failing_client(max_connections: int) -> Any:
        client = make_s3_client(max_connections, max_attempts=1)

        def cut_part_three(request: Any, **_: Any) -> None:
            if "partNumber=3" in request.url:
                raise ConnectionClosedError(endpoint_url=request.url)  # after botocore's retries

        client.meta.events.register("before-send.s3.UploadPart", cut_part_three)
        return client

    services.s3_client_factory = failing_client
    report = run(room, jobs_env, services)

    assert report.state == "failed"
    assert [f["path"] for f in report.failures] == [f"/{room.item.name}"]
    assert "S3" in report.failures[0]["reason"] and "part 3" in report.failures[0]["reason"]
    assert s3_objects(jobs_env) == {}
    assert open_uploads(jobs_env.bucket) == []
    assert files_under(Path(report.destinations[0])) == []


# -- one file, moved directly ----------------------------------------------------------------


class PeakBudget(ByteBudget):
    """A ByteBudget that remembers the most bytes it ever had handed out at once."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.peak = 0

    def acquire(self, amount: int, stop: threading.Event | None = None) -> int:
        reserved = super().acquire(amount, stop)
        self.peak = max(self.peak, self.used)
        return reserved


def destinations(
    tmp_path: Path, bucket: str, pool: ThreadPoolExecutor, *, direct: bool = True
) -> list[Any]:
    """A local folder and an S3 prefix; S3 with its direct PUTs, or boto3 for every request."""
    client = make_s3_client()
    s3 = S3Destination(client, bucket, "archive", part_pool=pool,
                       direct=direct_puts_for(client) if direct else None,
                       part_size=PART_SIZE, multipart_threshold=PART_SIZE)
    return [LocalDestination(tmp_path / "out"), s3]


def mover(
    room: OneFileRoom, task: FileTask, dests: list[Any], *, budget: ByteBudget | None = None,
    source_limit: AdaptiveLimit | None = None, stop: threading.Event | None = None,
    on_bytes: Callable[[FileTask, int], None] | None = None, client: VdrClient | None = None,
    **options: Any,
) -> RangedMove:
    return RangedMove(
        client or VdrClient(room.server.url), task, dests, part_size=PART_SIZE,
        hashers={"sha256": hashlib.sha256()}, budget=budget or ByteBudget(1024 * PART_SIZE),
        source_limit=source_limit or AdaptiveLimit(8), stop=stop or threading.Event(),
        on_bytes=on_bytes or (lambda task, written: None),
        on_retry=lambda task, reason: None, **options,
    )


def change_version_from(room: OneFileRoom, offset: int, *, times: int) -> None:
    """The next `times` ranges from `offset` on are served as another version of the file."""
    original = room.backend.open_content
    left = [times]

    def another_version(file_id: str, start: int = 0, end: int | None = None) -> Any:
        content = original(file_id, start, end)
        if end is None or start < offset or left[0] == 0:
            return content
        left[0] -= 1
        return dataclasses.replace(content, etag=content.etag + "-changed")

    room.backend.open_content = another_version  # type: ignore[method-assign]


class PeakLimit(AdaptiveLimit):
    """An AdaptiveLimit that counts its slots taken and the most held at once."""

    def __init__(self, initial: int) -> None:
        super().__init__(initial)
        self.peak = self.taken = 0

    def acquire(self, stop: threading.Event | None = None) -> bool:
        acquired = super().acquire(stop)
        self.taken += acquired
        self.peak = max(self.peak, self.in_flight)
        return acquired


def nothing_left(tmp_path: Path, bucket: str) -> bool:
    return files_under(tmp_path / "out") == [] and open_uploads(bucket) == [] and not (
        make_s3_client().list_objects_v2(Bucket=bucket).get("Contents")
    )


@pytest.mark.parametrize(("capacity_parts", "in_flight", "direct"), [(2, 8, True), (16, 3, False)])
def test_the_parts_in_memory_stay_within_the_budget_and_the_parts_in_flight(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor,
    capacity_parts: int, in_flight: int, direct: bool,
) -> None:
    budget = PeakBudget(capacity_parts * PART_SIZE)
    dests = destinations(tmp_path, s3_env, pool, direct=direct)

    sha256, checksums = mover(room, room.task(), dests, budget=budget,
                              parts_in_flight=in_flight).run()

    assert sha256 == hashlib.sha256(room.data).hexdigest()
    assert checksums == [expected_checksum(room.data), None]  # S3 first, then the local file
    assert (tmp_path / "out" / room.item.name).read_bytes() == room.data
    assert 0 < budget.peak <= min(capacity_parts, in_flight) * PART_SIZE
    assert budget.used == 0


def test_a_cancel_mid_way_aborts_every_destination(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    stop = threading.Event()
    budget = ByteBudget(64 * PART_SIZE)
    room.server.set_faults(FaultConfig(bandwidth=20 * PART_SIZE))  # a few tenths of a second

    def cancel_after_a_part(task: FileTask, written: int) -> None:
        if written > PART_SIZE:
            stop.set()

    move = mover(room, room.task(), destinations(tmp_path, s3_env, pool), budget=budget,
                 stop=stop, on_bytes=cancel_after_a_part)
    with pytest.raises(Cancelled):
        move.run()

    assert nothing_left(tmp_path, s3_env)
    assert budget.used == 0


def test_bytes_that_differ_from_the_sources_hash_are_committed_nowhere(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    task = room.task(hashes={"sha256": hashlib.sha256(b"another file").hexdigest()})

    with pytest.raises(VerificationFailed, match="sha256"):
        mover(room, task, destinations(tmp_path, s3_env, pool)).run()

    assert nothing_left(tmp_path, s3_env)


def test_a_part_whose_download_fails_is_fetched_again_and_the_retry_reported(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    reasons: list[str] = []
    room.server.set_faults(FaultConfig(p_drop=0.4, seed=1))
    impatient = VdrClient(room.server.url, retry=RetryPolicy(attempts=1))  # no client retries
    move = mover(room, room.task(), destinations(tmp_path, s3_env, pool), client=impatient,
                 part_attempts=20)
    move.on_retry = lambda task, reason: reasons.append(reason)

    sha256, _ = move.run()

    assert sha256 == hashlib.sha256(room.data).hexdigest()
    assert (tmp_path / "out" / room.item.name).read_bytes() == room.data
    assert reasons and all(reason.startswith("part ") for reason in reasons)
    assert len(reasons) == room.server.faults.counts["drop"]


def test_parts_of_two_versions_of_the_file_are_committed_nowhere(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    change_version_from(room, 2 * PART_SIZE, times=100)
    task = room.task(hashes={})  # no hash from the source: only the ETags can tell

    with pytest.raises(VersionChanged, match="changed on the source"):
        mover(room, task, destinations(tmp_path, s3_env, pool)).run()

    assert nothing_left(tmp_path, s3_env)


def test_a_file_that_changed_mid_way_is_fetched_again_whole(
    jobs_env: JobsEnv, room: OneFileRoom
) -> None:
    change_version_from(room, 3 * PART_SIZE, times=1)

    report = export(room, jobs_env)

    assert report.state == "succeeded", report.failures
    assert (Path(report.destinations[0]) / room.item.name).read_bytes() == room.data
    (retry,) = report.retried
    assert retry["path"] == f"/{room.item.name}" and "changed on the source" in retry["reason"]


def test_every_part_downloads_in_one_of_the_sources_slots(
    room: OneFileRoom, s3_env: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    limit = PeakLimit(2)

    mover(room, room.task(), destinations(tmp_path, s3_env, pool), source_limit=limit,
          parts_in_flight=4).run()

    assert (tmp_path / "out" / room.item.name).read_bytes() == room.data
    assert limit.taken == len(plan_parts(LARGE_SIZE, PART_SIZE)) and 0 < limit.peak <= 2
    assert limit.in_flight == 0
