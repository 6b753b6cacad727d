"""Downloads: Range resume after cuts, what counts as a valid continuation, spans of a file
(against fakes and against the real proxy with its cut and drop faults), 202 waits, and the
rules a content redirect must pass."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from proxy import FaultConfig, ProxyServer, SyntheticBackend
from tests.client._fakes import (
    CAPABILITIES,
    BrokenStream,
    FakeTime,
    PiecedStream,
    make_client,
)
from tests.fixtures.ranged import OneFileRoom, one_file_room
from vdr_client import (
    IntegrityError,
    NotFound,
    RetryEvent,
    RetryPolicy,
    UnsafeRedirect,
    VdrClient,
    VersionChanged,
    VersionPin,
)

DATA = os.urandom(300_000)
ETAG = '"v1"'


def serve(
    data: bytes,
    request: httpx.Request,
    *,
    cut_at: int | None = None,
    etag: str | None = ETAG,
    ignore_range: bool = False,
) -> httpx.Response:
    """Answer a content request as a Range-aware server does, optionally cut at byte `cut_at`."""
    headers = {"ETag": etag} if etag else {}
    start = 0
    status = 200
    wanted = request.headers.get("Range")
    end = len(data)
    if wanted and not ignore_range:
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = int(first), min(len(data), int(last) + 1 if last else len(data))
        if start >= len(data):
            return httpx.Response(416, headers={"Content-Range": f"bytes */{len(data)}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    body = data[start:end]
    headers["Content-Length"] = str(len(body))
    if cut_at is not None and start < cut_at < end:
        return httpx.Response(status, headers=headers, stream=BrokenStream(data[start:cut_at]))
    return httpx.Response(status, headers=headers, stream=PiecedStream(body))


class Recorder:
    """A `write` that records each chunk's size and the bytes, as a destination would."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.chunks: list[int] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append(len(chunk))
        self.buffer.extend(chunk)


