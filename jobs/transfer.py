"""Moving one file: check what is already there, else one download teed to every destination.

The download streams chunk by chunk into every destination still missing the file, while
SHA-256 (and whatever algorithm the source declared, e.g. Box's SHA-1) is computed over the
same bytes. Only when the size and every hash agree with the source are the destinations
committed; on any failure all of them are aborted and the file is tried again from scratch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jobs._hashing import hashers_for, verified_sha256
from jobs.destinations import Destination, Expected, Verdict, Writer
from jobs.errors import Cancelled, DestinationError, JobsError, VerificationFailed
from jobs.flow import AdaptiveLimit, ByteBudget
from jobs.manifest import ManifestEntry
from jobs.plan import FileTask
from jobs.ranged import RangedMove, part_size_for
from vdr_client import BadRequest, IntegrityError, NotFound, Unauthorized, VdrClient, VdrError

__all__ = ["FileFailed", "FileMover"]

log = logging.getLogger("vdr.jobs.transfer")

_FINAL_ERRORS = (NotFound, Unauthorized, BadRequest)
"""Errors another attempt cannot fix."""


class FileFailed(Exception):
    """A file could not be exported; `reason` is what the report shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Attempt:
    """One download in progress: the writers and hashes fed by each chunk."""

    writers: list[Writer]
    hashers: dict[str, hashlib._Hash]
    written: int = 0


class FileMover:
    """Exports files one call at a time; safe to use from many threads at once.

    `source_limit` bounds the downloads in flight (each part of a file moved in ranges is one),
    and only them: a file whose bytes are in gives its turn to the next download before it is
    committed (an S3 PUT, a rename), so the source's latency overlaps the destinations' work
    instead of adding to it.
    """

    def __init__(
        self,
        client: VdrClient,
        destinations: Sequence[Destination],
        *,
        source_limit: AdaptiveLimit,
        budget: ByteBudget,
        stop: threading.Event,
        attempts: int,
        on_bytes: Callable[[FileTask, int], None],
        on_retry: Callable[[FileTask, str], None],
    ) -> None:
        self.client = client
        self.destinations = list(destinations)
        self.source_limit = source_limit
        self.budget = budget
        self.stop = stop
        self.attempts = attempts
        self.on_bytes = on_bytes
        self.on_retry = on_retry

    def move(self, task: FileTask) -> tuple[ManifestEntry, bool]:
        """Export one file; returns its manifest entry and whether it was downloaded.

        Raises FileFailed when every attempt failed, Cancelled when the job was stopped.
        """
        verdicts = [
            Verdict(False) if dest.url in task.unseen else dest.verify(task.written_path,
                                                                       _expected(task))
            for dest in self.destinations
        ]
        missing = [dest for dest, verdict in zip(self.destinations, verdicts, strict=True)
                   if not verdict.intact]
        if not missing:
            sha256 = task.hashes.get("sha256") or task.known_sha256
            return _entry(task, "verified", sha256, _s3_checksum(verdicts)), False

        sha256, checksums = self._download_with_retries(task, missing)
        stored = [Verdict(True, c) for c in checksums] + [v for v in verdicts if v.intact]
        return _entry(task, "exported", sha256, _s3_checksum(stored)), True

    def _download_with_retries(
        self, task: FileTask, missing: list[Destination]
    ) -> tuple[str, list[str | None]]:
        for attempt in range(1, self.attempts + 1):
            try:
                return self._move_bytes(task, missing)
            except Cancelled:
                raise
            except _FINAL_ERRORS as error:
                raise FileFailed(_reason(error)) from error
            except (VdrError, JobsError) as error:
                if attempt == self.attempts or self.stop.is_set():
                    raise FileFailed(_reason(error)) from error
                log.info("retrying %s (attempt %d): %s", task.original_path, attempt + 1, error)
                self.on_retry(task, _reason(error))
        raise AssertionError("unreachable")

    def _move_bytes(
        self, task: FileTask, missing: list[Destination]
    ) -> tuple[str, list[str | None]]:
        """Large files in parallel ranges when the source serves them, the rest streamed."""
        part_size = part_size_for(self.client, task.size, missing)
        if part_size is None:
            return self._download(task, missing)
        return RangedMove(
            self.client, task, missing, part_size=part_size, hashers=hashers_for(task),
            budget=self.budget, source_limit=self.source_limit, stop=self.stop,
            on_bytes=self.on_bytes, on_retry=self.on_retry,
        ).run()

    def _download(self, task: FileTask, missing: list[Destination]) -> tuple[str, list[str | None]]:
        reserved = self.budget.acquire(sum(d.memory_for(task.size) for d in missing), self.stop)
        try:
            if self.stop.is_set():
                raise Cancelled("stopped before download")
            # Remote destinations first: when S3 refuses at the end, the local file is not yet
            # in place either, so every destination holds the file or none does.
            ordered = sorted(missing, key=lambda dest: dest.memory_for(1) == 0)
            attempt = _Attempt(
                writers=[dest.open(task.written_path, task.size) for dest in ordered],
                hashers=hashers_for(task),
            )
            try:
                with self.source_limit.slot(self.stop):
                    self.client.download(task.item_id, self._tee(task, attempt),
                                         expected_size=task.size)
                sha256 = verified_sha256(task, attempt.written, attempt.hashers)
                return sha256, [writer.commit(sha256) for writer in attempt.writers]
            except BaseException:
                for writer in attempt.writers:
                    writer.abort()
                raise
        finally:
            self.budget.release(reserved)

    def _tee(self, task: FileTask, attempt: _Attempt) -> Callable[[bytes], None]:
        def write(chunk: bytes) -> None:
            if self.stop.is_set():
                raise Cancelled("stopped mid-file")
            for hasher in attempt.hashers.values():
                hasher.update(chunk)
            for writer in attempt.writers:
                writer.write(chunk)
            attempt.written += len(chunk)
            self.on_bytes(task, attempt.written)

        return write


def _expected(task: FileTask) -> Expected:
    sha256 = task.hashes.get("sha256") or task.known_sha256
    return Expected(task.size, sha256, task.known_s3_checksum)


def _s3_checksum(verdicts: Sequence[Verdict]) -> str | None:
    return next((v.s3_checksum for v in verdicts if v.s3_checksum), None)


def _entry(
    task: FileTask, status: str, sha256: str | None, s3_checksum: str | None
) -> ManifestEntry:
    return ManifestEntry(
        item_id=task.item_id, version=task.version, etag=task.etag,
        original_path=task.original_path, written_path=task.written_path, size=task.size,
        sha256=sha256, backend_hashes=task.hashes, status=status,
        s3_checksum=s3_checksum,
    )


def failed_entry(task: FileTask, reason: str) -> ManifestEntry:
    """The manifest entry of a file that could not be exported."""
    return _entry(task, "failed", None, None).model_copy(update={"error": reason})


def _reason(error: BaseException) -> str:
    """A short, secret-free reason for reports: the error's kind and message."""
    kinds = {
        NotFound: "gone from the room since it was listed",
        IntegrityError: "bytes did not match what the source promised",
        DestinationError: "destination refused the write",
        VerificationFailed: "verification failed",
    }
    for kind, text in kinds.items():
        if isinstance(error, kind):
            return f"{text}: {error}"
    return f"{type(error).__name__}: {error}"
