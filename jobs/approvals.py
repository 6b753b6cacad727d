"""Four-eyes approval of trash, restore and purge, kept in SQL.

A request is a row of `approval_requests`, pending until a member of the approver group who
is not the requester approves or rejects it, or until it expires. A decision is one
conditional `UPDATE ... WHERE state = 'pending' AND expires_at > now`; the approving UPDATE
inserts the deletion job in the same transaction. However many people click at once, one
decision wins, and a request has at most one job (the job's idempotency key is the request's).

An admin may waive the archive guard of one purge by typing the room's exact name; the waiver
is a row of `deletion_overrides` that the request points to. Every step is in the audit log,
always with the room id as target and the request id in the detail, so `history` can tell
who asked, who decided, what ran and what it removed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Mapped, Session, mapped_column

from jobs import store
from jobs._tables import Base, JobRow
from jobs.errors import InvalidRequest
from jobs.guard import GuardVerdict
from vdr_client import Room

__all__ = [
    "Action",
    "Approval",
    "ApprovalState",
    "Decision",
    "Override",
    "OverrideRefused",
    "RequestFacts",
    "attach_card",
    "create_request",
    "decide",
    "expire_due",
    "get_override",
    "get_request",
    "history",
    "pending_for",
    "record_override",
    "request_facts",
    "withdraw",
]

log = logging.getLogger("vdr.jobs.approvals")

Action = Literal["trash", "restore", "purge"]
ApprovalState = Literal["pending", "approved", "rejected", "expired", "withdrawn"]
Outcome = Literal["approved", "rejected", "expired", "already_decided", "own_request",
                  "not_found"]

GIB = 1024**3
"""Storage is billed per GB-month, a GB being 2^30 bytes."""


class OverrideRefused(InvalidRequest):
    """The name typed to confirm an override is not the room's exact name."""


# --- tables -----------------------------------------------------------------------------------


class OverrideRow(Base):
    __tablename__ = "deletion_overrides"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    admin: Mapped[str] = mapped_column(sa.String(200))
    room_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    room_name: Mapped[str] = mapped_column(sa.String(1000))
    room_etag: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.Text)
    guard_problem: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class ApprovalRow(Base):
    __tablename__ = "approval_requests"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    room_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    room_name: Mapped[str] = mapped_column(sa.String(1000))
    room_etag: Mapped[str] = mapped_column(sa.String(200))
    requested_by: Mapped[str] = mapped_column(sa.String(200))
    requested_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    job_id: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    override_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("deletion_overrides.id"), nullable=True
    )
    origin: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    facts: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


# --- records ----------------------------------------------------------------------------------


class ExportCheck(BaseModel):
    """The guard's verdict as a request card shows it."""

    ok: bool
    problem: str | None = None
    report_id: str | None = None
    export_finished_at: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class RequestFacts(BaseModel):
    """What the approver is shown and agrees to: the room as it was when the request was made."""

    status: str
    owner: str
    total_bytes: int
    deleted_bytes: int
    file_count: int
    folder_count: int
    last_activity_at: datetime
    price_per_gb_month: float
    monthly_saving: float = Field(description="Storage cost per month the action frees.")
    export: ExportCheck | None = None


class Override(BaseModel):
    id: str
    at: datetime
    admin: str
    room_id: str
    room_name: str
    room_etag: str
    reason: str
    guard_problem: str | None = None


class Approval(BaseModel):
    id: str
    action: Action
    room_id: str
    room_name: str
    room_etag: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    state: ApprovalState
    decided_by: str | None = None
    decided_at: datetime | None = None
    job_id: str | None = None
    override_id: str | None = None
    origin: dict[str, Any] | None = None
    facts: RequestFacts


class Decision(BaseModel):
    """What a click on Approve or Reject did: `outcome` says whether it changed anything."""

    outcome: Outcome
    approval: Approval | None = None
    job: store.JobRecord | None = None

    @property
    def changed(self) -> bool:
        return self.outcome in ("approved", "rejected")


# --- requests ---------------------------------------------------------------------------------


def request_facts(
    action: Action, room: Room, *, price_per_gb_month: float, verdict: GuardVerdict | None = None
) -> RequestFacts:
    """The facts of a request card. Only a purge frees storage: a trashed room is still kept."""
    saving = room.size.total_bytes / GIB * price_per_gb_month if action == "purge" else 0.0
    export = None
    if verdict is not None:
        export = ExportCheck(ok=verdict.ok, problem=verdict.problem, report_id=verdict.report_id,
                             export_finished_at=verdict.export_finished_at, counts=verdict.counts)
    return RequestFacts(
        status=room.status, owner=room.owner.name, total_bytes=room.size.total_bytes,
        deleted_bytes=room.size.deleted_bytes, file_count=room.file_count,
        folder_count=room.folder_count, last_activity_at=room.last_activity_at,
        price_per_gb_month=price_per_gb_month, monthly_saving=round(saving, 2), export=export,
    )


