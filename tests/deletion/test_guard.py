"""The archive guard: a room matches its latest export item for item, or purge is refused."""

from __future__ import annotations

import os
from pathlib import Path

import boto3

from jobs import guard
from jobs.guard import LiveItem
from jobs.manifest import ManifestEntry
from tests.deletion.conftest import World


def entry(item_id: str, path: str, size: int = 10, sha: str | None = "aa",
          status: str = "exported") -> ManifestEntry:
    return ManifestEntry(item_id=item_id, version="1", etag="t", original_path=path,
                         written_path=path.lstrip("/"), size=size, sha256=sha,
                         status=status)


def live(item_id: str, path: str, size: int = 10, sha: str | None = "aa",
         kind: str = "file") -> LiveItem:
    hashes = {"sha256": sha} if sha else {}
    return LiveItem(item_id, kind, path, path.count("/"), size, "1", "t", hashes)


def test_identical_listings_match() -> None:
    found = guard.compare([entry("a", "/x"), entry("b", "/d/y", 5, "bb")],
                          [live("a", "/x"), live("d", "/d", 0, None, "folder"),
                           live("b", "/d/y", 5, "bb")])
    assert found["ok"] and found["problem"] is None
    assert (found["files_live"], found["bytes_live"], found["files_archived"]) == (2, 15, 2)


def test_every_kind_of_difference_is_counted_and_named() -> None:
    manifest = [entry("same", "/same"), entry("gone", "/gone"), entry("resized", "/r", 10),
                entry("rehashed", "/h", sha="aa"), entry("moved", "/old"),
                entry("failed", "/failed", sha=None, status="failed")]
    now = [live("same", "/same"), live("resized", "/r", 11), live("rehashed", "/h", sha="ff"),
           live("moved", "/new"), live("failed", "/failed"), live("new", "/new-file"),
           live("link", "/link", 0, None, "other")]

    found = guard.compare(manifest, now)

    assert not found["ok"]
    assert found["counts"] == {"missing": 1, "added": 2, "changed": 3, "not_exportable": 1}
    assert found["missing"] == ["/gone"]
    assert found["added"] == ["/failed", "/new-file"]
    assert found["changed"] == ["/h", "/new", "/r"]
    assert "2 item(s) added or not archived" in found["problem"]


def test_without_a_common_hash_the_version_must_match() -> None:
    manifest = [entry("big", "/big", 10)]
    assert guard.compare(manifest, [live("big", "/big", 10, sha=None)])["ok"]
    other_version = LiveItem("big", "file", "/big", 1, 10, "2", "t2", {})
    assert not guard.compare(manifest, [other_version])["ok"]


def test_a_room_never_exported_is_refused(world: World) -> None:
    room = world.vdr.find_room("Project Beta")

    verdict = guard.check_room(world.vdr, world.engine, room)

    assert not verdict.ok and verdict.report_id is None
    assert verdict.problem == "no successful export of this room exists"


def test_a_fresh_export_matches_and_a_later_edit_does_not(world: World) -> None:
    report = world.export("Project Alpha")
    room = world.vdr.find_room("Project Alpha")

    verdict = guard.check_room(world.vdr, world.engine, room)
    assert verdict.ok, verdict.problem
    assert (verdict.report_id, verdict.room_etag) == (report.id, room.etag)
    assert verdict.files_live == verdict.files_archived == 7

    scan = world.root / "Project Alpha" / "2 Financial" / "Scan.tif"
    scan.write_bytes(scan.read_bytes()[:-1] + b"!")  # same size, other bytes
    (world.root / "Project Alpha" / "late addition.txt").write_bytes(b"new")
    changed = guard.check_room(world.vdr, world.engine, world.vdr.find_room("Project Alpha"))

    assert not changed.ok
    assert changed.changed == ["/2 Financial/Scan.tif"]
    assert changed.added == ["/late addition.txt"]
    assert changed.report_id == report.id


def test_a_deleted_file_blocks_the_purge_too(world: World) -> None:
    world.export("Project Beta")
    (world.root / "Project Beta" / "readme.txt").unlink()

    verdict = guard.check_room(world.vdr, world.engine, world.vdr.find_room("Project Beta"))

    assert not verdict.ok and verdict.missing == ["/readme.txt"]


def test_an_unreadable_manifest_is_refused(world: World) -> None:
    report = world.export("Project Beta")
    for location in report.manifest_locations:
        os.remove(location)

    verdict = guard.check_room(world.vdr, world.engine, world.vdr.find_room("Project Beta"))

    assert not verdict.ok and "cannot be read" in (verdict.problem or "")


def test_the_manifest_is_read_from_s3_when_the_local_copy_is_gone(
        world: World, s3_env: str, tmp_path: Path) -> None:
    report = world.export("Project Beta")
    local = Path(report.manifest_locations[0])
    key = "exports/beta/manifest.jsonl"
    boto3.client("s3").put_object(Bucket=s3_env, Key=key, Body=local.read_bytes())
    locations = [str(tmp_path / "nowhere" / "manifest.jsonl"), f"s3://{s3_env}/{key}"]

    entries = guard.read_manifest(locations)

    assert entries is not None and len(entries) == 3
    assert sorted(e.original_path for e in entries) == \
        ["/NDA.pdf", "/Q&A/Buyer questions.xlsx", "/readme.txt"]
