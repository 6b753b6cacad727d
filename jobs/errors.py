"""The jobs package's one error hierarchy.

    JobsError
    ├── JobNotFound           no job or report with that id
    ├── InvalidRequest        the request cannot be run as given (bad S3 URL, no destination)
    │   └── ExportAlreadyRunning   the room is already being exported to the same place
    ├── ServiceUnavailable    Redis or the database cannot be reached (names the setting)
    ├── DestinationError      writing to the local disk or to S3 failed
    │   └── DestinationRefused    the destination cannot take the export at all (read-only,
    │                             not a folder, no such bucket, access denied): no retry helps
    ├── VerificationFailed    the bytes written differ from what the source promised
    └── Cancelled             someone asked the job to stop

Errors from botocore and the file system are translated into these where they happen, so the
engine catches only `JobsError` and `vdr_client.VdrError`.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "DestinationError",
    "DestinationRefused",
    "ExportAlreadyRunning",
    "InvalidRequest",
    "JobNotFound",
    "JobsError",
    "ServiceUnavailable",
    "VerificationFailed",
]


class JobsError(Exception):
    """Base of every error the jobs package raises on purpose."""


class JobNotFound(JobsError):
    """No job (or report) with the id given."""


class InvalidRequest(JobsError):
    """The request cannot be run as given; the message says what to change."""


class ExportAlreadyRunning(InvalidRequest):
    """An export of this room to the same destinations is queued or running."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class ServiceUnavailable(JobsError):
    """Redis or the SQL database cannot be reached; the message names the setting to check."""


class DestinationError(JobsError):
    """A destination (local directory or S3 prefix) refused a write."""


class DestinationRefused(DestinationError):
    """A destination cannot take the export at all; retrying will not change that."""


class VerificationFailed(JobsError):
    """The bytes received do not match the size or hash the source declared."""


class Cancelled(JobsError):
    """The job was cancelled on request."""
