"""Exports run in-process against the proxy over HTTP, real Redis, SQLite and moto's S3."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from jobs import api, store
from jobs.progress import read_progress
from jobs.s3_dest import make_s3_client
from jobs.store import Report
from proxy import DirectoryBackend, FaultConfig, ProxyServer, RoomSpec
from tests.fixtures.jobs import JobsEnv, count_content_requests, export_services
from tests.fixtures.proxy import DIRECTORY_ROOM_FILES
from vdr_client import VdrClient

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export(
    server: ProxyServer, env: JobsEnv, room: str, *, s3: bool = True, **config: Any
) -> Report:
    services = export_services(server.url, env, **config)
    report = api.run_export(
        room_ref=room, s3_url=f"s3://{env.bucket}/archive" if s3 else None, requested_by="U1",
        redis=env.redis, engine=env.engine, client=VdrClient(server.url),
        local_root=str(env.tmp / "exports"), services=services,
    )
    assert report is not None
    return report


def local_files(report: Report) -> dict[str, bytes]:
    root = Path(report.destinations[0])
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*") if path.is_file() and path != root / "manifest.jsonl"
    }


def s3_files(env: JobsEnv, report: Report) -> dict[str, bytes]:
    client = make_s3_client()
    prefix = report.destinations[1].removeprefix(f"s3://{env.bucket}/") + "/"
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=env.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"].removeprefix(prefix)
            if key != "manifest.jsonl":
                found[key] = client.get_object(Bucket=env.bucket, Key=obj["Key"])["Body"].read()
    return found


def manifest(report: Report) -> list[dict[str, Any]]:
    path = Path(report.manifest_locations[0])
    return [json.loads(line) for line in path.read_text().splitlines()]


def open_uploads(env: JobsEnv) -> list[str]:
    answer = make_s3_client().list_multipart_uploads(Bucket=env.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def test_a_directory_room_lands_byte_identical_on_disk_and_in_s3(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path
) -> None:
    server = make_proxy(DirectoryBackend(directory_root))
    expected = {
        path.removeprefix("Project Alpha/"): data
        for path, data in DIRECTORY_ROOM_FILES.items() if path.startswith("Project Alpha/")
    }

    report = export(server, jobs_env, "Project Alpha")

    assert report.state == "succeeded", report
    assert local_files(report) == expected
    assert s3_files(jobs_env, report) == expected
    entries = manifest(report)
    assert sorted(e["written_path"] for e in entries) == sorted(expected)
    for entry in entries:
        assert entry["sha256"] == sha(expected[entry["written_path"]])
        assert entry["original_path"] == "/" + entry["written_path"]
        assert entry["status"] == "exported" and entry["job_id"] == report.job_id
    assert (Path(report.destinations[0]) / "3 Empty Folder").is_dir()
    assert not (Path(report.destinations[0]) / ".vdr-partial").exists()
    assert report.manifest_locations[1].startswith(f"s3://{jobs_env.bucket}/archive/")
    assert store.get_report(jobs_env.engine, report.job_id) == report
    assert open_uploads(jobs_env) == []


def test_a_rerun_fetches_only_what_is_missing_or_wrong(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path
) -> None:
    backend = DirectoryBackend(directory_root)
    server = make_proxy(backend)
    first = export(server, jobs_env, "Project Alpha")
    (Path(first.destinations[0]) / "Index.txt").write_bytes(b"tampered")
    prefix = first.destinations[1].removeprefix(f"s3://{jobs_env.bucket}/")
    s3_key = f"{prefix}/2 Financial/Scan.tif"
    make_s3_client().delete_object(Bucket=jobs_env.bucket, Key=s3_key)
    counts = count_content_requests(backend)

    second = export(server, jobs_env, "Project Alpha")

    assert second.state == "succeeded"
    assert (second.files_done, second.files_skipped) == (7, 5)
    assert sum(counts.values()) == 2  # the tampered file and the deleted object, once each
    assert local_files(second) == local_files(first) | {
        "Index.txt": DIRECTORY_ROOM_FILES["Project Alpha/Index.txt"]
    }
    assert s3_files(jobs_env, second) == local_files(second)
    statuses = {e["written_path"]: e["status"] for e in manifest(second)}
    assert statuses["Index.txt"] == statuses["2 Financial/Scan.tif"] == "exported"
    assert list(statuses.values()).count("verified") == 5


def test_hostile_names_stay_inside_the_root_and_prefix_and_never_collide(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend(specs=[], hostile_names=True))
    room = VdrClient(server.url).search_rooms_page(query="Hostile").items[0]

    report = export(server, jobs_env, room.id)

    assert report.state == "succeeded", report.failures
    assert_inside_and_unique(Path(report.destinations[0]), report.files_total)
    keys = s3_files(jobs_env, report)
    assert len(keys) == report.files_total
    assert all(".." not in key.split("/") and "//" not in key for key in keys)
    assert keys == local_files(report)
    for entry in manifest(report):
        assert entry["sha256"] == entry["backend_hashes"]["sha256"]


def test_a_directory_room_with_hostile_names_exports_safely(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], tmp_path: Path
) -> None:
    names = ["CON", "aux.txt", "a:b?.pdf", "trailing. ", "Report.PDF", "report.pdf",
             unicodedata.normalize("NFD", "Café.txt"), unicodedata.normalize("NFC", "Café.txt"),
             "tab\there", "ctrl\x01char", "back\\slash", "é" * 125 + ".pdf", "manifest.jsonl",
             ".vdr-partial", "..."]
    room = tmp_path / "rooms" / "Hostile Directory"
    (room / "sub dir.").mkdir(parents=True)
    for index, name in enumerate(names):
        (room / name).write_bytes(f"file {index}".encode())
        (room / "sub dir." / name).write_bytes(f"nested {index}".encode())
    server = make_proxy(DirectoryBackend(tmp_path / "rooms"))

    report = export(server, jobs_env, "Hostile Directory")

    assert report.state == "succeeded", report.failures
    assert report.files_total == 2 * len(names)
    assert_inside_and_unique(Path(report.destinations[0]), report.files_total)
    assert s3_files(jobs_env, report) == local_files(report)
    contents = sorted(local_files(report).values())
    assert contents == sorted(f"{kind} {i}".encode() for kind in ("file", "nested")
                              for i in range(len(names)))
    originals = {e["original_path"] for e in manifest(report)}
    assert "/sub dir./tab\there" in originals and "/CON" in originals


def assert_inside_and_unique(root: Path, files_total: int) -> None:
    real_root = root.resolve()
    files = [p for p in root.rglob("*") if p.is_file() and p != root / "manifest.jsonl"]
    assert len(files) == files_total
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folded = [unicodedata.normalize("NFC", c.name).casefold() for c in folder.iterdir()]
        assert len(folded) == len(set(folded)), folder
    for path in files:
        assert path.resolve().is_relative_to(real_root)


def test_with_faults_injected_nothing_is_missing_or_wrong_and_retries_are_reported(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    faults = FaultConfig(p429=0.05, p5xx=0.08, p_cut=0.1, p_drop=0.04, seed=3, retry_after_s=0.02)
    room = RoomSpec("faulty", files=100, file_size=20_000, folders=5, depth=2)
    server = make_proxy(synthetic_backend(specs=[room]), faults=faults)

    report = export(server, jobs_env, "faulty", concurrency=8)

    assert report.state == "succeeded", report.failures
    assert report.files_done == report.files_total == 100
    assert report.retries > 0 and report.retried
    reasons = {item["reason"] for item in report.retried}
    assert reasons & {"429", "500", "503"} and reasons & {"cut body", "connection dropped",
                                                            "connection reset"}
    for entry in manifest(report):
        assert entry["sha256"] == entry["backend_hashes"]["sha256"]
    disk = local_files(report)
    assert len(disk) == 100
    assert {sha(data) for data in disk.values()} == {e["sha256"] for e in manifest(report)}
    assert server.faults.counts["cut"] > 0



@pytest.mark.parametrize("source_attempts", [12, 1])
def test_an_export_waits_out_a_source_that_is_gone_for_seconds_as_configured(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path,
    source_attempts: int,
) -> None:
    server = make_proxy(DirectoryBackend(directory_root))
    services = export_services(server.url, jobs_env, source_attempts=source_attempts,
                               file_attempts=1)
    engine_client = services.client_factory
    outage_over = threading.Timer(3.0, server.set_faults, args=(None,))

    def client_meeting_an_outage(**options: Any) -> VdrClient:
        """The engine's clients; from the first one on, every request is dropped for 3 s."""
        if not outage_over.is_alive() and not outage_over.finished.is_set():
            server.set_faults(FaultConfig(p_drop=1.0))
            outage_over.start()
        return engine_client(**options)

    services.client_factory = client_meeting_an_outage

    report = api.run_export(
        room_ref="Project Alpha", s3_url=f"s3://{jobs_env.bucket}/archive", requested_by="U1",
        redis=jobs_env.redis, engine=jobs_env.engine, client=VdrClient(server.url),
        local_root=str(jobs_env.tmp / "exports"), services=services,
    )
    outage_over.cancel()

    assert report is not None
    if source_attempts == 1:  # no retry: the listing meets the outage and the job fails
        assert report.state == "failed" and "connection dropped" in (report.error or ""), report
        return
    assert report.state == "succeeded", report
    assert report.retries > 0, report
    assert len(local_files(report)) == len(s3_files(jobs_env, report)) == report.files_total


