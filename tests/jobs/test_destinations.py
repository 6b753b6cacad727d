"""Local and S3 destinations: atomic finish, verification, and nothing left after a failure."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jobs.destinations import Expected
from jobs.errors import DestinationError, InvalidRequest
from jobs.local_dest import LocalDestination
from jobs.manifest import ManifestEntry, encode_lines
from jobs.s3_dest import S3Destination, direct_puts_for, make_s3_client, parse_s3_url
from tests.fixtures.services import free_port

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def feed(writer: Any, data: bytes, chunk: int = 256 * 1024) -> None:
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])


def entry(path: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(
        item_id=path, version="1", etag="e", original_path="/" + path, written_path=path,
        size=len(data), sha256=sha(data), status="exported",
    )


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


@pytest.fixture(params=["direct", "boto3"])
def s3(request: pytest.FixtureRequest, s3_env: str, pool: ThreadPoolExecutor) -> S3Destination:
    """The S3 destination with its direct PUTs (the default), and with boto3 for everything."""
    client = make_s3_client()
    direct = direct_puts_for(client) if request.param == "direct" else None
    return S3Destination(
        client, s3_env, "archive/room", part_pool=pool, part_size=5 * MiB,
        multipart_threshold=5 * MiB, parts_in_flight=2, direct=direct,
    )


def s3_keys(dest: S3Destination) -> list[str]:
    answer = dest.client.list_objects_v2(Bucket=dest.bucket)
    return sorted(obj["Key"] for obj in answer.get("Contents", []))


def open_uploads(dest: S3Destination) -> list[str]:
    answer = dest.client.list_multipart_uploads(Bucket=dest.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def test_a_local_file_appears_only_when_committed(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "room")
    data = os.urandom(300_000)
    writer = dest.open("Legal/NDA.pdf", len(data))

    feed(writer, data)
    assert not (tmp_path / "room" / "Legal" / "NDA.pdf").exists()
    writer.commit(sha(data))

    assert (tmp_path / "room" / "Legal" / "NDA.pdf").read_bytes() == data
    assert dest.verify("Legal/NDA.pdf", Expected(len(data), sha(data))).intact
    assert not dest.verify("Legal/NDA.pdf", Expected(len(data), sha(b"other"))).intact
    assert not dest.verify("Legal/NDA.pdf", Expected(len(data), None)).intact
    assert not dest.verify("missing.pdf", Expected(1, sha(b"x"))).intact


def test_an_aborted_local_file_leaves_nothing(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "room")
    writer = dest.open("a.bin", 10)
    writer.write(b"12345")

    writer.abort()
    dest.clean_up()

    assert not (tmp_path / "room").exists()  # nor the folder, left empty


def test_a_path_escaping_the_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationError):
        LocalDestination(tmp_path / "room").open("../outside.txt", 1)


def test_local_manifest_round_trips(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "room")
    entries = [entry("b.txt", b"b"), entry("a.txt", b"a")]

    location = dest.write_manifest(encode_lines(entries))

    assert location == str(tmp_path / "room" / "manifest.jsonl")
    assert [e.written_path for e in dest.read_manifest()] == ["a.txt", "b.txt"]


def test_a_small_file_goes_to_s3_in_one_put_with_its_sha256(s3: S3Destination) -> None:
    data = os.urandom(4096)
    writer = s3.open("docs/a.txt", len(data))
    feed(writer, data)

    checksum = writer.commit(sha(data))

    key = "archive/room/docs/a.txt"
    head = s3.client.head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == checksum
    assert s3.verify("docs/a.txt", Expected(len(data), sha(data))).intact
    assert not s3.verify("docs/a.txt", Expected(len(data), sha(b"nope"))).intact


def test_a_large_file_goes_up_in_parts_and_verifies_by_its_composite_checksum(
    s3: S3Destination,
) -> None:
    data = os.urandom(12 * MiB + 123)
    writer = s3.open("big.bin", len(data))
    feed(writer, data)
    assert s3_keys(s3) == []  # nothing visible before the commit

    checksum = writer.commit(sha(data))

    assert checksum is not None and checksum.endswith("-3")
    body = s3.client.get_object(Bucket=s3.bucket, Key="archive/room/big.bin")["Body"].read()
    assert body == data
    assert s3.verify("big.bin", Expected(len(data), sha(data), s3_checksum=checksum)).intact
    assert not s3.verify("big.bin", Expected(len(data), sha(data))).intact  # no record: unknown
    assert open_uploads(s3) == []


def test_an_s3_failure_mid_upload_leaves_no_object_and_no_open_upload(s3: S3Destination) -> None:
    def fail_second_part(request: Any, **_: Any) -> None:
        if re.search(r"[?&]partNumber=2(&|$)", request.url):
            raise ConnectionResetError("injected: S3 went away")

    s3.client.meta.events.register("before-send.s3.UploadPart", fail_second_part)
    data = os.urandom(16 * MiB)
    writer = s3.open("big.bin", len(data))

    with pytest.raises(DestinationError):
        feed(writer, data)
        writer.commit(sha(data))
    writer.abort()

    assert s3_keys(s3) == []
    assert open_uploads(s3) == []


class _Refusal:
    """What a hook hands botocore instead of sending: S3 refusing the request's signature."""

    status_code = 403
    headers: dict[str, str] = {}
    content = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"


