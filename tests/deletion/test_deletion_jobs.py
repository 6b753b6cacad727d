"""Deletion jobs run by `vdr worker` against the proxy: what they remove, restore and refuse."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from jobs import approvals, deletion, store
from jobs.guard import LiveItem
from proxy import ProxyServer, RoomSpec, SyntheticBackend
from tests.deletion.conftest import (
    REQUESTER,
    World,
    every_path,
    start_worker,
    stop_worker,
    tree_bytes,
)
from tests.fixtures.proxy import DIRECTORY_ROOM_FILES
from vdr_client import NotFound, VdrClient
from vdr_ops.defaults import QUEUE_NAME

APPROVER = "U0APPR001"


def approved_job(engine: Any, redis: Redis, vdr: VdrClient, action: str, room_name: str,
                 override_id: str | None = None,
                 send: bool = True) -> tuple[approvals.Approval, store.JobRecord]:
    """A request by the operator, approved by someone else, sent to the queue."""
    room = vdr.find_room(room_name)
    facts = approvals.request_facts(action, room, price_per_gb_month=0.25)  # type: ignore[arg-type]
    request = approvals.create_request(engine, action=action, room=room,  # type: ignore[arg-type]
                                       requested_by=REQUESTER, expiry_minutes=30, facts=facts,
                                       override_id=override_id)
    decision = approvals.decide(engine, request.id, actor=APPROVER, approve=True)
    assert decision.job is not None
    if send:
        assert deletion.enqueue(redis, decision.job.id)
        assert not deletion.enqueue(redis, decision.job.id)  # a second send is refused
    return request, decision.job


def actions_of(engine: Any, approval_id: str) -> list[str]:
    return [event.action for event in approvals.history(engine, approval_id)]


def test_purge_of_a_directory_room_leaves_no_trace_on_disk(world: World, worker: Any) -> None:
    world.export("Project Beta")
    beta = world.vdr.find_room("Project Beta")
    alpha_before = {path: data for path, data in tree_bytes(world.root).items()
                    if path.startswith("Project Alpha")}
    request, job = approved_job(world.engine, world.redis, world.vdr, "purge", "Project Beta")

    world.wait_for_job(job.id)

    report = store.get_report(world.engine, job.id)
    assert report is not None and report.state == "succeeded", report
    assert (report.files_done, report.bytes_done) == (3, beta.size.total_bytes)
    with pytest.raises(NotFound):
        world.vdr.get_room(beta.id)
    assert not any("Beta" in path or "NDA" in path or "Buyer" in path
                   for path in every_path(world.root))
    beta_bytes = [v for k, v in DIRECTORY_ROOM_FILES.items() if k.startswith("Project Beta/")]
    for path in world.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(b and b in data for b in beta_bytes), path
    assert "Project Beta" not in (world.root / ".vdr" / "state.json").read_text()
    assert tree_bytes(world.root) == alpha_before

    assert actions_of(world.engine, request.id) == [
        "approval.requested", "approval.approved", "deletion.started", "guard.checked",
        "room.trashed", "room.purge_sent", "room.gone", "room.purged", "deletion.succeeded"]
    purged = next(e for e in approvals.history(world.engine, request.id)
                  if e.action == "room.purged")
    assert (purged.detail["files"], purged.detail["bytes"]) == (3, beta.size.total_bytes)
    assert purged.detail["manifest_locations"] == report.manifest_locations
    assert (purged.detail["requested_by"], purged.detail["approved_by"]) == (REQUESTER, APPROVER)


def test_restore_of_a_trashed_room_brings_back_every_byte(world: World, worker: Any) -> None:
    before = tree_bytes(world.root)
    trash_request, trash_job = approved_job(world.engine, world.redis, world.vdr, "trash",
                                            "Project Alpha")
    world.wait_for_job(trash_job.id)

    assert store.get_job(world.engine, trash_job.id).state == "succeeded"  # type: ignore[union-attr]
    assert not (world.root / "Project Alpha").exists()
    assert world.vdr.find_room("Project Alpha").status == "trashed"

    restore_request, restore_job = approved_job(world.engine, world.redis, world.vdr, "restore",
                                                "Project Alpha")
    world.wait_for_job(restore_job.id)

    assert store.get_job(world.engine, restore_job.id).state == "succeeded"  # type: ignore[union-attr]
    assert tree_bytes(world.root) == before
    assert (world.root / "Project Alpha" / "3 Empty Folder").is_dir()
    assert world.vdr.find_room("Project Alpha").status == "active"
    assert "room.trashed" in actions_of(world.engine, trash_request.id)
    assert "room.restored" in actions_of(world.engine, restore_request.id)


def test_a_room_changed_after_the_request_is_not_purged(world: World, worker: Any) -> None:
    world.export("Project Beta")
    request, job = approved_job(world.engine, world.redis, world.vdr, "purge", "Project Beta")
    (world.root / "Project Beta" / "readme.txt").write_bytes(b"edited after the export\n")

    world.wait_for_job(job.id)

    report = store.get_report(world.engine, job.id)
    assert report is not None and report.state == "failed"
    assert "changed after the purge was requested" in (report.error or "")
    assert world.vdr.find_room("Project Beta").status == "active"
    assert (world.root / "Project Beta" / "NDA.pdf").is_file()
    assert "purge.refused" in actions_of(world.engine, request.id)
    assert "room.purge_sent" not in actions_of(world.engine, request.id)


def test_a_room_edited_then_requested_again_is_still_refused_by_the_guard(
        world: World, worker: Any) -> None:
    world.export("Project Beta")
    (world.root / "Project Beta" / "readme.txt").write_bytes(b"edited after the export\n")
    request, job = approved_job(world.engine, world.redis, world.vdr, "purge", "Project Beta")

    world.wait_for_job(job.id)

    report = store.get_report(world.engine, job.id)
    assert report is not None and report.state == "failed"
    expected = "purge blocked: the room differs from its export: 1 item(s) changed"
    assert expected in (report.error or "")
    assert (world.root / "Project Beta" / "readme.txt").read_bytes() == \
        b"edited after the export\n"
    checked = next(e for e in approvals.history(world.engine, request.id)
                   if e.action == "guard.checked")
    assert checked.detail["ok"] is False and checked.detail["counts"]["changed"] == 1


def test_an_overridden_purge_records_what_it_removed(world: World, worker: Any) -> None:
    beta = world.vdr.find_room("Project Beta")
    override = approvals.record_override(world.engine, admin="U0ADMIN01", room=beta,
                                         typed_name="Project Beta", reason="paper archive",
                                         guard_problem="no export")
    request, job = approved_job(world.engine, world.redis, world.vdr, "purge", "Project Beta",
                                override_id=override.id)

    world.wait_for_job(job.id)

    assert store.get_job(world.engine, job.id).state == "succeeded"  # type: ignore[union-attr]
    assert not any("Beta" in path for path in every_path(world.root))
    events = approvals.history(world.engine, request.id)
    assert [e.action for e in events][:2] == ["override.recorded", "approval.requested"]
    purged = next(e for e in events if e.action == "room.purged")
    assert sorted(purged.detail["paths"]) == \
        ["/NDA.pdf", "/Q&A", "/Q&A/Buyer questions.xlsx", "/readme.txt"]
    assert purged.detail["manifest_locations"] == []


@pytest.mark.parametrize("mode", ["by_items", "native"])
def test_synthetic_rooms_are_purged_natively_or_from_the_leaves_up(
        mode: str, make_proxy: Callable[..., ProxyServer], redis_url: str, sqlite_url: str,
        sqlite_engine: Any, tmp_path: Any) -> None:
    spec = RoomSpec("Project Kestrel", files=120, file_size=900, folders=9, depth=3)
    server = make_proxy(SyntheticBackend(seed=11, rooms=0, specs=[spec], room_purge=mode))
    redis = Redis.from_url(redis_url)
    world = World(tmp_path, tmp_path / "exports", None, server.url, VdrClient(server.url),
                  redis, redis_url, sqlite_engine, sqlite_url)
    world.export("Project Kestrel")
    request, job = approved_job(sqlite_engine, redis, world.vdr, "purge", "Project Kestrel")

    process = start_worker(world, tmp_path / "worker.log")
    try:
        world.wait_for_job(job.id)
    finally:
        stop_worker(process)

    report = store.get_report(sqlite_engine, job.id)
    assert report is not None and report.state == "succeeded", report
    assert report.files_done == 120
    assert world.vdr.search_rooms_page(query="Kestrel").items == []
    events = approvals.history(sqlite_engine, request.id)
    levels = [e.detail["level"] for e in events if e.action == "items.purged"]
    if mode == "native":
        assert levels == []
    else:
        assert levels[0] == "files" and len(levels) >= 2
        depths = [int(level.rsplit(" ", 1)[1]) for level in levels[1:]]
        assert depths == sorted(depths, reverse=True)
        files_level = next(e for e in events if e.detail.get("level") == "files")
        assert files_level.detail["items"] == 120 and _folders(events) >= 9
    redis.close()


def _folders(events: list[store.AuditEvent]) -> int:
    return sum(e.detail["items"] for e in events
               if e.action == "items.purged" and e.detail["level"] != "files")


def test_a_backend_that_cannot_purge_refuses_without_touching_the_room(
        make_proxy: Callable[..., ProxyServer], redis_url: str, sqlite_url: str,
        sqlite_engine: Any, tmp_path: Any) -> None:
    spec = RoomSpec("Project Wren", files=10, file_size=100)
    server = make_proxy(SyntheticBackend(seed=3, rooms=0, specs=[spec], room_purge="none"))
    redis = Redis.from_url(redis_url)
    vdr = VdrClient(server.url)
    world = World(tmp_path, tmp_path / "exports", None, server.url, vdr, redis, redis_url,
                  sqlite_engine, sqlite_url)
    world.export("Project Wren")
    _, job = approved_job(sqlite_engine, redis, vdr, "purge", "Project Wren")

    process = start_worker(world, tmp_path / "worker.log")
    try:
        world.wait_for_job(job.id)
    finally:
        stop_worker(process)

    report = store.get_report(sqlite_engine, job.id)
    assert report is not None and report.state == "failed"
    assert "cannot purge rooms" in (report.error or "")
    assert vdr.find_room("Project Wren").status == "active"
    redis.close()


def test_a_job_cancelled_before_it_started_does_nothing(world: World, tmp_path: Any) -> None:
    from jobs.api import cancel_job

    _, job = approved_job(world.engine, world.redis, world.vdr, "trash", "Project Beta",
                          send=False)
    answered = cancel_job(job.id, actor="U0OPER001", redis=world.redis, engine=world.engine)
    deletion.enqueue(world.redis, job.id)

    assert answered.id == job.id
    assert [event.action for event in store.list_audit(world.engine, target=job.room_id)
            if event.action.endswith(".cancel")] == ["trash.cancel"]

    process = start_worker(world, tmp_path / "worker.log")
    try:
        world.wait_for_job(job.id)
    finally:
        stop_worker(process)

    assert store.get_job(world.engine, job.id).state == "cancelled"  # type: ignore[union-attr]
    assert world.vdr.find_room("Project Beta").status == "active"


def test_one_job_per_approval_reaches_the_queue(world: World) -> None:
    _, job = approved_job(world.engine, world.redis, world.vdr, "trash", "Project Beta")

    queued = Queue(QUEUE_NAME, connection=world.redis).jobs

    assert [j.args for j in queued] == [(job.id,)]
    assert json.loads(json.dumps(store.job_params(world.engine, job.id)))["action"] == "trash"


def test_purge_levels_go_from_the_leaves_up() -> None:
    def item(path: str, kind: str) -> LiveItem:
        return LiveItem(path, kind, path, path.count("/"), 1, "1", "t", {})

    items = [item("/a", "folder"), item("/a/b", "folder"), item("/a/b/c", "folder"),
             item("/a/b/c/f1", "file"), item("/a/f2", "file"), item("/d", "folder"),
             item("/l", "other")]

    levels = deletion.purge_levels(items)

    assert [(name, sorted(i.path for i in level)) for name, level in levels] == [
        ("files", ["/a/b/c/f1", "/a/f2", "/l"]),
        ("folders at depth 3", ["/a/b/c"]),
        ("folders at depth 2", ["/a/b"]),
        ("folders at depth 1", ["/a", "/d"]),
    ]
