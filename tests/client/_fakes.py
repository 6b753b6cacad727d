"""Small building blocks for the client's unit tests: canned API objects, a fake clock, and
response bodies that break off mid-way the way a dropped connection does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx

from vdr_client import RetryPolicy, VdrClient

Handler = Callable[[httpx.Request], httpx.Response]

CAPABILITIES: dict[str, Any] = {
    "hash_algorithms": ["sha256"],
    "supports_range": True,
    "supports_restore": True,
    "room_purge": "native",
    "max_page_size": 3,
    "download_hosts": ["dl.example.test", "files.example.test:9000"],
}


def room_json(room_id: str, name: str, **extra: Any) -> dict[str, Any]:
    room = {
        "id": room_id,
        "name": name,
        "status": "active",
        "owner": {"id": "u1", "name": "Ada Owner", "email": "ada@example.test"},
        "created_at": "2023-01-02T03:04:05Z",
        "last_activity_at": "2024-05-06T07:08:09Z",
        "size": {"active_bytes": 10, "deleted_bytes": 0, "total_bytes": 10},
        "file_count": 1,
        "folder_count": 1,
        "root_folder_id": f"{room_id}-root",
        "etag": f"etag-{room_id}",
    }
    return {**room, **extra}


def operation_json(op_id: str, state: str = "pending", kind: str = "trash") -> dict[str, Any]:
    return {
        "id": op_id,
        "kind": kind,
        "target_id": "r1",
        "state": state,
        "created_at": "2024-01-01T00:00:00Z",
    }


class FakeTime:
    """A clock that moves only when the client sleeps, so waits cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class BrokenStream(httpx.SyncByteStream):
    """Yields `data` in small pieces, then fails as a connection cut mid-body does."""

    def __init__(self, data: bytes, piece: int = 64) -> None:
        self.data = data
        self.piece = piece

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            yield self.data[start:start + self.piece]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


class PiecedStream(httpx.SyncByteStream):
    """A healthy streamed body, in pieces, so the client sees it arrive chunk by chunk."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.data = data
        self.piece = piece

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            yield self.data[start:start + self.piece]


def make_client(
    handler: Handler, *, token: str | None = "s3cr3t-token", time: FakeTime | None = None,
    policy: RetryPolicy | None = None, **kw: Any,
) -> VdrClient:
    """A client over a MockTransport; with `time`, its waits are instant and recorded."""
    client = VdrClient(
        "http://proxy.test", token, transport=httpx.MockTransport(handler),
        retry=policy or RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05, deadline_s=5),
        **kw,
    )
    if time is not None:
        client._clock = time.clock
        client._sleep = time.sleep
    client._resolve = lambda host, port: []
    return client
