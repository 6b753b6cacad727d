"""Streaming one file's bytes into a caller's `write`, resuming after every cut.

Each attempt starts at the proxy (a pre-signed URL from an earlier attempt may have expired),
asks for `Range: bytes=<next byte>-` once anything has been written, and checks that the answer
continues exactly where the last one stopped:

- 206 must carry a `Content-Range` starting at the byte we asked for;
- 200 to a Range request means the server sent the whole file again. We then skip the prefix we
  already wrote, but only when the answer's strong ETag equals the one we started with, so the
  prefix is known to be the same bytes; otherwise IntegrityError tells the caller to restart the
  file from scratch, which is the only safe move when we cannot tell two versions apart;
- a changed ETag between attempts is an IntegrityError too (`If-Range` asks the server to
  answer 200 in that case, and we refuse to splice two versions).

A download may also be bounded to a span of the file (`length` bytes from `offset`), so that
several parts of one file can be fetched at once. Every attempt then asks for the rest of the
span only, a 206 must announce exactly that rest, and no byte outside the span is ever written:
a 200 (a server that ignored the Range) is read only up to the span's end. The spans of one file
share a `VersionPin`, so that parts of two versions of it are never put together.

Redirects are followed only as `_redirects` allows, and never with the Authorization header.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from vdr_client._errors import (
    ApiError,
    IntegrityError,
    TransportError,
    UnsafeRedirect,
    VersionChanged,
)
from vdr_client._http import failure_from_response, httpx_errors
from vdr_client._redirects import Resolver, check_redirect
from vdr_client._retry import FailedAttempt, Failure, RetryBudget, parse_retry_after

log = logging.getLogger("vdr.client")

MAX_REDIRECTS = 3
"""Redirect hops one content request may take (each checked against the download hosts)."""

NOT_READY_WAIT_S = 1.0
"""Wait after a 202 "not ready" answer that carries no Retry-After."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


class VersionPin:
    """The one version of a file that every span of it must come from.

    Spans fetched at once each see the ETag of their own answer. The first ETag seen pins the
    file; an answer with another one raises VersionChanged. A source that sends no ETag cannot
    be pinned, and the whole file's hash is then the only check left."""

    def __init__(self) -> None:
        self._etag: str | None = None
        self._lock = threading.Lock()

    @property
    def etag(self) -> str | None:
        return self._etag

    def check(self, path: str, etag: str | None) -> None:
        """Pin `etag` if nothing is pinned yet; raise VersionChanged if another one is."""
        if etag is None:
            return
        with self._lock:
            if self._etag is None:
                self._etag = etag
            pinned = self._etag
        if etag != pinned:
            raise VersionChanged(
                f"GET {path}: the file changed on the source while its parts were fetched "
                f"(ETag {pinned}, then {etag})"
            )


@dataclass
class DownloadSession:
    """What a download needs from its client."""

    http: httpx.Client
    auth_headers: dict[str, str]
    download_hosts: Callable[[], list[str]]
    resolve: Resolver
    budget: RetryBudget


