"""Approval requests in SQL (SQLite and PostgreSQL): four eyes, one decision, expiry, overrides."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jobs import approvals, store
from jobs.approvals import ApprovalRow
from vdr_client import Room

REQUESTER, APPROVER, OTHER = "U0REQ", "U0APPR1", "U0APPR2"


def make_room(name: str = "Project Falcon", **changes: Any) -> Room:
    data: dict[str, Any] = {
        "id": f"rm-{uuid.uuid4().hex[:10]}", "name": name, "status": "active",
        "owner": {"id": "o1", "name": "Dana", "email": "dana@example.test"},
        "created_at": "2023-01-01T00:00:00Z", "last_activity_at": "2024-02-01T00:00:00Z",
        "size": {"active_bytes": 3 * 1024**3, "deleted_bytes": 1024**3,
                 "total_bytes": 4 * 1024**3},
        "file_count": 1200, "folder_count": 40, "root_folder_id": "fo-root", "etag": "e1",
    }
    data.update(changes)
    return Room.model_validate(data)


def new_request(engine: Any, room: Room, action: str = "purge", minutes: int = 60,
                **kwargs: Any) -> approvals.Approval:
    facts = approvals.request_facts(action, room, price_per_gb_month=0.5)  # type: ignore[arg-type]
    return approvals.create_request(engine, action=action, room=room,  # type: ignore[arg-type]
                                    requested_by=REQUESTER, expiry_minutes=minutes, facts=facts,
                                    **kwargs)


def jobs_of(engine: Any, approval_id: str) -> list[store.JobRecord]:
    key = f"approval:{approval_id}"
    return [job for job in store.list_jobs(engine, active_only=False, limit=1000)
            if job.idempotency_key == key]


def test_the_requester_cannot_approve_their_own_request(any_engine: Any) -> None:
    room = make_room()
    request = new_request(any_engine, room)

    decision = approvals.decide(any_engine, request.id, actor=REQUESTER, approve=True)

    assert decision.outcome == "own_request" and not decision.changed
    assert approvals.get_request(any_engine, request.id).state == "pending"  # type: ignore[union-attr]
    assert jobs_of(any_engine, request.id) == []
    denied = [e for e in approvals.history(any_engine, request.id)
              if e.action == "approval.denied"]
    assert [(e.actor, e.detail["reason"]) for e in denied] == [(REQUESTER, "own request")]


def test_the_first_decision_wins_and_a_second_click_changes_nothing(any_engine: Any) -> None:
    request = new_request(any_engine, make_room())

    first = approvals.decide(any_engine, request.id, actor=APPROVER, approve=True)
    second = approvals.decide(any_engine, request.id, actor=OTHER, approve=False)

    assert first.outcome == "approved" and first.job is not None
    assert first.approval.decided_by == APPROVER  # type: ignore[union-attr]
    assert second.outcome == "already_decided" and second.job is None
    stored = approvals.get_request(any_engine, request.id)
    assert stored is not None and (stored.state, stored.decided_by) == ("approved", APPROVER)
    assert stored.job_id == first.job.id
    job = store.get_job(any_engine, first.job.id)
    assert job is not None and (job.kind, job.state, job.requested_by) == \
        ("purge", "queued", REQUESTER)
    params = store.job_params(any_engine, job.id)
    assert params["approved_by"] == APPROVER and params["room_etag"] == "e1"


def test_a_rejection_creates_no_job(any_engine: Any) -> None:
    request = new_request(any_engine, make_room(), action="trash")

    decision = approvals.decide(any_engine, request.id, actor=APPROVER, approve=False)

    assert decision.outcome == "rejected" and decision.job is None
    assert jobs_of(any_engine, request.id) == []


@pytest.mark.parametrize("rounds", [6])
def test_approvers_clicking_at_once_produce_one_job(any_engine: Any, rounds: int) -> None:
    for _ in range(rounds):
        request = new_request(any_engine, make_room())
        clickers = [f"U0APPR{n:02d}" for n in range(8)]
        outcomes = click_at_once(any_engine, request.id, clickers)

        assert sorted(outcomes) == ["already_decided"] * 7 + ["approved"]
        assert len(jobs_of(any_engine, request.id)) == 1


def click_at_once(engine: Any, request_id: str, clickers: list[str]) -> list[str]:
    """Every clicker decides in its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(clickers))
    outcomes: list[str] = []

    def click(actor: str) -> None:
        barrier.wait()
        outcomes.append(approvals.decide(engine, request_id, actor=actor, approve=True).outcome)

    threads = [threading.Thread(target=click, args=(actor,)) for actor in clickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_an_expired_request_does_nothing(any_engine: Any) -> None:
    request = new_request(any_engine, make_room(), minutes=5)
    later = datetime.now(UTC) + timedelta(minutes=6)

    decision = approvals.decide(any_engine, request.id, actor=APPROVER, approve=True, now=later)

    assert decision.outcome == "expired" and decision.job is None
    assert approvals.get_request(any_engine, request.id).state == "expired"  # type: ignore[union-attr]
    assert jobs_of(any_engine, request.id) == []
    again = approvals.decide(any_engine, request.id, actor=OTHER, approve=True)
    assert again.outcome == "expired" and again.job is None


def test_expire_due_marks_only_requests_past_their_time(any_engine: Any) -> None:
    old = new_request(any_engine, make_room(), minutes=1)
    fresh = new_request(any_engine, make_room(), minutes=60)
    with any_engine.begin() as connection:
        connection.execute(sa.update(ApprovalRow).where(ApprovalRow.id == old.id).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    expired = approvals.expire_due(any_engine)

    assert old.id in [a.id for a in expired] and fresh.id not in [a.id for a in expired]
    assert approvals.get_request(any_engine, fresh.id).state == "pending"  # type: ignore[union-attr]
    assert approvals.expire_due(any_engine) == []


def test_pending_for_finds_a_waiting_request_of_the_same_action(any_engine: Any) -> None:
    room = make_room()
    request = new_request(any_engine, room, action="trash")

    assert approvals.pending_for(any_engine, room.id, "trash").id == request.id  # type: ignore[union-attr]
    assert approvals.pending_for(any_engine, room.id, "purge") is None


def test_an_override_needs_the_exact_room_name(any_engine: Any) -> None:
    room = make_room("Project Falcon ")
    for typed in ("Project Falcon", "project falcon ", "Project  Falcon ", ""):
        with pytest.raises(approvals.OverrideRefused):
            approvals.record_override(any_engine, admin="U0ADMIN", room=room, typed_name=typed,
                                      reason="archived offline", guard_problem="no export")

    override = approvals.record_override(any_engine, admin="U0ADMIN", room=room,
                                         typed_name="Project Falcon ", reason="archived offline",
                                         guard_problem="no export")

    events = store.list_audit(any_engine, target=room.id)
    assert [e.action for e in events].count("override.refused") == 4
    assert approvals.get_override(any_engine, override.id) == override
    request = new_request(any_engine, room, override_id=override.id)
    assert [e.action for e in approvals.history(any_engine, request.id)] == \
        ["override.recorded", "approval.requested"]


def test_purge_facts_count_the_storage_saved_and_trash_saves_none() -> None:
    room = make_room()

    purge = approvals.request_facts("purge", room, price_per_gb_month=0.5)
    trash = approvals.request_facts("trash", room, price_per_gb_month=0.5)

    assert purge.monthly_saving == 2.0  # 4 GiB at 0.5 per GB-month
    assert trash.monthly_saving == 0.0
    assert (purge.file_count, purge.total_bytes) == (1200, 4 * 1024**3)
