"""Export into an S3 prefix: one PUT for small files, multipart for large ones, SHA-256 checked.

S3 itself verifies every body against the SHA-256 we send with it (`ChecksumSHA256`), so an
object that exists was received intact. Large files are cut into parts uploaded while the
download is still running; a file's parts in memory are bounded, and the upload is completed
only after the whole file was verified, or aborted, so no partial object ever appears.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from jobs import defaults
from jobs._s3_direct import DirectPuts, NotSent
from jobs.destinations import Expected, Verdict
from jobs.errors import DestinationError, DestinationRefused, InvalidRequest
from jobs.manifest import ManifestEntry, parse_lines

__all__ = [
    "S3Destination", "direct_puts_for", "make_s3_client", "parse_s3_url", "shared_s3_client"
]

log = logging.getLogger("vdr.jobs.s3")

MAX_PARTS = 10_000
"""S3's limit on the parts of one multipart upload."""

_CHUNK_SLACK = 1024 * 1024
"""A download chunk may overshoot the buffer a little before it is cut into a part."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of `s3://bucket/prefix`."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", url.strip())
    if match is None or not _BUCKET.match(match.group(1)):
        raise InvalidRequest(f"{url!r} is not an S3 location; write s3://bucket/prefix")
    return match.group(1), match.group(2).strip("/")


def make_s3_client(max_connections: int = 64, *, max_attempts: int = 5) -> Any:
    """A boto3 S3 client configured by boto3's own rules (env, profile, AWS_ENDPOINT_URL_S3)."""
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": max_attempts},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    with _sessions_lock:
        session, _ = _sessions_for_env()
        return session.client("s3", config=config)


_S3_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
           "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()  # two threads asking at once wait for one client, not build two
_sessions: dict[tuple[Any, ...], tuple[Any, Any]] = {}  # boto3's session and botocore's under it
_sessions_lock = threading.Lock()  # boto3 sessions are not thread-safe


def shared_s3_client(max_connections: int = 64) -> Any:
    """One S3 client per configuration and process (boto3 clients are thread-safe; building
    one is slow). Keyed by process id too: a forked child never uses its parent's sockets."""
    key = (os.getpid(), max_connections, *(os.environ.get(name) for name in _S3_ENV))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_s3_client(max_connections)
    return client


def warm_up_s3() -> None:
    """Load botocore's S3 models now, so clients built later (in forked children) are cheap."""
    try:
        make_s3_client(1)
    except Exception as error:  # no region or credentials yet: exports will say so
        log.debug("S3 not warmed up: %s", error)


def direct_puts_for(client: Any, max_connections: int = 64) -> DirectPuts | None:
    """Direct PUTs for a client of `make_s3_client` (None without credentials: boto3 will say
    what is missing)."""
    with _sessions_lock:
        session, core = _sessions_for_env()
        credentials = session.get_credentials()
        verify = core.get_config_variable("ca_bundle") or True
    if credentials is None:
        return None
    return DirectPuts(client, credentials, verify=verify, max_connections=max_connections)


def _sessions_for_env() -> tuple[Any, Any]:
    """One boto3 session per configuration (its loader caches the service models), with the
    botocore session under it, which answers configuration questions such as the CA bundle."""
    import boto3
    import botocore.session

    key = tuple(os.environ.get(name) for name in _S3_ENV)
    pair = _sessions.get(key)
    if pair is None:
        core = botocore.session.Session()
        pair = _sessions[key] = (boto3.session.Session(botocore_session=core), core)
    return pair


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def hex_to_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def composite_checksum(part_checksums: list[str]) -> str:
    """The checksum S3 keeps for a multipart object: SHA-256 of the parts' SHA-256s, '-N'."""
    joined = b"".join(base64.b64decode(checksum) for checksum in part_checksums)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(part_checksums)}"


def _without_part_count(checksum: str) -> str:
    return checksum.split("-", 1)[0]


