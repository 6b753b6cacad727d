"""The export manifest: one JSON line per file, the chain-of-custody record of an export.

It is written to every destination under `manifest.jsonl`, sorted by original path, and read
back by the next export of the same room to decide what is already there and verified.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["EntryStatus", "ManifestEntry", "encode_lines", "parse_lines"]

_LINE_BREAKS = ("\x85", "\u2028", "\u2029")
"""Line breaks to Python's splitlines() and some editors, left raw by JSON encoders."""

EntryStatus = Literal["exported", "verified", "failed"]
"""exported: written by this run; verified: intact from an earlier run; failed: not written."""


class ManifestEntry(BaseModel):
    """One file of the room and what became of it."""

    model_config = ConfigDict(extra="ignore")

    item_id: str
    version: str
    etag: str
    original_path: str = Field(description="Path in the VDR, '/'-joined original names.")
    written_path: str = Field(description="Path under the destination root, safe components.")
    size: int
    sha256: str | None = Field(description="SHA-256 of the bytes written; None if failed.")
    backend_hashes: dict[str, str] = Field(default_factory=dict)
    status: EntryStatus
    s3_checksum: str | None = Field(
        default=None, description="S3's stored checksum (base64, '-N' if multipart), for resume."
    )
    error: str | None = None
    job_id: str | None = Field(default=None, description="The export that wrote or verified it.")

    def to_line(self) -> bytes:
        """One line of UTF-8 JSON; characters that some readers take for line breaks are
        escaped, so a name holding U+2028 cannot split an entry in two."""
        text = json.dumps(self.model_dump(mode="json", exclude_none=True), ensure_ascii=False,
                          separators=(",", ":"))
        for char in _LINE_BREAKS:
            text = text.replace(char, f"\\u{ord(char):04x}")
        return text.encode("utf-8") + b"\n"


def encode_lines(entries: Iterable[ManifestEntry]) -> Iterator[bytes]:
    """The manifest's lines, ordered by original path so two runs compare line by line."""
    for entry in sorted(entries, key=lambda e: (e.original_path, e.item_id)):
        yield entry.to_line()


def parse_lines(lines: Iterable[bytes | str]) -> Iterator[ManifestEntry]:
    """Entries of a manifest; lines that are not valid entries (a truncated tail) are skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            yield ManifestEntry.model_validate(json.loads(line))
        except (ValueError, ValidationError):
            continue
