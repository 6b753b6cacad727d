"""Backends the proxy maps the canonical API onto, and the contract they implement.

Errors (all `BackendError`, each picking its HTTP status)::

    BackendError            500 internal
    ├── InvalidRequest      400 bad_request
    ├── NotFoundError       404 not_found
    ├── ConflictError       409 conflict
    ├── PreconditionError   412 precondition_failed
    ├── RangeNotSatisfiable 416 range_not_satisfiable
    ├── ThrottledError      429 rate_limited (with retry_after_s)
    └── UnavailableError    503 unavailable (with retry_after_s)
"""

from proxy.backends._base import (
    Backend,
    BackendError,
    ConflictError,
    Content,
    InvalidRequest,
    NotFoundError,
    PreconditionError,
    RangeNotSatisfiable,
    RoomQuery,
    ThrottledError,
    UnavailableError,
)
from proxy.backends._hostile import hostile_names, hostile_names_on_disk
from proxy.backends.directory import DirectoryBackend
from proxy.backends.synthetic import RoomSpec, SyntheticBackend

__all__ = [
    "Backend",
    "BackendError",
    "ConflictError",
    "Content",
    "DirectoryBackend",
    "InvalidRequest",
    "NotFoundError",
    "PreconditionError",
    "RangeNotSatisfiable",
    "RoomQuery",
    "RoomSpec",
    "SyntheticBackend",
    "ThrottledError",
    "UnavailableError",
    "hostile_names",
    "hostile_names_on_disk",
]