@dataclass
class Download:
    """The state of one file's transfer across attempts."""

    session: DownloadSession
    path: str
    write: Callable[[bytes], object]
    expected_size: int | None
    offset: int
    length: int | None = None
    position: int = 0
    total: int | None = None
    etag: str | None = None
    pin: VersionPin | None = None
    _skip: int = field(default=0, repr=False)
    _end: int | None = field(default=None, repr=False)

    def run(self) -> int:
        """Transfer the rest of the file (or of the span); the bytes written by this call."""
        self.position = self.offset
        if self.length == 0:
            return 0
        while not self._complete():
            before = self.position
            try:
                self._attempt()
            except FailedAttempt as failed:
                if self.position > before:
                    self.session.budget.progressed()
                self.session.budget.wait_after(failed.failure)
        self._check_expected_total()
        return self.position - self.offset

    @property
    def _span_end(self) -> int | None:
        """One past the last byte of the span asked for; None for the rest of the file."""
        return None if self.length is None else self.offset + self.length

    def _complete(self) -> bool:
        if self._span_end is not None:
            return self.position >= self._span_end
        return self.total is not None and self.position >= self.total

    def _attempt(self) -> None:
        response = self._open()
        if response is None:
            return
        try:
            self._accept(response)
            self._stream(response)
        finally:
            response.close()

    def _open(self) -> httpx.Response | None:
        """The response whose body continues the file; None when nothing is left to fetch."""
        url: httpx.URL | str = self.path
        headers = {**self.session.auth_headers, **self._range_headers()}
        for _ in range(MAX_REDIRECTS + 1):
            with httpx_errors():
                request = self.session.http.build_request("GET", url, headers=headers)
                response = self.session.http.send(request, stream=True)
            if response.status_code not in _REDIRECTS:
                return self._settle(response)
            url = self._redirect_target(request, response)
            headers = self._range_headers()  # never our Authorization to another host
        raise UnsafeRedirect(f"GET {self.path}: more than {MAX_REDIRECTS} redirects")

    def _range_headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        if self._span_end is not None:
            headers["Range"] = f"bytes={self.position}-{self._span_end - 1}"
        elif self.position > 0:
            headers["Range"] = f"bytes={self.position}-"
        if "Range" in headers and self.etag is not None and not self.etag.startswith("W/"):
            headers["If-Range"] = self.etag
        return headers

    def _redirect_target(self, request: httpx.Request, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise IntegrityError(f"GET {self.path}: redirect without a Location header")
        target = check_redirect(
            request.url, location, self.session.download_hosts(), self.session.resolve
        )
        log.debug("content of %s redirected to %s", self.path, target.host)
        return target

    def _settle(self, response: httpx.Response) -> httpx.Response | None:
        """Pass on a body to stream; turn every other answer into a wait, an end or an error."""
        status = response.status_code
        if status in (200, 206):
            return response
        _read_and_close(response)
        if status == 202:
            raise FailedAttempt(_not_ready(response))
        if status == 416:
            self._accept_unsatisfiable(response)
            return None
        if status >= 400:
            raise FailedAttempt(failure_from_response(response))
        raise IntegrityError(f"GET {self.path}: unexpected {status} answer to a content request")

    def _accept_unsatisfiable(self, response: httpx.Response) -> None:
        """416 is fine only when we already hold the whole file (asked from its very end).

        A span is never asked for once complete, so for a span 416 always means a short file."""
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        if self._span_end is None and match is not None and int(match.group(1)) == self.position:
            self.total = self.position
            return
        raise IntegrityError(
            f"GET {self.path}: server cannot serve from byte {self.position}; the file is "
            "shorter than what was already written"
        )

    def _accept(self, response: httpx.Response) -> None:
        """Check the answer continues the file where we stopped, and note its extent."""
        if response.status_code == 206:
            self._accept_partial(response)
        else:
            self._accept_whole(response)
        self._note_version(response)
        if self.expected_size is not None and self.total not in (None, self.expected_size):
            raise IntegrityError(
                f"GET {self.path}: the file has {self.total} bytes, expected {self.expected_size}"
            )
        if self._span_end is not None and self.total is not None and self.total < self._span_end:
            raise IntegrityError(
                f"GET {self.path}: the file has {self.total} bytes; the span asked for ends "
                f"at byte {self._span_end}"
            )

    def _accept_partial(self, response: httpx.Response) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None:
            raise IntegrityError(f"GET {self.path}: 206 without a valid Content-Range")
        start, end, total = int(match.group(1)), int(match.group(2)), match.group(3)
        if start != self.position or end < start:
            raise IntegrityError(
                f"GET {self.path}: asked for bytes from {self.position}, got {start}-{end}"
            )
        if self._span_end is not None and end != self._span_end - 1:
            raise IntegrityError(
                f"GET {self.path}: asked for bytes {self.position}-{self._span_end - 1}, "
                f"got {start}-{end}"
            )
        self.total = None if total == "*" else int(total)
        self._skip, self._end = 0, end + 1

    def _accept_whole(self, response: httpx.Response) -> None:
        length = response.headers.get("Content-Length")
        self.total = int(length) if length is not None and length.isdigit() else None
        self._end = self.total
        self._skip = self.position
        if self.position > 0 and not self._same_strong_etag(response):
            raise IntegrityError(
                f"GET {self.path}: server sent the whole file again after {self.position} bytes "
                "and cannot show it is the same version; restart the file from the start"
            )

    def _note_version(self, response: httpx.Response) -> None:
        """Remember the version we write; a part of another version must not be spliced in."""
        etag = response.headers.get("ETag")
        if self.position == self.offset or self.etag is None:
            self.etag = etag
        elif etag is not None and etag != self.etag:
            raise IntegrityError(f"GET {self.path}: the file changed during the download")
        if self.pin is not None:
            self.pin.check(self.path, etag)

    def _same_strong_etag(self, response: httpx.Response) -> bool:
        etag = response.headers.get("ETag")
        return etag is not None and not etag.startswith("W/") and etag == self.etag

    def _stream(self, response: httpx.Response) -> None:
        # Raw bytes as they arrive: offsets must count what the server counts, and re-chunking
        # would hold back bytes that a cut then loses. A response built from bytes in memory
        # (an in-process transport) has been read already.
        if response.is_stream_consumed:
            chunks = response.iter_bytes()
        else:
            chunks = response.iter_raw()
        while (chunk := _next_chunk(chunks)) is not None:
            self._write(self._within_span(self._drop_skipped(chunk)))
            if self._overran_span():
                return  # the rest of a 200 is dropped with its connection
        end = self._end if self._span_end is None else self._span_end
        if end is not None and self.position < end:
            raise FailedAttempt(_cut(self.path, self.position, end))
        if self.total is None and self._span_end is None:
            # no length declared: a clean end of the body is the end of the file
            self.total = self.position

    def _drop_skipped(self, chunk: bytes) -> bytes:
        if self._skip <= 0:
            return chunk
        dropped = min(self._skip, len(chunk))
        self._skip -= dropped
        return chunk[dropped:]

    def _overran_span(self) -> bool:
        """The span is in but the body goes on (a 200 to a Range). A 206 is read to its end
        even so, because a body left unread costs the pooled connection."""
        if self._span_end is None or self.position < self._span_end:
            return False
        return self._end is None or self._end > self._span_end

    def _within_span(self, chunk: bytes) -> bytes:
        """The part of `chunk` inside the span: a 200 answer runs on past its end."""
        if self._span_end is None or self.position + len(chunk) <= self._span_end:
            return chunk
        return chunk[: self._span_end - self.position]

    def _write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.expected_size is not None and self.position + len(chunk) > self.expected_size:
            raise IntegrityError(
                f"GET {self.path}: more bytes than the expected {self.expected_size}"
            )
        self.write(chunk)
        self.position += len(chunk)

    def _check_expected_total(self) -> None:
        if self._span_end is not None:
            return  # `_complete` ended at the span's end; the whole file's size is not ours
        if self.expected_size is not None and self.position != self.expected_size:
            raise IntegrityError(
                f"GET {self.path}: got {self.position} bytes, expected {self.expected_size}"
            )


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    with httpx_errors(in_body=True):
        return next(chunks, None)


def _read_and_close(response: httpx.Response) -> None:
    try:
        with httpx_errors(in_body=True):
            response.read()
    finally:
        response.close()


def _not_ready(response: httpx.Response) -> Failure:
    wait = parse_retry_after(response.headers.get("Retry-After"))
    error = ApiError(
        f"GET {response.request.url.path}: content still not ready",
        code="not_ready",
        status_code=202,
    )
    return Failure(
        error,
        "202 not ready",
        retryable=True,
        retry_after_s=NOT_READY_WAIT_S if wait is None else wait,
        counts=False,
    )


def _cut(path: str, position: int, end: int) -> Failure:
    error = TransportError(f"GET {path}: body ended at byte {position}, expected {end}")
    return Failure(error, "cut body", retryable=True)
