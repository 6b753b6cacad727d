"""File bodies: small ones answered whole in one message, large ones streamed in chunks; both
honour Range, If-Range, HEAD and the fault layer alike."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy import DirectoryBackend, FaultConfig, ProxyServer, RoomSpec, SyntheticBackend, build_app
from proxy._app import SMALL_BODY_MAX
from proxy.backends import Backend
from proxy.backends._base import Content, RoomQuery
from proxy.backends.synthetic import BLOCK
from tests.proxy.test_faults import raw_get

SIZES = [SMALL_BODY_MAX, SMALL_BODY_MAX + 1]
"""The largest body answered whole, and the smallest one streamed."""


def one_file(server: ProxyServer) -> dict[str, Any]:
    with httpx.Client(base_url=server.url) as http:
        room = http.get("/v1/rooms").json()["items"][0]
        return http.get(f"/v1/folders/{room['root_folder_id']}/children").json()["items"][0]


def sized_backend(size: int) -> SyntheticBackend:
    return SyntheticBackend(
        seed=5, rooms=0, specs=[RoomSpec("sized", files=2, file_size=size, folders=0)]
    )


def body_messages(backend: Backend, file_id: str) -> list[dict[str, Any]]:
    """The `http.response.body` messages the app sends for one GET, without a server."""
    app = build_app(backend)
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/v1/files/{file_id}/content",
        "raw_path": f"/v1/files/{file_id}/content".encode(),
        "query_string": b"",
        "headers": [],
    }
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never goes away; the app stops listening
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return [message for message in sent if message["type"] == "http.response.body"]


@pytest.mark.parametrize("size", SIZES)
def test_bodies_either_side_of_the_limit_honour_ranges(
    make_proxy: Callable[..., ProxyServer], size: int
) -> None:
    server = make_proxy(sized_backend(size))
    item = one_file(server)
    url = f"/v1/files/{item['id']}/content"
    with httpx.Client(base_url=server.url) as http:
        whole = http.get(url)
        tail = http.get(url, headers={"Range": "bytes=-5"})
        etag = whole.headers["etag"]
        middle = http.get(url, headers={"Range": "bytes=100-199", "If-Range": etag})
        stale = http.get(url, headers={"Range": "bytes=100-199", "If-Range": '"stale"'})
        beyond = http.get(url, headers={"Range": f"bytes={size}-"})
        head = http.head(url)

    assert whole.status_code == 200 and int(whole.headers["content-length"]) == size
    assert hashlib.sha256(whole.content).hexdigest() == item["hashes"]["sha256"]
    assert tail.status_code == 206 and tail.content == whole.content[-5:]
    assert tail.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    assert middle.status_code == 206 and middle.content == whole.content[100:200]
    assert stale.status_code == 200 and stale.content == whole.content
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == size
    assert {whole.headers["etag"], tail.headers["etag"], head.headers["etag"]} == {
        f'"{item["etag"]}"'
    }
    assert whole.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(("size", "messages"), [(SMALL_BODY_MAX, 1), (3 * BLOCK, 3 + 1)])
def test_small_bodies_go_whole_and_large_ones_stream_in_chunks(size: int, messages: int) -> None:
    backend = sized_backend(size)
    room = backend.search_rooms(query=RoomQuery(), cursor=None, limit=1).items[0]
    item = backend.list_children(room.root_folder_id, None, 1).items[0]

    sent = body_messages(backend, item.id)

    assert len(sent) == messages  # a streamed one: a message per block, then an empty one
    assert sum(len(message["body"]) for message in sent) == size


def test_a_large_directory_file_streams_in_bounded_chunks(directory_root: Path) -> None:
    big = directory_root / "Project Beta" / "big.bin"
    big.write_bytes(bytes(range(256)) * (4 * SMALL_BODY_MAX // 256))
    backend = DirectoryBackend(directory_root)
    try:
        room = next(
            room
            for room in backend.search_rooms(RoomQuery(), None, 100).items
            if room.name == "Project Beta"
        )
        item = next(
            item
            for item in backend.list_children(room.root_folder_id, None, 100).items
            if item.name == "big.bin"
        )
        sent = body_messages(backend, item.id)
    finally:
        backend.close()

    assert b"".join(message["body"] for message in sent) == big.read_bytes()
    assert max(len(message["body"]) for message in sent) <= SMALL_BODY_MAX


class _ShortRead(SyntheticBackend):
    """Announces a file's full size but yields fewer bytes, as a file shrinking mid-read."""

    def open_content(self, file_id: str, start: int = 0, end: int | None = None) -> Content:
        content = super().open_content(file_id, start, end)
        short: Iterator[bytes] = iter([next(content.chunks)[:-1]])
        return Content(short, content.total_size, content.start, content.end, content.etag)


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_small_body_that_reads_short_is_an_error_answer_not_a_broken_body(
    make_proxy: Callable[..., ProxyServer], in_memory: bool
) -> None:
    spec = RoomSpec("short", files=1, file_size=4096, folders=0)
    backend = _ShortRead(seed=5, rooms=0, specs=[spec])
    backend.content_in_memory = in_memory  # on the event loop, or in the thread pool
    server = make_proxy(backend)
    item = one_file(server)
    with httpx.Client(base_url=server.url) as http:
        response = http.get(f"/v1/files/{item['id']}/content")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "retry-after" in response.headers


@pytest.mark.parametrize("size", [10_000, *SIZES])
def test_a_body_of_any_size_is_cut_on_the_wire(
    make_proxy: Callable[..., ProxyServer], size: int
) -> None:
    server = make_proxy(sized_backend(size))
    item = one_file(server)
    server.set_faults(FaultConfig(p_cut=1.0, seed=3))

    received = raw_get(server, f"/v1/files/{item['id']}/content")
    head, _, body = received.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {size}".encode() in head.lower()
    assert len(body) < size
    assert server.faults.counts["cut"] == 1


def test_a_small_body_is_paced_to_the_bandwidth(make_proxy: Callable[..., ProxyServer]) -> None:
    server = make_proxy(sized_backend(100_000))
    item = one_file(server)
    server.set_faults(FaultConfig(bandwidth=200_000))
    with httpx.Client(base_url=server.url) as http:
        started = time.perf_counter()
        body = http.get(f"/v1/files/{item['id']}/content").content
        elapsed = time.perf_counter() - started

    assert len(body) == 100_000
    assert elapsed >= 0.45  # 100 kB at 200 kB/s