def _bucket_advice(bucket: str, error: DestinationError) -> str | None:
    """What to do when S3 answers a bucket check with 404 or 403 (HEAD answers carry no code)."""
    cause = error.__cause__
    if not isinstance(cause, ClientError):
        return None
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 404:
        return f"S3 bucket {bucket} does not exist: create it, or name another in --s3"
    if status == 403:
        return (f"S3 denied access to bucket {bucket}: check that these credentials may list "
                "and write it")
    return None


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate botocore's errors into DestinationError, naming the operation."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise DestinationError(f"S3 refused to {what}: {code}") from error
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise DestinationError(
            f"no AWS credentials to {what}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, as for any boto3 program"
        ) from error
    except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
            ReadTimeoutError) as error:
        kind = type(error).__name__  # its message may quote URLs: name the kind only
        raise DestinationError(f"S3 unreachable while trying to {what} ({kind})") from error
    except BotoCoreError as error:
        kind = type(error).__name__
        raise DestinationError(f"S3 client could not {what} ({kind})") from error


class S3Destination:
    """One room's key prefix in a bucket."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        part_pool: Executor,
        part_size: int = defaults.PART_SIZE,
        multipart_threshold: int = defaults.MULTIPART_THRESHOLD,
        parts_in_flight: int = defaults.PART_UPLOADS_PER_FILE,
        direct: DirectPuts | None = None,
    ) -> None:
        self.client = client
        self.direct = direct
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}"
        self.part_pool = part_pool
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.parts_in_flight = parts_in_flight

    def key(self, written_path: str) -> str:
        return f"{self.prefix}/{written_path}" if self.prefix else written_path

    def open(self, written_path: str, size: int) -> S3Writer:
        part_size = self._part_size(size)
        threshold = max(self.multipart_threshold, part_size)
        return S3Writer(self, self.key(written_path), part_size=part_size, threshold=threshold)

    def _part_size(self, size: int) -> int:
        """Our part size, or larger so that the file fits in S3's 10,000 parts."""
        return max(self.part_size, -(-size // MAX_PARTS))

    def ranged_part_size(self, size: int) -> int | None:
        """The part size of a file this size sent in numbered parts (`S3Writer.write_part`);
        None when it goes up in one PUT."""
        part_size = self._part_size(size)
        return part_size if size > max(self.multipart_threshold, part_size) else None

    def memory_for(self, size: int) -> int:
        part_size = self._part_size(size)
        if size <= max(self.multipart_threshold, part_size):
            return size + _CHUNK_SLACK
        # parts in flight, one filling, one being cut from it
        return min(size, part_size * (self.parts_in_flight + 2)) + _CHUNK_SLACK

    def verify(self, written_path: str, expected: Expected) -> Verdict:
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=self.key(written_path), ChecksumMode="ENABLED"
            )
        except (ClientError, BotoCoreError):
            return Verdict(False)
        stored = head.get("ChecksumSHA256")
        if head.get("ContentLength") != expected.size or not stored:
            return Verdict(False, stored)
        if expected.sha256 and hex_to_b64(expected.sha256) == stored:
            return Verdict(True, stored)  # a single PUT: S3 holds the file's own SHA-256
        recorded = expected.s3_checksum  # multipart: the hash of the parts' hashes, "-N"
        if recorded and _without_part_count(recorded) == _without_part_count(stored):
            return Verdict(True, recorded)
        return Verdict(False, stored)

    def check(self) -> None:
        with self._bucket_errors(f"reach bucket {self.bucket}"):
            self.client.head_bucket(Bucket=self.bucket)

    @contextmanager
    def _bucket_errors(self, what: str) -> Iterator[None]:
        """`s3_errors` for a call on the whole bucket: a missing or forbidden bucket raises
        DestinationRefused, saying what to do, since no retry changes that."""
        try:
            with s3_errors(what):
                yield
        except DestinationError as error:
            advice = _bucket_advice(self.bucket, error)
            if advice is None:
                raise
            raise DestinationRefused(advice) from error

    def existing_paths(self) -> set[str] | None:
        """Keys under the prefix, from one listing (a thousand per request) instead of one
        HEAD per file: a first export then asks S3 nothing before writing."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        found: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        with s3_errors(f"list {self.url}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found.update(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
        return found

    def read_manifest(self) -> list[ManifestEntry]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(defaults.MANIFEST_NAME))
        except ClientError:
            return []
        except BotoCoreError as error:
            log.warning("earlier manifest in %s unreadable: %s", self.url, error)
            return []
        stream = body["Body"]
        try:
            return list(parse_lines(stream.iter_lines()))
        finally:
            stream.close()

    def write_manifest(self, lines: Iterable[bytes]) -> str:
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=8 * defaults.MiB) as spool:
            for line in lines:
                digest.update(line)
                spool.write(line)
            spool.seek(0)
            key = self.key(defaults.MANIFEST_NAME)
            with s3_errors(f"store {key}"):
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=spool, ContentType="application/x-ndjson",
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
                )
        return f"s3://{self.bucket}/{key}"

    def make_folders(self, written_paths: Iterable[str]) -> None:
        return None

    def sync(self) -> None:
        return None  # S3 acknowledges a PUT or a completed upload only once it is stored

    def clean_up(self) -> None:
        """Abort multipart uploads left open under the prefix by a crashed worker.

        Raises DestinationRefused when the bucket is missing or forbidden (nothing to do)."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._bucket_errors(f"list open uploads under {self.url}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self._abort(upload["Key"], upload["UploadId"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            log.info("aborted multipart upload of %s", key)
        except (ClientError, BotoCoreError) as error:
            log.warning("could not abort multipart upload of %s: %s", key, error)


_T = TypeVar("_T")


class S3Writer:
    """One object being uploaded; visible only after `commit`."""

    def __init__(self, destination: S3Destination, key: str, *, part_size: int, threshold: int):
        self._dest = destination
        self._client = destination.client
        self._key = key
        self._part_size = part_size
        self._threshold = threshold
        self._chunks: deque[bytes] = deque()  # as received: a part is cut by one join
        self._buffered = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(destination.parts_in_flight)
        self._failure: BaseException | None = None
        self._closed = False
        self._numbered: dict[int, dict[str, Any]] = {}  # parts given by number (write_part)

    def write(self, chunk: bytes) -> None:
        self._raise_if_failed()
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._upload_id is None and self._buffered <= self._threshold:
            return
        while self._buffered >= self._part_size:
            self._send_part(self._take(self._part_size))

    def commit(self, sha256_hex: str) -> str | None:
        self._raise_if_failed()
        try:
            if self._upload_id is None:
                return self._put_whole(sha256_hex)
            if self._buffered or not self._parts:
                self._send_part(self._take(self._buffered))
            return self._complete()
        except BaseException:
            self.abort()
            raise
        finally:
            self._closed = True

    def abort(self) -> None:
        if self._closed and self._upload_id is None:
            return
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        for part in self._parts:
            part.cancel()
        for part in self._parts:
            if not part.cancelled():
                part.exception()  # wait: a part landing after the abort would revive the upload
        if self._upload_id is not None:
            self._dest._abort(self._key, self._upload_id)
            self._upload_id = None

    def _put_whole(self, sha256_hex: str) -> str:
        body = self._take(self._buffered)
        sha256_hex = sha256_hex or hashlib.sha256(body).hexdigest()
        checksum = hex_to_b64(sha256_hex)
        bucket = self._dest.bucket
        self._send(
            f"store {self._key}",
            lambda direct: direct.put_object(bucket, self._key, body, sha256_hex, checksum),
            lambda: self._client.put_object(
                Bucket=bucket, Key=self._key, Body=body,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
            ),
        )
        return checksum

    def _send(
        self, what: str, directly: Callable[[DirectPuts], _T], through_boto3: Callable[[], _T]
    ) -> _T:
        """One PUT: sent `directly` when this destination may, else (or when a direct PUT could
        not be sent at all) `through_boto3`, whose errors are told as failing to `what`."""
        if self._dest.direct is not None:
            try:
                return directly(self._dest.direct)
            except NotSent as why:
                log.debug("%s: not sent directly (%s), so through boto3", what, why)
        with s3_errors(what):
            return through_boto3()

    def _complete(self) -> str:
        parts = [part.result() for part in self._parts]
        self._raise_if_failed()
        with s3_errors(f"complete the upload of {self._key}"):
            self._client.complete_multipart_upload(
                Bucket=self._dest.bucket, Key=self._key, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._upload_id = None
        return composite_checksum([part["ChecksumSHA256"] for part in parts])

    def _take(self, size: int) -> bytes:
        """The first `size` buffered bytes, copied once; the rest stays buffered."""
        taken: list[bytes] = []
        needed = size
        while needed and self._chunks:
            first = self._chunks[0]
            if len(first) <= needed:
                taken.append(self._chunks.popleft())
            else:  # the part ends inside this chunk: split it
                taken.append(first[:needed])
                self._chunks[0] = first[needed:]
            needed -= len(taken[-1])
        self._buffered -= size - needed
        return taken[0] if len(taken) == 1 else b"".join(taken)

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            with s3_errors(f"start the upload of {self._key}"):
                answer = self._client.create_multipart_upload(
                    Bucket=self._dest.bucket, Key=self._key, ChecksumAlgorithm="SHA256"
                )
            self._upload_id = answer["UploadId"]
        number = len(self._parts) + 1
        self._slots.acquire()  # back-pressure: the download waits while parts are in flight
        try:
            future = self._dest.part_pool.submit(self._upload_part, number, data)
        except BaseException:
            self._slots.release()
            raise
        self._parts.append(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        try:
            return self._put_part(number, data, hashlib.sha256(data).digest())
        except BaseException as error:
            self._failure = self._failure or error
            raise
        finally:
            self._slots.release()

    def _put_part(self, number: int, data: bytes | bytearray, sha256: bytes) -> dict[str, Any]:
        """Upload part `number` of the started upload; its entry for the completion."""
        checksum = base64.b64encode(sha256).decode()
        bucket, upload_id = self._dest.bucket, self._upload_id
        if upload_id is None:
            raise DestinationError(f"part {number} of {self._key} given before its upload began")
        etag: str = self._send(
            f"upload part {number} of {self._key}",
            lambda direct: direct.upload_part(bucket, self._key, upload_id, number, data,
                                              sha256.hex(), checksum),
            lambda: self._client.upload_part(
                Bucket=bucket, Key=self._key, UploadId=upload_id, PartNumber=number,
                Body=data, ChecksumSHA256=checksum,
            )["ETag"],
        )
        return {"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum}

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise DestinationError(str(self._failure)) from self._failure

    # -- numbered parts: the caller cuts the file, hashes each part, and may send them at once

    def begin_parts(self) -> None:
        """Start the multipart upload that `write_part` fills and `commit_parts` completes."""
        with s3_errors(f"start the upload of {self._key}"):
            answer = self._client.create_multipart_upload(
                Bucket=self._dest.bucket, Key=self._key, ChecksumAlgorithm="SHA256"
            )
        self._upload_id = answer["UploadId"]

    def write_part(self, number: int, data: bytes | bytearray, sha256: bytes) -> None:
        """Upload part `number` (1-based), whose SHA-256 the caller computed; the digest signs
        the request and is S3's checksum of the part, so the bytes are not hashed again here.
        Safe from several threads at once; sending a number again replaces that part."""
        self._numbered[number] = self._put_part(number, data, sha256)

    def commit_parts(self, sha256_hex: str) -> str | None:
        """Complete the upload from the numbered parts; the object's composite checksum."""
        parts = [self._numbered[number] for number in sorted(self._numbered)]
        try:
            if [part["PartNumber"] for part in parts] != list(range(1, len(parts) + 1)):
                raise DestinationError(f"parts of {self._key} missing; not completing it")
            with s3_errors(f"complete the upload of {self._key}"):
                self._client.complete_multipart_upload(
                    Bucket=self._dest.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self.abort()
            raise
        self._upload_id = None
        self._closed = True
        return composite_checksum([part["ChecksumSHA256"] for part in parts])