def content_api(
    answer: Callable[[int, httpx.Request], httpx.Response],
) -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    """Capabilities, plus `answer(n, request)` for the n-th request (0-based) of anything else."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json=CAPABILITIES)
        seen.append(request)
        return answer(len(seen) - 1, request)

    return seen, handler


def test_a_clean_download_streams_chunk_by_chunk() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))
    out = Recorder()

    written = make_client(handler).download("f1", out, expected_size=len(DATA))

    assert written == len(DATA)
    assert bytes(out.buffer) == DATA
    assert len(out.chunks) > 1 and max(out.chunks) <= 256 * 1024
    assert "Range" not in seen[0].headers
    assert seen[0].headers["Accept-Encoding"] == "identity"


def test_cuts_resume_with_range_from_the_last_byte_written() -> None:
    cuts = [70_000, 150_001, 299_999]
    events: list[RetryEvent] = []

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return serve(DATA, request, cut_at=cuts[n] if n < len(cuts) else None)

    seen, handler = content_api(answer)
    out = Recorder()
    client = make_client(handler, time=FakeTime(), on_retry=events.append)

    written = client.download("f1", out, expected_size=len(DATA))

    assert written == len(DATA)
    assert hashlib.sha256(out.buffer).digest() == hashlib.sha256(DATA).digest()
    assert [request.headers.get("Range") for request in seen] == [
        None, "bytes=70000-", "bytes=150001-", "bytes=299999-"
    ]
    assert [request.headers.get("If-Range") for request in seen[1:]] == [ETAG] * 3
    assert [event.reason for event in events] == ["cut body"] * 3


def test_progress_restarts_the_attempt_count() -> None:
    # Ten cuts in a row, each after some progress, with a budget of only three attempts.
    cuts = list(range(10_000, 110_000, 10_000))

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return serve(DATA, request, cut_at=cuts[n] if n < len(cuts) else None)

    _, handler = content_api(answer)
    out = Recorder()
    client = make_client(handler, time=FakeTime(), policy=RetryPolicy(attempts=3))

    assert client.download("f1", out) == len(DATA)
    assert bytes(out.buffer) == DATA


def test_cuts_without_progress_use_up_the_attempts() -> None:
    from vdr_client import TransportError

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        start = 1 if n else 0
        headers = {"ETag": ETAG, "Content-Length": str(len(DATA) - start)}
        if n:
            headers["Content-Range"] = f"bytes 1-{len(DATA) - 1}/{len(DATA)}"
        return httpx.Response(206 if n else 200, headers=headers,
                              stream=BrokenStream(DATA[:1] if n == 0 else b""))

    seen, handler = content_api(answer)
    client = make_client(handler, time=FakeTime(), policy=RetryPolicy(attempts=3))
    out = Recorder()

    with pytest.raises(TransportError):
        client.download("f1", out)

    # the first attempt wrote one byte and failed: it opens a new streak of three attempts
    assert len(seen) == 3
    assert bytes(out.buffer) == DATA[:1]


def test_download_from_an_offset_continues_a_partial_file() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))
    out = Recorder()

    written = make_client(handler).download("f1", out, expected_size=len(DATA), offset=123_456)

    assert written == len(DATA) - 123_456
    assert bytes(out.buffer) == DATA[123_456:]
    assert seen[0].headers["Range"] == "bytes=123456-"
    assert "If-Range" not in seen[0].headers


def test_a_206_starting_elsewhere_is_refused() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if n == 0:
            return serve(DATA, request, cut_at=1000)
        headers = {"ETag": ETAG, "Content-Range": f"bytes 999-{len(DATA) - 1}/{len(DATA)}"}
        return httpx.Response(206, headers=headers, content=DATA[999:])

    _, handler = content_api(answer)

    with pytest.raises(IntegrityError, match="asked for bytes from 1000, got 999"):
        make_client(handler, time=FakeTime()).download("f1", Recorder())


def test_a_206_without_content_range_is_refused() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if n == 0:
            return serve(DATA, request, cut_at=1000)
        return httpx.Response(206, headers={"ETag": ETAG}, content=DATA[1000:])

    _, handler = content_api(answer)

    with pytest.raises(IntegrityError, match="Content-Range"):
        make_client(handler, time=FakeTime()).download("f1", Recorder())


def test_a_200_to_a_range_request_with_the_same_etag_skips_the_written_prefix() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return serve(DATA, request, cut_at=100_000 if n == 0 else None, ignore_range=n > 0)

    seen, handler = content_api(answer)
    out = Recorder()

    written = make_client(handler, time=FakeTime()).download("f1", out, expected_size=len(DATA))

    assert seen[1].headers["Range"] == "bytes=100000-"
    assert written == len(DATA)
    assert bytes(out.buffer) == DATA


def test_a_200_to_a_range_request_with_another_etag_is_an_integrity_error() -> None:
    changed = os.urandom(len(DATA))

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if n == 0:
            return serve(DATA, request, cut_at=100_000)
        # If-Range no longer matches, so the server sends the whole new version: 200
        return serve(changed, request, etag='"v2"', ignore_range=True)

    _, handler = content_api(answer)
    out = Recorder()

    with pytest.raises(IntegrityError, match="restart the file"):
        make_client(handler, time=FakeTime()).download("f1", out)

    assert bytes(out.buffer) == DATA[:100_000]  # nothing of the new version was spliced in


def test_a_200_to_a_range_request_without_any_etag_is_an_integrity_error() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return serve(DATA, request, cut_at=5000 if n == 0 else None, etag=None, ignore_range=True)

    _, handler = content_api(answer)

    with pytest.raises(IntegrityError):
        make_client(handler, time=FakeTime()).download("f1", Recorder())


def test_a_200_to_a_caller_offset_is_an_integrity_error() -> None:
    _, handler = content_api(lambda n, request: serve(DATA, request, ignore_range=True))

    with pytest.raises(IntegrityError):
        make_client(handler).download("f1", Recorder(), offset=10)


def test_a_206_of_another_version_is_not_spliced_in() -> None:
    changed = os.urandom(len(DATA))

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if n == 0:
            return serve(DATA, request, cut_at=100_000)
        return serve(changed, request, etag='"v2"')  # a server that ignores If-Range

    _, handler = content_api(answer)
    answer_ignoring_if_range = handler

    with pytest.raises(IntegrityError, match="changed"):
        make_client(answer_ignoring_if_range, time=FakeTime()).download("f1", Recorder())


def test_the_size_announced_must_match_the_expected_size() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))
    out = Recorder()

    with pytest.raises(IntegrityError, match=f"expected {len(DATA) + 1}"):
        make_client(handler).download("f1", out, expected_size=len(DATA) + 1)

    assert out.buffer == b""  # refused before a byte was written


def test_more_bytes_than_expected_are_refused_before_writing_them() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=PiecedStream(DATA, piece=1000))  # no length declared

    _, handler = content_api(answer)
    out = Recorder()

    with pytest.raises(IntegrityError, match="more bytes"):
        make_client(handler).download("f1", out, expected_size=5000)

    assert len(out.buffer) <= 5000


def test_an_empty_file() -> None:
    _, handler = content_api(lambda n, request: serve(b"", request))
    out = Recorder()

    assert make_client(handler).download("f1", out, expected_size=0) == 0
    assert out.chunks == []


def test_416_at_the_very_end_means_the_file_was_already_complete() -> None:
    _, handler = content_api(lambda n, request: serve(DATA, request))

    assert make_client(handler).download("f1", Recorder(), offset=len(DATA)) == 0


def test_416_before_the_end_is_an_integrity_error() -> None:
    _, handler = content_api(
        lambda n, request: httpx.Response(416, headers={"Content-Range": "bytes */10"})
    )

    with pytest.raises(IntegrityError, match="shorter"):
        make_client(handler).download("f1", Recorder(), offset=50)


def test_202_waits_as_told_and_does_not_use_up_attempts() -> None:
    time = FakeTime()

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if n < 6:
            return httpx.Response(202, headers={"Retry-After": "2"})
        return serve(DATA, request)

    _, handler = content_api(answer)
    out = Recorder()
    client = make_client(handler, time=time, policy=RetryPolicy(attempts=2, deadline_s=60))

    assert client.download("f1", out) == len(DATA)
    assert time.sleeps == [2.0] * 6


def test_errors_from_the_proxy_keep_their_type() -> None:
    _, handler = content_api(
        lambda n, request: httpx.Response(404, json={"error": {"code": "not_found",
                                                               "message": "no such file"}})
    )

    with pytest.raises(NotFound, match="no such file"):
        make_client(handler).download("f1", Recorder())


def test_a_failing_write_is_not_retried() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))

    def full_disk(chunk: bytes) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        make_client(handler).download("f1", full_disk)

    assert len(seen) == 1


# -- spans (parts of a file downloaded at once) --------------------------------------------


def test_a_span_asks_for_exactly_its_bytes_and_resumes_inside_them() -> None:
    cuts = [110_000, 150_000]

    def answer(n: int, request: httpx.Request) -> httpx.Response:
        return serve(DATA, request, cut_at=cuts[n] if n < len(cuts) else None)

    seen, handler = content_api(answer)
    out = Recorder()
    client = make_client(handler, time=FakeTime())

    written = client.download("f1", out, expected_size=len(DATA), offset=100_000, length=80_000)

    assert written == 80_000
    assert bytes(out.buffer) == DATA[100_000:180_000]
    assert [request.headers["Range"] for request in seen] == [
        "bytes=100000-179999", "bytes=110000-179999", "bytes=150000-179999"
    ]
    assert [request.headers.get("If-Range") for request in seen] == [None, ETAG, ETAG]


def test_a_206_reaching_past_the_span_is_refused_before_writing() -> None:
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        # a server that honours where a range starts but not where it ends
        start = request.headers["Range"].removeprefix("bytes=").split("-")[0]
        return serve(DATA, httpx.Request("GET", request.url, headers={"Range": f"bytes={start}-"}))

    _, handler = content_api(answer)
    out = Recorder()

    with pytest.raises(IntegrityError, match="asked for bytes 1000-1999, got 1000-299999"):
        make_client(handler).download("f1", out, offset=1000, length=1000)

    assert out.buffer == b""


def test_a_200_to_a_span_from_the_start_is_read_up_to_the_span_only() -> None:
    _, handler = content_api(lambda n, request: serve(DATA, request, ignore_range=True))
    out = Recorder()

    written = make_client(handler).download("f1", out, expected_size=len(DATA), length=5000)

    assert written == 5000
    assert bytes(out.buffer) == DATA[:5000]


def test_a_200_to_a_span_further_in_is_an_integrity_error() -> None:
    _, handler = content_api(lambda n, request: serve(DATA, request, ignore_range=True))
    out = Recorder()

    with pytest.raises(IntegrityError):
        make_client(handler).download("f1", out, offset=5000, length=5000)

    assert out.buffer == b""


def test_an_empty_span_asks_nothing() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))

    assert make_client(handler).download("f1", Recorder(), offset=10, length=0) == 0
    assert seen == []


@pytest.mark.parametrize(("offset", "length"), [(0, len(DATA) + 1), (len(DATA), 1), (5, -1)])
def test_a_span_outside_the_expected_size_is_refused_at_once(offset: int, length: int) -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))

    with pytest.raises(ValueError):
        make_client(handler).download(
            "f1", Recorder(), expected_size=len(DATA), offset=offset, length=length
        )

    assert seen == []



def fetch_spans(handler: Callable[[httpx.Request], httpx.Response], pin: VersionPin) -> bytes:
    """DATA fetched as two spans of one file sharing `pin`, the second first."""
    client, half = make_client(handler), len(DATA) // 2
    second, first = Recorder(), Recorder()
    client.download("f1", second, offset=half, length=len(DATA) - half, pin=pin)
    client.download("f1", first, offset=0, length=half, pin=pin)
    return bytes(first.buffer + second.buffer)


def test_spans_sharing_a_pin_come_from_one_version() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request))
    pin = VersionPin()

    assert fetch_spans(handler, pin) == DATA
    assert pin.etag == ETAG and len(seen) == 2


def test_a_span_of_another_version_is_refused_for_good() -> None:
    seen, handler = content_api(
        lambda n, request: serve(DATA, request, etag=ETAG if n == 0 else '"v2"')
    )

    with pytest.raises(VersionChanged, match='ETag "v1", then "v2"'):
        fetch_spans(handler, VersionPin())

    assert len(seen) == 2  # not retried: another try would meet the same version


def test_spans_without_etags_pass_the_pin() -> None:
    seen, handler = content_api(lambda n, request: serve(DATA, request, etag=None))
    pin = VersionPin()

    assert fetch_spans(handler, pin) == DATA
    assert pin.etag is None


# -- spans against the real proxy ----------------------------------------------------------

BIG = 3 * 1024 * 1024 + 12_345


@pytest.fixture
def big_file(
    make_proxy: Callable[..., ProxyServer], synthetic_backend: Callable[..., SyntheticBackend]
) -> OneFileRoom:
    """A proxy serving one room of one file of a few MiB, that file's item and its bytes."""
    return one_file_room(make_proxy, synthetic_backend, "Big", BIG)