def big_room(tmp_path: Path) -> Path:
    room = tmp_path / "rooms" / "Big Room"
    room.mkdir(parents=True)
    (room / "big.bin").write_bytes(os.urandom(12 * MiB + 5))
    (room / "small.txt").write_bytes(b"small")
    return tmp_path / "rooms"


def test_an_s3_failure_mid_upload_leaves_no_partial_object_and_no_open_upload(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], tmp_path: Path
) -> None:
    server = make_proxy(DirectoryBackend(big_room(tmp_path)))
    services = export_services(server.url, jobs_env, part_size=5 * MiB,
                               multipart_threshold=5 * MiB)

    def failing_client(max_connections: int) -> Any:
        client = make_s3_client(max_connections, max_attempts=1)

        def cut_second_part(request: Any, **_: Any) -> None:
            if "partNumber=2" in request.url and "big.bin" in request.url:
                raise ConnectionClosedError(endpoint_url=request.url)  # after botocore's retries

        client.meta.events.register("before-send.s3.UploadPart", cut_second_part)
        return client

    services.s3_client_factory = failing_client
    report = api.run_export(
        room_ref="Big Room", s3_url=f"s3://{jobs_env.bucket}/archive", requested_by="U1",
        redis=jobs_env.redis, engine=jobs_env.engine, client=VdrClient(server.url),
        local_root=str(tmp_path / "exports"), services=services,
    )

    assert report is not None and report.state == "failed"
    assert [f["path"] for f in report.failures] == ["/big.bin"]
    assert "S3" in report.failures[0]["reason"]
    assert report.retried == [{"path": "/big.bin", "reason": report.retried[0]["reason"],
                               "count": 2}]
    assert list(s3_files(jobs_env, report)) == ["small.txt"]
    assert open_uploads(jobs_env) == []
    assert list(local_files(report)) == ["small.txt"]  # all or nothing per file


