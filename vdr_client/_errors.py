"""The client's one error hierarchy.

    VdrError
    ├── TransportError          the request never got an answer (refused, reset, timed out)
    │   └── DeadlineExceeded    retries ran out of time
    ├── ApiError                the proxy answered with the canonical error body
    │   ├── BadRequest          400: the request itself is wrong; do not retry
    │   │   └── AmbiguousRoom   a room reference matches several rooms (raised by the client)
    │   ├── Unauthorized        401: token missing, wrong or expired
    │   ├── NotFound            404
    │   ├── Conflict            409: the object is in the wrong state for this call
    │   ├── PreconditionFailed  412: the etag given no longer matches
    │   ├── RateLimited         429: retried by the client; raised when retries run out
    │   └── ServerError         5xx: retried by the client; raised when retries run out
    └── IntegrityError          bytes received do not match the size, range or hash promised
        ├── UnsafeRedirect      a redirect pointed somewhere the backend did not declare
        └── VersionChanged      parts of one file came from two versions of it

Every httpx exception is translated at one point in the client, so callers catch only these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vdr_client._models import Room


class VdrError(Exception):
    """Base of every error the VDR client raises."""


class TransportError(VdrError):
    """The proxy could not be reached, or the connection broke mid-answer."""


class DeadlineExceeded(TransportError):
    """Retries did not succeed within the call's total deadline."""


class ApiError(VdrError):
    """The proxy answered with an error status and the canonical error body."""

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    status_code = 400


class AmbiguousRoom(BadRequest):
    """A room reference (name or part of one) matches several rooms; `candidates` lists them."""

    def __init__(self, ref: str, candidates: Sequence[Room], *, total: int | None = None) -> None:
        self.ref = ref
        self.candidates = list(candidates)
        self.total = len(self.candidates) if total is None else total
        shown = ", ".join(f"{room.name!r} ({room.id})" for room in self.candidates[:10])
        more = f" and {self.total - 10} more" if self.total > 10 else ""
        super().__init__(
            f"{self.total} rooms match {ref!r}: {shown}{more}; give the room's id or exact name",
            code="ambiguous_room",
        )


class Unauthorized(ApiError):
    status_code = 401


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class PreconditionFailed(ApiError):
    status_code = 412


class RateLimited(ApiError):
    status_code = 429


class ServerError(ApiError):
    status_code = 500


class IntegrityError(VdrError):
    """Bytes received contradict what the proxy promised (length, Content-Range or hash)."""


class UnsafeRedirect(IntegrityError):
    """A content redirect pointed at a host the backend did not declare as a download host."""


class VersionChanged(IntegrityError):
    """The file changed on the source while its parts were being fetched; fetch it afresh."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    429: RateLimited,
}


def error_for_status(status_code: int) -> type[ApiError]:
    """The ApiError subclass for an HTTP status code."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ApiError)
