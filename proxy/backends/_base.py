"""What a backend must do for the proxy to serve the canonical API over it.

Backends are synchronous; the ASGI app runs them in a thread pool (but for the content of an
in-memory backend, see `Backend.content_in_memory`). They raise only `BackendError`
subclasses, which the app turns into the one JSON error shape.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass

from vdr_client import Capabilities, Item, Operation, Page, Room


class BackendError(Exception):
    """Base of backend errors; `status` and `code` pick the HTTP answer."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidRequest(BackendError):
    status, code = 400, "bad_request"


class NotFoundError(BackendError):
    status, code = 404, "not_found"


class ConflictError(BackendError):
    status, code = 409, "conflict"


class PreconditionError(BackendError):
    status, code = 412, "precondition_failed"


class RangeNotSatisfiable(BackendError):
    status, code = 416, "range_not_satisfiable"


class ThrottledError(BackendError):
    status, code = 429, "rate_limited"


class UnavailableError(BackendError):
    status, code = 503, "unavailable"


@dataclass(frozen=True)
class RoomQuery:
    """Filters and order of a room search; every field optional."""

    query: str | None = None
    status: str | None = None
    owner: str | None = None
    inactive_days: int | None = None
    sort: str = "name"


@dataclass
class Content:
    """A file's bytes, or the part a Range asked for, as a stream of chunks."""

    chunks: Iterator[bytes]
    total_size: int
    start: int
    end: int  # inclusive, as in Content-Range
    etag: str
    media_type: str = "application/octet-stream"
    redirect_url: str | None = None  # set instead of chunks to answer 302

    @property
    def length(self) -> int:
        return self.end - self.start + 1 if self.total_size else 0


class Backend(abc.ABC):
    """The canonical API's calls, one method each."""

    name: str = "backend"

    content_in_memory: bool = False
    """True when `open_content` and its chunks never wait on disk or network (bytes made in
    memory): the app then answers small bodies on the event loop, without a thread hop."""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def search_rooms(self, query: RoomQuery, cursor: str | None, limit: int) -> Page[Room]: ...

    @abc.abstractmethod
    def get_room(self, room_id: str) -> Room: ...

    @abc.abstractmethod
    def list_children(self, folder_id: str, cursor: str | None, limit: int) -> Page[Item]: ...

    @abc.abstractmethod
    def open_content(self, file_id: str, start: int = 0, end: int | None = None) -> Content:
        """The file's bytes from `start` to `end` (inclusive; None: to the end)."""

    @abc.abstractmethod
    def trash_room(self, room_id: str) -> Operation: ...

    @abc.abstractmethod
    def restore_room(self, room_id: str) -> Operation: ...

    @abc.abstractmethod
    def purge_room(self, room_id: str, if_match: str | None) -> Operation: ...

    @abc.abstractmethod
    def trash_item(self, item_id: str) -> Operation: ...

    @abc.abstractmethod
    def purge_item(self, item_id: str) -> Operation: ...

    @abc.abstractmethod
    def get_operation(self, operation_id: str) -> Operation: ...