SPANS = [(0, 1024 * 1024), (1024 * 1024 + 17, 1024 * 1024), (BIG - 1000, 1000), (0, BIG)]


@pytest.mark.parametrize(("offset", "length"), SPANS)
def test_a_span_from_the_proxy_arrives_exactly_through_cuts_and_drops(
    big_file: OneFileRoom, offset: int, length: int
) -> None:
    server, item, whole = big_file.server, big_file.item, big_file.data
    asked = big_file.record_ranges().spans
    reasons: list[str] = []
    policy = RetryPolicy(attempts=20, base_delay_s=0.01, max_delay_s=0.05, deadline_s=60)
    server.set_faults(FaultConfig(p_cut=0.5, p_drop=0.2, seed=8))  # cut, drop, cut, ...
    out = Recorder()

    with VdrClient(server.url, retry=policy, on_retry=lambda e: reasons.append(e.reason)) as c:
        written = c.download(item.id, out, expected_size=item.size, offset=offset, length=length)

    assert written == length
    assert bytes(out.buffer) == whole[offset:offset + length]
    assert asked and all(offset <= start <= end < offset + length for start, end in asked)
    assert set(reasons) <= {"cut body", "connection dropped"}
    assert len(reasons) == server.faults.counts["cut"] + server.faults.counts["drop"] > 0


