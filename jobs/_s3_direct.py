"""S3 PUTs (whole objects and multipart parts) signed by botocore and sent without its client.

A boto3 `put_object` of a 4 KiB body costs about 1.2 ms of CPU, half of it in work that is the
same for every file of an export: parameter validation, serialisation, endpoint rules, event
plumbing, response parsing, and hashing the body again to sign it. `DirectPuts` sends the same
request for half that: the bucket's URL is resolved once by the boto3 client itself (so
addressing style, region and custom endpoints follow boto3's rules), botocore's SigV4 signer
signs it with the SHA-256 the export computed anyway, and botocore's own HTTP session sends it.
The client's `before-send` hooks see every request, as they would under boto3.

Nothing here retries. A request this path cannot complete raises `NotSent`; the caller repeats
it through boto3, whose retries and error handling then apply. An answer that says this path
does not suit the endpoint (a redirect to another region, a refused signature or header) turns
the path off for good, so such an endpoint costs one extra request, not one per file.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from botocore.httpsession import URLLib3Session

__all__ = ["DirectPuts", "NotSent"]

log = logging.getLogger("vdr.jobs.s3")

_UNSUITED = frozenset({301, 302, 307, 400, 403, 405, 411, 501})
"""Statuses that mean the request itself does not suit this endpoint (wrong region, a refused
signature or header, a feature not implemented): boto3 knows how to deal with those."""

_PROBE_KEY = "vdr-probe"
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


class NotSent(Exception):
    """The direct request did not store the object or part; send it through boto3 instead."""


class _KnownPayloadAuth(S3SigV4Auth):
    """SigV4 for S3 with the payload's SHA-256 given, instead of hashing the body once more."""

    def payload(self, request: AWSRequest) -> str:
        known: str = request.context["payload_sha256"]
        return known


class DirectPuts:
    """Direct PUTs into the buckets of one boto3 S3 client; safe to use from many threads."""

    def __init__(
        self, client: Any, credentials: Any, *, verify: bool | str, max_connections: int
    ) -> None:
        config = client.meta.config
        self._client = client
        self._credentials = credentials
        self._region = client.meta.region_name or "us-east-1"
        self._http = URLLib3Session(
            verify=verify,
            proxies=config.proxies,
            proxies_config=config.proxies_config,
            timeout=(config.connect_timeout, config.read_timeout),
            max_pool_connections=max_connections,
        )
        self._bases: dict[str, str] = {}
        self._lock = threading.Lock()
        self.enabled = True

    def put_object(self, bucket: str, key: str, body: bytes | bytearray, sha256_hex: str,
                   sha256_b64: str) -> None:
        """Store `body` as `key`, S3 checking it against its SHA-256."""
        self._put("PutObject", self._url(bucket, key), body, sha256_hex, sha256_b64)

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int,
                    body: bytes | bytearray, sha256_hex: str, sha256_b64: str) -> str:
        """Upload part `number` of a multipart upload; its ETag."""
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
        url = f"{self._url(bucket, key)}?{query}"
        return self._put("UploadPart", url, body, sha256_hex, sha256_b64)

    def _put(self, operation: str, url: str, body: bytes | bytearray, sha256_hex: str,
             sha256_b64: str) -> str:
        if not self.enabled:
            raise NotSent("direct PUTs are off for this endpoint")
        try:
            response = self._send(operation, self._signed(url, body, sha256_hex, sha256_b64))
        except (BotoCoreError, OSError) as error:  # includes what a before-send hook raised
            raise NotSent(type(error).__name__) from error
        if response.status_code == 200 and "ETag" in response.headers:
            return str(response.headers["ETag"])
        self._judge(response.status_code, response.content)
        raise NotSent(f"HTTP {response.status_code}")

    def _signed(self, url: str, body: bytes | bytearray, sha256_hex: str, sha256_b64: str) -> Any:
        headers = {
            "Content-Length": str(len(body)),
            "x-amz-sdk-checksum-algorithm": "SHA256",  # what boto3 sends: S3 keeps the checksum
            "x-amz-checksum-sha256": sha256_b64,
        }
        request = AWSRequest("PUT", url, data=body, headers=headers)
        request.context["payload_sha256"] = sha256_hex
        credentials = self._credentials.get_frozen_credentials()  # refreshed when they expire
        _KnownPayloadAuth(credentials, "s3", self._region).add_auth(request)
        return request.prepare()

    def _send(self, operation: str, request: Any) -> Any:
        """Through the client's `before-send` hooks (a hook may answer instead), then HTTP."""
        answers = self._client.meta.events.emit(f"before-send.s3.{operation}", request=request)
        for _, answer in answers:
            if answer is not None:
                return answer
        return self._http.send(request)

    def _judge(self, status: int, body: bytes) -> None:
        if status not in _UNSUITED or not self.enabled:
            return
        self.enabled = False
        code = _ERROR_CODE.search(body or b"")
        reason = code.group(1).decode("ascii", "replace") if code else f"HTTP {status}"
        log.info("S3 answered %s to a direct PUT; boto3 sends the rest", reason)

    def _url(self, bucket: str, key: str) -> str:
        return self._base(bucket) + quote(key, safe="/~")

    def _base(self, bucket: str) -> str:
        """The bucket's URL up to the key, as boto3 resolves it (a presigned URL, unsent)."""
        base = self._bases.get(bucket)
        if base is None:
            with self._lock:
                try:
                    presigned = self._client.generate_presigned_url(
                        "put_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
                    )
                except BotoCoreError as error:
                    raise NotSent(type(error).__name__) from error
            scheme, host, path, _, _ = urlsplit(presigned)
            if not path.endswith("/" + _PROBE_KEY):
                raise NotSent("cannot tell where keys go in this endpoint's URLs")
            prefix = path[: -len(_PROBE_KEY)]
            base = self._bases.setdefault(bucket, urlunsplit((scheme, host, prefix, "", "")))
        return base

    def close(self) -> None:
        self._http.close()
