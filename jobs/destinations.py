"""Where an export writes: the common interface of the local and S3 destinations.

A destination is one room's folder (local) or key prefix (S3). Each file goes through a
`Writer`: bytes stream in, and only `commit` makes the file visible under its final name;
`abort` leaves nothing behind. `verify` tells whether a file from an earlier run is intact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from jobs.manifest import ManifestEntry

__all__ = ["Destination", "Expected", "Verdict", "Writer"]


@dataclass(frozen=True)
class Expected:
    """What a destination should hold for one file, as far as we know before downloading it."""

    size: int
    sha256: str | None = None
    s3_checksum: str | None = None


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking an existing file: intact or not, and S3's stored checksum if any."""

    intact: bool
    s3_checksum: str | None = None


class Writer(Protocol):
    def write(self, chunk: bytes) -> None:
        """Take the next bytes of the file; raises DestinationError when the sink failed."""

    def commit(self, sha256_hex: str) -> str | None:
        """Make the file visible under its final name; returns S3's checksum if there is one."""

    def abort(self) -> None:
        """Drop everything written so far; never raises."""


class Destination(Protocol):
    url: str
    """Where the room lands, as shown in reports: a local path or `s3://bucket/prefix`."""

    def open(self, written_path: str, size: int) -> Writer: ...

    def memory_for(self, size: int) -> int:
        """Most bytes a writer of a file this size holds in memory, for the engine's budget."""

    def verify(self, written_path: str, expected: Expected) -> Verdict: ...

    def check(self) -> None:
        """Raise DestinationError if nothing can be written here (no folder, no bucket)."""

    def existing_paths(self) -> set[str] | None:
        """Every written path present now, if one listing can tell (None: ask per file)."""

    def read_manifest(self) -> list[ManifestEntry]:
        """The manifest an earlier export left here (empty if none)."""

    def write_manifest(self, lines: Iterable[bytes]) -> str:
        """Store the manifest atomically; returns its location."""

    def make_folders(self, written_paths: Iterable[str]) -> None:
        """Create folders that hold no file (S3 has none to create)."""

    def clean_up(self) -> None:
        """Remove leftovers of interrupted writes (temp files, open multipart uploads), and a
        folder left empty."""

    def sync(self) -> None:
        """Make everything committed so far durable (S3: already is)."""