def test_progress_and_events_tell_the_whole_story(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend())

    report = export(server, jobs_env, "bench-small", s3=False, progress_interval_s=0)

    progress = read_progress(report.job_id, redis=jobs_env.redis)
    assert progress.state == "succeeded"
    assert (progress.files_done, progress.files_total) == (200, 200)
    assert progress.bytes_done == progress.bytes_total == 200 * 4096
    assert progress.eta_s == 0.0
    events = jobs_env.redis.xrange("vdr:events")
    types = [fields[b"type"].decode() for _, fields in events]
    assert types[0] == "started" and types[-1] == "finished" and "progress" in types
    assert all(fields[b"job_id"].decode() == report.job_id for _, fields in events)
    finished = json.loads(events[-1][1][b"data"])
    assert finished["report_id"] == report.id and finished["state"] == "succeeded"


def test_a_cancelled_export_stops_and_reports_cancelled(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., Any],
) -> None:
    server = make_proxy(synthetic_backend(), faults=FaultConfig(latency_ms=40))
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(report=export(
        server, jobs_env, "bench-small", concurrency=2, max_concurrency=2)))
    runner.start()
    job = wait_for(lambda: (api.list_jobs(engine=jobs_env.engine) or [None])[0])
    wait_for(lambda: read_progress(job.id, redis=jobs_env.redis).files_done >= 10)

    api.cancel_job(job.id, actor="U2", redis=jobs_env.redis, engine=jobs_env.engine)
    runner.join(timeout=30)

    report = result["report"]
    assert report.state == "cancelled"
    assert 10 <= report.files_done < 200
    assert len(local_files(report)) == report.files_done
    assert open_uploads(jobs_env) == []
    assert api.get_job(job.id, engine=jobs_env.engine).state == "cancelled"  # type: ignore[union-attr]
    assert [e.action for e in store.list_audit(jobs_env.engine)][:2] == [
        "export.cancel", "export.request"]


