"""Jobs, reports and the audit log in SQL (SQLAlchemy 2, migrated by Alembic).

SQLite by default; PostgreSQL when `DATABASE_URL` points at one. Every function takes the
engine explicitly, so tests and the embedded demo pass their own. The schema is brought to
the newest revision the first time `get_engine` hands out an engine for a URL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from jobs._tables import AuditRow, JobRow, ReportRow

__all__ = [
    "AuditEvent",
    "JobKind",
    "JobRecord",
    "JobState",
    "Report",
    "audit",
    "get_engine",
    "get_report",
    "list_audit",
    "list_reports",
    "migrate",
]

log = logging.getLogger("vdr.jobs.store")

JobKind = Literal["export", "trash", "restore", "purge"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")

_MIGRATION_LOCK_ID = 0x76647201
"""PostgreSQL advisory lock taken while migrating, so two processes never migrate at once."""

_engines: dict[str, sa.Engine] = {}
_engine_pids: dict[str, int] = {}
_engines_lock = threading.Lock()


class JobRecord(BaseModel):
    """A job as the bot and the CLI see it."""

    id: str
    kind: JobKind
    room_id: str
    room_name: str
    requested_by: str
    state: JobState
    destinations: list[str]
    origin: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    error: str | None = None


class Report(BaseModel):
    """The final account of a job: what was asked, what happened, where the manifest is."""

    id: str
    job_id: str
    kind: JobKind
    room_id: str
    room_name: str
    requested_by: str
    state: JobState
    destinations: list[str]
    files_total: int = 0
    files_done: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    retries: int = 0
    duration_s: float = 0.0
    failures: list[dict[str, str]] = Field(default_factory=list)
    retried: list[dict[str, Any]] = Field(
        default_factory=list, description="What was retried: path, reason, count."
    )
    manifest_locations: list[str] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime
    finished_at: datetime


class AuditEvent(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def get_engine(database_url: str | None = None) -> sa.Engine:
    """The engine for `database_url` (default: `DATABASE_URL`), migrated to head; cached per URL."""
    if database_url is None:
        from vdr_ops.settings import get_settings

        database_url = get_settings().database_url
    with _engines_lock:
        engine = _engines.get(database_url)
        if engine is None:
            engine = _create_engine(database_url)
            migrate(engine)
            _engines[database_url] = engine
        elif _engine_pids.get(database_url) != os.getpid():
            engine.dispose(close=False)  # a forked child (RQ's work horse) opens its own
        _engine_pids[database_url] = os.getpid()
    return engine


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (what `vdr db upgrade` runs).

    Safe when several processes start at once: PostgreSQL serialises them with an advisory
    lock; on SQLite the loser of the race finds the schema already there and stops.
    """
    for attempt in range(3):
        try:
            _upgrade(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            if attempt == 2 or engine.dialect.name != "sqlite":
                raise
            time.sleep(0.5)


def _upgrade(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = sa.text("SELECT pg_advisory_xact_lock(:id)")
            connection.execute(lock, {"id": _MIGRATION_LOCK_ID})
        if _current_revision(connection) == head_revision():
            return
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    log.info("database %s migrated to %s", engine.url.render_as_string(), head_revision())


def current_revision(engine: sa.Engine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        return _current_revision(connection)


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def new_id() -> str:
    """A short random id, easy to type in Slack."""
    return uuid.uuid4().hex[:12]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- jobs -------------------------------------------------------------------------------------


def insert_job(
    engine: sa.Engine, record: JobRecord, *, params: dict[str, Any]
) -> tuple[JobRecord, bool]:
    """Store a new job; with an idempotency key already used, return that job instead.

    Returns the stored record and whether it was created by this call.
    """
    if record.idempotency_key:
        existing = _job_by_key(engine, record.idempotency_key)
        if existing is not None:
            return existing, False
    row = JobRow(**record.model_dump(), params=params)
    try:
        with Session(engine) as session, session.begin():
            session.add(row)
    except sa.exc.IntegrityError:
        if record.idempotency_key is None:
            raise
        existing = _job_by_key(engine, record.idempotency_key)  # lost a race with a twin call
        if existing is None:
            raise
        return existing, False
    return record, True


def get_job(engine: sa.Engine, job_id: str) -> JobRecord | None:
    with Session(engine) as session:
        row = session.get(JobRow, job_id)
        return _job_record(row) if row else None


def job_params(engine: sa.Engine, job_id: str) -> dict[str, Any]:
    """The parameters the job was queued with (room, destinations, limits)."""
    with Session(engine) as session:
        row = session.get(JobRow, job_id)
        if row is None:
            from jobs.errors import JobNotFound

            raise JobNotFound(f"no job {job_id!r}")
        return dict(row.params)


def list_jobs(engine: sa.Engine, *, active_only: bool = True, limit: int = 20) -> list[JobRecord]:
    query = sa.select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
    if active_only:
        query = query.where(JobRow.state.in_(ACTIVE_STATES))
    with Session(engine) as session:
        return [_job_record(row) for row in session.scalars(query)]


def find_active_job(engine: sa.Engine, room_id: str, destinations: list[str]) -> JobRecord | None:
    """A queued or running export of `room_id` to any of these destinations: two jobs writing
    the same files (and cleaning up each other's uploads) would waste both."""
    query = sa.select(JobRow).where(JobRow.room_id == room_id, JobRow.state.in_(ACTIVE_STATES))
    with Session(engine) as session:
        for row in session.scalars(query):
            if set(row.destinations) & set(destinations):
                return _job_record(row)
    return None


def set_job_state(
    engine: sa.Engine,
    job_id: str,
    state: JobState,
    *,
    error: str | None = None,
    only_from: tuple[str, ...] | None = None,
) -> bool:
    """Move a job to `state` (stamping start or finish times); False if `only_from` excluded it."""
    values: dict[str, Any] = {"state": state}
    if state == "running":
        values["started_at"] = sa.func.coalesce(JobRow.started_at, utcnow())
    if state in ("succeeded", "failed", "cancelled"):
        values["finished_at"] = utcnow()
    if error is not None:
        values["error"] = error
    statement = sa.update(JobRow).where(JobRow.id == job_id).values(**values)
    if only_from is not None:
        statement = statement.where(JobRow.state.in_(only_from))
    with engine.begin() as connection:
        return connection.execute(statement).rowcount > 0


# --- reports ----------------------------------------------------------------------------------


def save_report(engine: sa.Engine, report: Report) -> Report:
    """Store the report of a job; a second report for the same job replaces the first."""
    with Session(engine) as session, session.begin():
        _replace_report(session, report)
    return report


def _replace_report(session: Session, report: Report) -> None:
    """Store `report` in place of any earlier report of its job."""
    existing = session.scalars(sa.select(ReportRow).where(ReportRow.job_id == report.job_id))
    for row in existing:
        session.delete(row)
    session.flush()
    session.add(ReportRow(**report.model_dump()))


def close_job(engine: sa.Engine, report: Report) -> Report:
    """End the report's job with it, once; the report that stands.

    In one transaction the job moves from queued or running to the report's state, and the
    report is stored. A job already over keeps the report it has: a late retry of one of its
    tasks must not rewrite how and when it ended."""
    values: dict[str, Any] = {"state": report.state, "finished_at": utcnow()}
    if report.error is not None:
        values["error"] = report.error
    ending = sa.update(JobRow).where(JobRow.id == report.job_id, JobRow.state.in_(ACTIVE_STATES))
    with Session(engine) as session, session.begin():
        if session.connection().execute(ending.values(**values)).rowcount == 0:
            standing = session.scalars(
                sa.select(ReportRow).where(ReportRow.job_id == report.job_id)
            ).first()
            if standing is not None:
                return _report(standing)
        _replace_report(session, report)
    return report


def list_reports(engine: sa.Engine, *, room: str | None = None, limit: int = 20) -> list[Report]:
    """Newest reports first; `room` matches a room id or (case-insensitively) part of its name."""
    query = sa.select(ReportRow).order_by(ReportRow.finished_at.desc()).limit(limit)
    if room:
        pattern = f"%{_escape_like(room.lower())}%"
        by_name = sa.func.lower(ReportRow.room_name).like(pattern, "\\")
        query = query.where(sa.or_(ReportRow.room_id == room, by_name))
    with Session(engine) as session:
        return [_report(row) for row in session.scalars(query)]


def get_report(engine: sa.Engine, report_id: str) -> Report | None:
    """A report by its own id or by its job's id."""
    query = sa.select(ReportRow).where(
        sa.or_(ReportRow.id == report_id, ReportRow.job_id == report_id)
    )
    with Session(engine) as session:
        row = session.scalars(query).first()
        return _report(row) if row else None


# --- audit ------------------------------------------------------------------------------------


def audit(
    engine: sa.Engine, *, actor: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Append one line to the audit log (never updated, never deleted)."""
    with Session(engine) as session, session.begin():
        session.add(AuditRow(at=utcnow(), actor=actor, action=action, target=target, detail=detail))
    log.info("audit: %s %s %s", actor, action, target)


def list_audit(
    engine: sa.Engine, *, target: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    """Newest audit events first, optionally only those about `target`."""
    query = sa.select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditRow.target == target)
    with Session(engine) as session:
        return [_audit_event(row) for row in session.scalars(query)]


# --- helpers ----------------------------------------------------------------------------------


def create_engine(database_url: str) -> sa.Engine:
    """A new engine, not migrated and not cached (`vdr db` uses it)."""
    return _create_engine(database_url)


def _create_engine(database_url: str) -> sa.Engine:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        poolclass=sa.pool.StaticPool if in_memory else None,
    )
    sa.event.listen(engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets workers read while another writes; a busy timeout makes writers queue up."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "jobs:migrations")
    return config


def _current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def find_job_by_key(engine: sa.Engine, key: str) -> JobRecord | None:
    """The job queued with this idempotency key, if any."""
    return _job_by_key(engine, key)


def _job_by_key(engine: sa.Engine, key: str) -> JobRecord | None:
    with Session(engine) as session:
        row = session.scalars(sa.select(JobRow).where(JobRow.idempotency_key == key)).first()
        return _job_record(row) if row else None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _job_record(row: JobRow) -> JobRecord:
    fields = {name: getattr(row, name) for name in JobRecord.model_fields}
    for name in ("created_at", "started_at", "finished_at"):
        fields[name] = _aware(fields[name])
    return JobRecord.model_validate(fields)


def _report(row: ReportRow) -> Report:
    fields = {name: getattr(row, name) for name in Report.model_fields}
    fields["created_at"] = _aware(row.created_at)
    fields["finished_at"] = _aware(row.finished_at)
    return Report.model_validate(fields)


def _audit_event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        id=row.id, at=_aware(row.at) or row.at, actor=row.actor, action=row.action,
        target=row.target, detail=dict(row.detail),
    )