def test_parts_from_the_proxy_at_once_make_up_the_file(
    big_file: OneFileRoom,
) -> None:
    server, item, whole = big_file.server, big_file.item, big_file.data
    part = 512 * 1024
    server.set_faults(FaultConfig(p_cut=0.3, p_drop=0.1, seed=9))
    policy = RetryPolicy(attempts=20, base_delay_s=0.01, max_delay_s=0.05, deadline_s=60)

    def fetch(client: VdrClient, offset: int) -> bytes:
        out = bytearray()
        length = min(part, item.size - offset)
        client.download(item.id, out.extend, expected_size=item.size, offset=offset,
                        length=length)
        return bytes(out)

    with VdrClient(server.url, retry=policy) as client, ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda offset: fetch(client, offset), range(0, item.size, part)))

    assert b"".join(parts) == whole
    assert hashlib.sha256(whole).hexdigest() == item.hashes["sha256"]
    assert server.faults.counts["cut"] + server.faults.counts["drop"] > 0


def test_a_span_past_the_end_of_the_proxys_file_is_an_integrity_error(
    big_file: OneFileRoom,
) -> None:
    server, item = big_file.server, big_file.item
    out = Recorder()

    with VdrClient(server.url) as client, pytest.raises(IntegrityError, match="got"):
        client.download(item.id, out, offset=item.size - 10, length=20)  # size not given

    assert out.buffer == b""


# -- redirects -----------------------------------------------------------------------------