def test_a_room_that_cannot_be_resolved_is_refused_before_anything_is_queued(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path
) -> None:
    from vdr_client import AmbiguousRoom, NotFound

    server = make_proxy(DirectoryBackend(directory_root))
    client = VdrClient(server.url)
    for ref, error in (("Project", AmbiguousRoom), ("No Such Room", NotFound)):
        with pytest.raises(error):
            api.enqueue_export(room_ref=ref, requested_by="U1", redis=jobs_env.redis,
                               engine=jobs_env.engine, client=client)
    assert api.list_jobs(engine=jobs_env.engine, active_only=False) == []


def wait_for(probe: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_an_export_reports_into_postgresql_as_well(
    jobs_env: JobsEnv, pg_engine: Any, make_proxy: Callable[..., ProxyServer],
    directory_root: Path,
) -> None:
    server = make_proxy(DirectoryBackend(directory_root))
    on_postgres = dataclasses.replace(jobs_env, engine=pg_engine)

    report = export(server, on_postgres, "Project Beta")

    assert report.state == "succeeded"
    assert store.get_report(pg_engine, report.id) == report
    assert [job.id for job in api.list_jobs(engine=pg_engine, active_only=False)] == [report.job_id]
    assert store.list_audit(pg_engine, target=report.room_id)[0].action == "export.request"


def test_a_large_file_goes_up_in_parts_and_a_rerun_verifies_it_by_checksum_alone(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], tmp_path: Path
) -> None:
    backend = DirectoryBackend(big_room(tmp_path))
    server = make_proxy(backend)
    limits = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB}
    big = (tmp_path / "rooms" / "Big Room" / "big.bin").read_bytes()

    first = export(server, jobs_env, "Big Room", **limits)
    written = next(e for e in manifest(first) if e["written_path"] == "big.bin")
    counts = count_content_requests(backend)
    second = export(server, jobs_env, "Big Room", **limits)
    verified = next(e for e in manifest(second) if e["written_path"] == "big.bin")

    assert first.state == second.state == "succeeded"
    assert s3_files(jobs_env, first)["big.bin"] == big
    assert written["sha256"] == sha(big) and written["s3_checksum"].endswith("-3")
    assert verified["status"] == "verified" and verified["s3_checksum"] == written["s3_checksum"]
    assert sum(counts.values()) == 0 and second.files_skipped == 2
    assert open_uploads(jobs_env) == []


def test_a_destination_that_cannot_be_written_fails_the_job_before_any_download(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path
) -> None:
    backend = DirectoryBackend(directory_root)
    server = make_proxy(backend)
    counts = count_content_requests(backend)
    blocked = jobs_env.tmp / "blocked"
    blocked.write_text("a file where a folder should be")

    no_bucket = api.run_export(
        room_ref="Project Beta", s3_url="s3://no-such-bucket-here/x", requested_by="U1",
        redis=jobs_env.redis, engine=jobs_env.engine, client=VdrClient(server.url),
        local_root=str(jobs_env.tmp / "out"), services=export_services(server.url, jobs_env),
    )
    no_folder = api.run_export(
        room_ref="Project Beta", requested_by="U1", redis=jobs_env.redis, engine=jobs_env.engine,
        client=VdrClient(server.url), local_root=str(blocked),
        services=export_services(server.url, jobs_env),
    )

    assert no_bucket is not None and no_bucket.state == "failed"
    assert "no-such-bucket-here" in (no_bucket.error or "")
    assert no_folder is not None and no_folder.state == "failed"
    assert "cannot write" in (no_folder.error or "")
    assert sum(counts.values()) == 0
    assert api.get_job(no_bucket.job_id, engine=jobs_env.engine).state == "failed"  # type: ignore[union-attr]
