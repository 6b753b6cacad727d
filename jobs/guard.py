"""The archive-before-purge guard: does the latest export of a room still match the live room?

A room may be purged only when an export report exists whose manifest lists exactly what the
room holds now: the same files (by item id, at the same path), each with the same size and the
same content hash. The guard reads the newest successful export report of the room, loads its
manifest from the first location that can be read (local file, else S3), walks the live tree
with `VdrClient`, and compares the two. It reads the room's etag before and after the walk:
a room that changed while it was being checked does not pass, and the etag the guard saw is
the one a purge must send as `If-Match`, so nothing changed after the check can be purged.

The verdict is data (`GuardVerdict`); the bot renders it, the deletion job enforces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from jobs import store
from jobs.manifest import ManifestEntry, parse_lines
from jobs.s3_dest import make_s3_client, parse_s3_url
from vdr_client import Item, Room, VdrClient

__all__ = [
    "GuardVerdict",
    "LiveItem",
    "check_room",
    "compare",
    "inspect_room",
    "latest_export",
    "read_manifest",
    "walk_room",
]

log = logging.getLogger("vdr.jobs.guard")

LIST_CONCURRENCY = 8
"""Folder listings run at once while the guard walks a room."""

PATHS_SHOWN = 20
"""Differences named in a verdict per kind; the counts are always complete."""

S3ClientFactory = Callable[[], Any]


@dataclass(frozen=True)
class LiveItem:
    """One item of the live room, with its place in the tree."""

    id: str
    type: str
    path: str  # '/'-joined original names from the root, as manifests record them
    depth: int
    size: int
    version: str
    etag: str
    hashes: dict[str, str]


class GuardVerdict(BaseModel):
    """What the guard found; `ok` only when an export matches the room item for item."""

    room_id: str
    room_name: str
    room_etag: str = Field(description="Etag read before the walk: what a purge must match.")
    ok: bool
    problem: str | None = Field(None, description="Why not, in one sentence; None when ok.")
    report_id: str | None = None
    job_id: str | None = None
    export_finished_at: datetime | None = None
    manifest_locations: list[str] = Field(default_factory=list)
    files_live: int = 0
    bytes_live: int = 0
    files_archived: int = 0
    missing: list[str] = Field(default_factory=list, description="Archived, gone from the room.")
    added: list[str] = Field(default_factory=list, description="In the room, not archived.")
    changed: list[str] = Field(default_factory=list, description="Other size, hash or path.")
    not_exportable: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict, description="Complete difference counts.")


def check_room(
    client: VdrClient,
    engine: sa.Engine,
    room: Room,
    *,
    s3_client_factory: S3ClientFactory = make_s3_client,
    concurrency: int = LIST_CONCURRENCY,
) -> GuardVerdict:
    """Compare the room's newest successful export with the live room."""
    verdict, _ = inspect_room(client, engine, room, s3_client_factory=s3_client_factory,
                              concurrency=concurrency)
    return verdict


def inspect_room(
    client: VdrClient,
    engine: sa.Engine,
    room: Room,
    *,
    s3_client_factory: S3ClientFactory = make_s3_client,
    concurrency: int = LIST_CONCURRENCY,
) -> tuple[GuardVerdict, list[LiveItem]]:
    """The verdict, and the live items walked to reach it (empty when no walk was needed)."""
    base: dict[str, Any] = {"room_id": room.id, "room_name": room.name, "room_etag": room.etag}
    report = latest_export(engine, room.id)
    if report is None:
        problem = "no successful export of this room exists"
        return GuardVerdict(**base, ok=False, problem=problem), []
    about: dict[str, Any] = {
        "report_id": report.id, "job_id": report.job_id,
        "export_finished_at": report.finished_at,
        "manifest_locations": list(report.manifest_locations),
    }
    entries = read_manifest(report.manifest_locations, s3_client_factory)
    if entries is None:
        problem = f"the manifest of export {report.id} cannot be read at any of its locations"
        return GuardVerdict(**base, **about, ok=False, problem=problem), []

    live = walk_room(client, room.root_folder_id, concurrency=concurrency)
    after = client.get_room(room.id)
    fields = compare(entries, live)
    fields.update(base, **about)
    if after.etag != room.etag and fields["ok"]:
        fields.update(ok=False, problem="the room changed while it was being checked")
    verdict = GuardVerdict.model_validate(fields)
    log.info("guard %s (%s): %s", room.id, report.id, "match" if verdict.ok else verdict.problem)
    return verdict, live