def create_request(
    engine: sa.Engine,
    *,
    action: Action,
    room: Room,
    requested_by: str,
    expiry_minutes: int,
    facts: RequestFacts,
    override_id: str | None = None,
    now: datetime | None = None,
) -> Approval:
    """Store a pending request (audited as `approval.requested`)."""
    now = now or store.utcnow()
    row = ApprovalRow(
        id=store.new_id(), action=action, room_id=room.id, room_name=room.name,
        room_etag=room.etag, requested_by=requested_by, requested_at=now,
        expires_at=now + timedelta(minutes=expiry_minutes), state="pending",
        override_id=override_id, facts=facts.model_dump(mode="json"),
    )
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(row)
    approval = _approval(row)
    _audit(engine, approval, requested_by, "approval.requested", {
        "expires_at": approval.expires_at.isoformat(), "room_etag": room.etag,
        "override_id": override_id, "facts": row.facts,
    })
    log.info("approval %s: %s of %s requested by %s", approval.id, action, room.id, requested_by)
    return approval


def attach_card(engine: sa.Engine, approval_id: str, origin: dict[str, Any]) -> None:
    """Remember where the request's card is (channel and ts), so any process can redraw it."""
    statement = sa.update(ApprovalRow).where(ApprovalRow.id == approval_id).values(origin=origin)
    with engine.begin() as connection:
        connection.execute(statement)


def get_request(engine: sa.Engine, approval_id: str) -> Approval | None:
    with Session(engine) as session:
        row = session.get(ApprovalRow, approval_id)
        return _approval(row) if row else None


def pending_for(
    engine: sa.Engine, room_id: str, action: Action, *, now: datetime | None = None
) -> Approval | None:
    """A request for the same action on the same room still waiting for a decision."""
    now = now or store.utcnow()
    query = sa.select(ApprovalRow).where(
        ApprovalRow.room_id == room_id, ApprovalRow.action == action,
        ApprovalRow.state == "pending", ApprovalRow.expires_at > now,
    )
    with Session(engine) as session:
        row = session.scalars(query.limit(1)).first()
        return _approval(row) if row else None


# --- decisions --------------------------------------------------------------------------------


def decide(
    engine: sa.Engine,
    approval_id: str,
    *,
    actor: str,
    approve: bool,
    now: datetime | None = None,
) -> Decision:
    """Approve or reject a pending request; only the first decision counts.

    The caller has checked that `actor` is in the approver group; this refuses the requester
    (four eyes) whatever the caller checked. Approving creates the deletion job (queued, not
    yet sent to a worker: see `jobs.deletion.enqueue`).
    """
    now = now or store.utcnow()
    current = get_request(engine, approval_id)
    if current is None:
        return Decision(outcome="not_found")
    if actor == current.requested_by:
        _audit(engine, current, actor, "approval.denied", {"reason": "own request"})
        return Decision(outcome="own_request", approval=current)

    job = _new_job(current, actor, now) if approve else None
    if _claim(engine, current, actor, approve, now, job):
        decided = get_request(engine, approval_id) or current
        action = "approval.approved" if approve else "approval.rejected"
        _audit(engine, decided, actor, action, {"job_id": job.id if job else None})
        log.info("approval %s %s by %s", approval_id, decided.state, actor)
        return Decision(outcome=decided.state, approval=decided, job=job)
    return _lost(engine, approval_id, actor, now)


def _claim(
    engine: sa.Engine, approval: Approval, actor: str, approve: bool, now: datetime,
    job: store.JobRecord | None,
) -> bool:
    """The conditional update (and the job row, when approving) in one transaction."""
    values: dict[str, Any] = {"state": "approved" if approve else "rejected",
                              "decided_by": actor, "decided_at": now}
    if job is not None:
        values["job_id"] = job.id
    statement = sa.update(ApprovalRow).where(
        ApprovalRow.id == approval.id, ApprovalRow.state == "pending",
        ApprovalRow.expires_at > now,
    ).values(**values)
    with engine.begin() as connection:
        if connection.execute(statement).rowcount != 1:
            return False
        if job is not None:
            params = {"approval_id": approval.id, "action": approval.action,
                      "room_etag": approval.room_etag, "approved_by": actor,
                      "override_id": approval.override_id}
            row = {**job.model_dump(), "params": params}
            connection.execute(sa.insert(JobRow).values(**row))
    return True


def _new_job(approval: Approval, approver: str, now: datetime) -> store.JobRecord:
    return store.JobRecord(
        id=store.new_id(), kind=approval.action, room_id=approval.room_id,
        room_name=approval.room_name, requested_by=approval.requested_by, state="queued",
        destinations=[], created_at=now, idempotency_key=f"approval:{approval.id}",
    )