def redirecting(location: str, target: Callable[[httpx.Request], httpx.Response] | None = None):
    """The proxy answers 302 to `location`; requests to other hosts go to `target`."""
    def answer(n: int, request: httpx.Request) -> httpx.Response:
        if request.url.host == "proxy.test":
            return httpx.Response(302, headers={"Location": location})
        assert target is not None, f"the client went to {request.url}"
        return target(request)

    return content_api(answer)


def test_redirect_to_a_declared_host_is_followed_without_authorization() -> None:
    seen, handler = redirecting(
        "https://dl.example.test/bucket/f1?X-Amz-Signature=abc", lambda r: serve(DATA, r)
    )
    out = Recorder()

    assert make_client(handler).download("f1", out) == len(DATA)
    assert bytes(out.buffer) == DATA
    assert seen[0].headers["Authorization"] == "Bearer s3cr3t-token"
    assert seen[1].url.host == "dl.example.test"
    assert "Authorization" not in seen[1].headers
    assert seen[1].url.params["X-Amz-Signature"] == "abc"


def test_resume_after_a_cut_at_the_storage_host_goes_back_to_the_proxy() -> None:
    storage_hits: list[httpx.Request] = []

    def storage(request: httpx.Request) -> httpx.Response:
        storage_hits.append(request)
        return serve(DATA, request, cut_at=50_000 if len(storage_hits) == 1 else None)

    seen, handler = redirecting("http://files.example.test:9000/obj", storage)
    out = Recorder()

    assert make_client(handler, time=FakeTime()).download("f1", out) == len(DATA)
    assert [request.url.host for request in seen] == [
        "proxy.test", "files.example.test", "proxy.test", "files.example.test"
    ]
    assert storage_hits[1].headers["Range"] == "bytes=50000-"
    assert "Authorization" not in storage_hits[1].headers
    assert bytes(out.buffer) == DATA


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example.test/steal",  # not declared
        "https://files.example.test/obj",  # declared, but only on port 9000
        "https://dl.example.test.evil.test/x",  # suffix trick
        "http://169.254.169.254/latest/meta-data/iam/",  # metadata address
        "http://[fe80::1]/x",  # link-local IPv6
        "http://[::ffff:169.254.169.254]/x",  # metadata behind an IPv4-mapped address
        "http://metadata.google.internal/computeMetadata/v1/",
        "file:///etc/passwd",
        "ftp://dl.example.test/x",
    ],
)
def test_unsafe_redirects_are_refused(location: str) -> None:
    seen, handler = redirecting(location)

    with pytest.raises(UnsafeRedirect):
        make_client(handler).download("f1", Recorder())

    assert [request.url.host for request in seen] == ["proxy.test"]


def test_a_declared_metadata_address_is_still_refused() -> None:
    seen, handler = redirecting("http://169.254.169.254/latest/meta-data/")
    declared = {**CAPABILITIES, "download_hosts": ["169.254.169.254", "metadata.google.internal"]}

    def handler_declaring(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json=declared)
        return handler(request)

    with pytest.raises(UnsafeRedirect, match="link-local or metadata"):
        make_client(handler_declaring).download("f1", Recorder())


def test_a_declared_host_resolving_to_a_link_local_address_is_refused() -> None:
    seen, handler = redirecting("https://dl.example.test/obj")
    client = make_client(handler)
    client._resolve = lambda host, port: ["93.184.216.34", "169.254.169.254"]

    with pytest.raises(UnsafeRedirect, match="resolves to 169.254.169.254"):
        client.download("f1", Recorder())

    assert len(seen) == 1


def test_a_redirect_from_https_down_to_http_is_refused() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json=CAPABILITIES)
        return httpx.Response(302, headers={"Location": "http://dl.example.test/obj"})

    client = make_client(handler)
    client._http.base_url = httpx.URL("https://proxy.test")

    with pytest.raises(UnsafeRedirect, match="down to http"):
        client.download("f1", Recorder())


def test_redirect_chains_are_bounded() -> None:
    def target(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://dl.example.test/again"})

    _, handler = redirecting("https://dl.example.test/first", target)

    with pytest.raises(UnsafeRedirect, match="more than"):
        make_client(handler).download("f1", Recorder())


def test_pre_signed_query_strings_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, handler = redirecting(
        "https://dl.example.test/obj?X-Amz-Signature=deadbeefcafe", lambda r: serve(DATA, r)
    )

    make_client(handler).download("f1", Recorder())

    assert "dl.example.test" in caplog.text  # httpx did log the request ...
    assert "deadbeefcafe" not in caplog.text  # ... without its credential
    assert "s3cr3t-token" not in caplog.text