def latest_export(engine: sa.Engine, room_id: str) -> store.Report | None:
    """The newest export report of the room that succeeded."""
    for report in store.list_reports(engine, room=room_id, limit=200):
        if report.kind == "export" and report.room_id == room_id and report.state == "succeeded":
            return report
    return None


def read_manifest(
    locations: Iterable[str], s3_client_factory: S3ClientFactory = make_s3_client
) -> list[ManifestEntry] | None:
    """The entries of the first manifest copy that can be read; None when none can."""
    ordered = sorted(locations, key=lambda location: location.startswith("s3://"))
    for location in ordered:
        try:
            if location.startswith("s3://"):
                return _read_s3(location, s3_client_factory)
            with Path(location).open("rb") as handle:
                return list(parse_lines(handle))
        except Exception as error:  # any failure of one copy just means: try the next copy
            log.warning("manifest at %s unreadable: %s", location, error)
    return None


def _read_s3(location: str, s3_client_factory: S3ClientFactory) -> list[ManifestEntry]:
    bucket, key = parse_s3_url(location)
    body = s3_client_factory().get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return list(parse_lines(body.iter_lines()))
    finally:
        body.close()


def walk_room(client: VdrClient, root_folder_id: str, *, concurrency: int) -> list[LiveItem]:
    """Every item below the room's root folder, `concurrency` folder listings at once."""
    found: list[LiveItem] = []
    with ThreadPoolExecutor(concurrency, thread_name_prefix="vdr-guard") as pool:
        def submit(folder_id: str, path: str, depth: int) -> Future[list[LiveItem]]:
            return pool.submit(_children, client, folder_id, path, depth)

        pending = {submit(root_folder_id, "", 1)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for item in future.result():
                    found.append(item)
                    if item.type == "folder":
                        pending.add(submit(item.id, item.path, item.depth + 1))
    found.sort(key=lambda item: (item.path, item.id))
    return found


def _children(client: VdrClient, folder_id: str, path: str, depth: int) -> list[LiveItem]:
    return [_live(item, f"{path}/{item.name}", depth) for item in client.iter_children(folder_id)]


def _live(item: Item, path: str, depth: int) -> LiveItem:
    hashes = {algo.lower(): value.lower() for algo, value in item.hashes.items()}
    return LiveItem(item.id, item.type, path, depth, item.size, item.version, item.etag, hashes)


def compare(entries: list[ManifestEntry], live: list[LiveItem]) -> dict[str, Any]:
    """The fields of a verdict comparing a manifest with the live items (no room fields)."""
    archived = {entry.item_id: entry for entry in entries if entry.status != "failed"}
    files = {item.id: item for item in live if item.type == "file"}
    others = sorted(item.path for item in live if item.type == "other")

    missing = sorted(archived[i].original_path for i in archived.keys() - files.keys())
    added = sorted(files[i].path for i in files.keys() - archived.keys())
    changed = sorted(files[i].path for i in files.keys() & archived.keys()
                     if not _same(archived[i], files[i]))
    counts = {"missing": len(missing), "added": len(added), "changed": len(changed),
              "not_exportable": len(others)}
    return {
        "ok": not any(counts.values()), "problem": _problem(counts),
        "files_live": len(files), "bytes_live": sum(item.size for item in files.values()),
        "files_archived": len(archived), "missing": missing[:PATHS_SHOWN],
        "added": added[:PATHS_SHOWN], "changed": changed[:PATHS_SHOWN],
        "not_exportable": others[:PATHS_SHOWN], "counts": counts,
    }


def _same(entry: ManifestEntry, item: LiveItem) -> bool:
    """Same size and path, and every hash both sides know agrees (else same version)."""
    if entry.size != item.size or entry.original_path != item.path or entry.sha256 is None:
        return False
    known = {**entry.backend_hashes, "sha256": entry.sha256}
    common = known.keys() & item.hashes.keys()
    if common:
        return all(known[algo].lower() == item.hashes[algo] for algo in common)
    return (entry.version, entry.etag) == (item.version, item.etag)


def _problem(counts: dict[str, int]) -> str | None:
    words = {"added": "added or not archived", "changed": "changed", "missing": "removed",
             "not_exportable": "of a kind no export can copy"}
    parts = [f"{counts[key]} item(s) {text}" for key, text in words.items() if counts.get(key)]
    if not parts:
        return None
    return "the room differs from its export: " + ", ".join(parts)