def _lost(engine: sa.Engine, approval_id: str, actor: str, now: datetime) -> Decision:
    """Why a decision changed nothing: already decided, or expired (marked so now)."""
    latest = get_request(engine, approval_id)
    if latest is None:
        return Decision(outcome="not_found")
    if latest.state == "pending":
        expired = _expire(engine, latest, now) or latest
        _audit(engine, expired, actor, "approval.too_late", {"expired_at":
                                                              expired.expires_at.isoformat()})
        return Decision(outcome="expired", approval=expired)
    _audit(engine, latest, actor, "approval.ignored", {"state": latest.state})
    outcome: Outcome = "already_decided" if latest.decided_by else "expired"
    return Decision(outcome=outcome, approval=latest)


def expire_due(engine: sa.Engine, *, now: datetime | None = None) -> list[Approval]:
    """Mark every pending request past its expiry as expired; returns those this call marked."""
    now = now or store.utcnow()
    query = sa.select(ApprovalRow).where(ApprovalRow.state == "pending",
                                         ApprovalRow.expires_at <= now)
    with Session(engine) as session:
        due = [_approval(row) for row in session.scalars(query)]
    return [expired for approval in due if (expired := _expire(engine, approval, now))]


def _expire(engine: sa.Engine, approval: Approval, now: datetime) -> Approval | None:
    statement = sa.update(ApprovalRow).where(
        ApprovalRow.id == approval.id, ApprovalRow.state == "pending",
        ApprovalRow.expires_at <= now,
    ).values(state="expired")
    with engine.begin() as connection:
        if connection.execute(statement).rowcount != 1:
            return None
    expired = get_request(engine, approval.id)
    if expired is not None:
        _audit(engine, expired, "vdr", "approval.expired", {})
    return expired


def withdraw(engine: sa.Engine, approval_id: str, *, actor: str, reason: str) -> bool:
    """Take back a pending request no one can see (its card could not be posted)."""
    statement = sa.update(ApprovalRow).where(
        ApprovalRow.id == approval_id, ApprovalRow.state == "pending",
    ).values(state="withdrawn")
    with engine.begin() as connection:
        withdrawn = connection.execute(statement).rowcount == 1
    approval = get_request(engine, approval_id)
    if withdrawn and approval is not None:
        _audit(engine, approval, actor, "approval.withdrawn", {"reason": reason})
    return withdrawn


# --- overrides --------------------------------------------------------------------------------


def record_override(
    engine: sa.Engine,
    *,
    admin: str,
    room: Room,
    typed_name: str,
    reason: str,
    guard_problem: str | None,
) -> Override:
    """Record an admin's waiver of the archive guard for one purge of `room`.

    The admin must have typed the room's exact name (case and spaces included); otherwise
    OverrideRefused, and the attempt is audited all the same.
    """
    detail = {"typed_name": typed_name, "room_name": room.name, "reason": reason,
              "guard_problem": guard_problem}
    if typed_name != room.name:
        store.audit(engine, actor=admin, action="override.refused", target=room.id, detail=detail)
        raise OverrideRefused(f"the name typed is not the room's exact name ({room.name!r})")
    row = OverrideRow(id=store.new_id(), at=store.utcnow(), admin=admin, room_id=room.id,
                      room_name=room.name, room_etag=room.etag, reason=reason,
                      guard_problem=guard_problem)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(row)
    store.audit(engine, actor=admin, action="override.recorded", target=room.id,
                detail={**detail, "override_id": row.id, "room_etag": room.etag})
    return _override(row)


def get_override(engine: sa.Engine, override_id: str) -> Override | None:
    with Session(engine) as session:
        row = session.get(OverrideRow, override_id)
        return _override(row) if row else None


# --- history ----------------------------------------------------------------------------------


def history(engine: sa.Engine, approval_id: str, *, limit: int = 1000) -> list[store.AuditEvent]:
    """Every audit event of one request, oldest first: asked, decided, ran, removed."""
    approval = get_request(engine, approval_id)
    if approval is None:
        return []
    events = store.list_audit(engine, target=approval.room_id, limit=limit)
    mine = [event for event in events if event.detail.get("approval_id") == approval_id
            or (approval.override_id and event.detail.get("override_id") == approval.override_id
                and event.action == "override.recorded")]
    return sorted(mine, key=lambda event: event.id)


def _audit(engine: sa.Engine, approval: Approval, actor: str, action: str,
           detail: dict[str, Any]) -> None:
    base = {"approval_id": approval.id, "action": approval.action,
            "room_name": approval.room_name, "requested_by": approval.requested_by}
    store.audit(engine, actor=actor, action=action, target=approval.room_id,
                detail={**base, **detail})


def _approval(row: ApprovalRow) -> Approval:
    fields = {name: getattr(row, name) for name in Approval.model_fields}
    for name in ("requested_at", "expires_at", "decided_at"):
        fields[name] = _aware(fields[name])
    return Approval.model_validate(fields)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _override(row: OverrideRow) -> Override:
    fields = {name: getattr(row, name) for name in Override.model_fields}
    fields["at"] = _aware(row.at)
    return Override.model_validate(fields)