def test_an_endpoint_refusing_direct_puts_gets_every_file_through_boto3(
    s3_env: str, pool: ThreadPoolExecutor
) -> None:
    client = make_s3_client()
    direct = direct_puts_for(client)
    s3 = S3Destination(client, s3_env, "archive/room", part_pool=pool, direct=direct)
    refused: list[str] = []

    def refuse_direct(request: Any, **_: Any) -> _Refusal | None:
        if "amz-sdk-invocation-id" in request.headers:
            return None  # boto3's own request: let it through
        refused.append(request.url)
        return _Refusal()

    client.meta.events.register("before-send.s3.PutObject", refuse_direct)
    files = {f"docs/{n}.txt": os.urandom(100 + n) for n in range(3)}
    for path, data in files.items():
        writer = s3.open(path, len(data))
        feed(writer, data)
        writer.commit(sha(data))

    assert len(refused) == 1 and direct is not None and not direct.enabled
    assert s3_keys(s3) == [f"archive/room/{path}" for path in sorted(files)]
    for path, data in files.items():
        assert s3.verify(path, Expected(len(data), sha(data))).intact


def test_direct_puts_quote_keys_as_boto3_does(s3_env: str, pool: ThreadPoolExecutor) -> None:
    client = make_s3_client()
    s3 = S3Destination(client, s3_env, "archive/room", part_pool=pool,
                       direct=direct_puts_for(client))
    path = "Deal [2024]/50% + tax ~ final/naïve #1?.pdf"
    data = b"%PDF-1.7 signed"
    writer = s3.open(path, len(data))
    feed(writer, data)

    writer.commit(sha(data))

    key = f"archive/room/{path}"
    assert s3_keys(s3) == [key]
    assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == data


def test_clean_up_aborts_uploads_a_crashed_worker_left_open(s3: S3Destination) -> None:
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key="archive/room/orphan.bin")
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key="elsewhere/keep.bin")

    s3.clean_up()

    assert open_uploads(s3) == ["elsewhere/keep.bin"]


def test_s3_manifest_round_trips(s3: S3Destination) -> None:
    location = s3.write_manifest(encode_lines([entry("x.txt", b"x")]))

    assert location == f"s3://{s3.bucket}/archive/room/manifest.jsonl"
    assert [e.written_path for e in s3.read_manifest()] == ["x.txt"]


def test_s3_urls_are_parsed_and_checked() -> None:
    assert parse_s3_url("s3://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
    with pytest.raises(InvalidRequest):
        parse_s3_url("https://my-bucket/a")


def test_missing_credentials_are_named_with_what_to_set(
    s3_server: str, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dest = S3Destination(make_s3_client(max_attempts=1), "vault", "room", part_pool=pool)

    with pytest.raises(DestinationError, match="no AWS credentials .* AWS_PROFILE"):
        dest.check()


def test_an_endpoint_nobody_answers_is_called_unreachable(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dest = S3Destination(make_s3_client(max_attempts=1), "vault", "room", part_pool=pool)

    with pytest.raises(DestinationError, match="S3 unreachable .*EndpointConnectionError"):
        dest.check()


def test_a_missing_bucket_is_named_with_what_to_do(
    s3_env: str, pool: ThreadPoolExecutor
) -> None:
    dest = S3Destination(make_s3_client(max_attempts=1), "no-such-bucket-here", "room",
                         part_pool=pool)

    with pytest.raises(DestinationError, match="bucket no-such-bucket-here does not exist: create"):
        dest.check()
