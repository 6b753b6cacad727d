"""Typed client of the canonical VDR API (v1)."""

from vdr_client._client import VdrClient
from vdr_client._errors import (
    AmbiguousRoom,
    ApiError,
    BadRequest,
    Conflict,
    DeadlineExceeded,
    IntegrityError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    UnsafeRedirect,
    VdrError,
    error_for_status,
)
from vdr_client._http import hide_query_strings_in_httpx_logs
from vdr_client._models import (
    ROOM_SORTS,
    ROOM_STATUSES,
    Capabilities,
    ErrorBody,
    ErrorDetail,
    Item,
    Operation,
    Owner,
    Page,
    Room,
    RoomSize,
)
from vdr_client._retry import RetryEvent, RetryPolicy, parse_retry_after

__all__ = [
    "ROOM_SORTS",
    "ROOM_STATUSES",
    "AmbiguousRoom",
    "ApiError",
    "BadRequest",
    "Capabilities",
    "Conflict",
    "DeadlineExceeded",
    "ErrorBody",
    "ErrorDetail",
    "IntegrityError",
    "Item",
    "NotFound",
    "Operation",
    "Owner",
    "Page",
    "PreconditionFailed",
    "RateLimited",
    "RetryEvent",
    "RetryPolicy",
    "Room",
    "RoomSize",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnsafeRedirect",
    "VdrClient",
    "VdrError",
    "error_for_status",
    "parse_retry_after",
]

hide_query_strings_in_httpx_logs()
