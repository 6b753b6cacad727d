"""SQL tables of the jobs package (SQLAlchemy 2 declarative); Alembic migrations mirror them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: sa.JSON, list[Any]: sa.JSON}


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    room_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    room_name: Mapped[str] = mapped_column(sa.String(1000))
    requested_by: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    destinations: Mapped[list[Any]] = mapped_column(sa.JSON)
    origin: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class ReportRow(Base):
    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id"), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    room_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    room_name: Mapped[str] = mapped_column(sa.String(1000))
    requested_by: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16))
    destinations: Mapped[list[Any]] = mapped_column(sa.JSON)
    files_total: Mapped[int] = mapped_column(sa.Integer)
    files_done: Mapped[int] = mapped_column(sa.Integer)
    files_skipped: Mapped[int] = mapped_column(sa.Integer)
    files_failed: Mapped[int] = mapped_column(sa.Integer)
    bytes_total: Mapped[int] = mapped_column(sa.BigInteger)
    bytes_done: Mapped[int] = mapped_column(sa.BigInteger)
    retries: Mapped[int] = mapped_column(sa.Integer)
    duration_s: Mapped[float] = mapped_column(sa.Float)
    failures: Mapped[list[Any]] = mapped_column(sa.JSON)
    retried: Mapped[list[Any]] = mapped_column(sa.JSON)
    manifest_locations: Mapped[list[Any]] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str] = mapped_column(sa.String(1000), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class RuntimeSettingsRow(Base):
    __tablename__ = "runtime_settings"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(sa.String(200))
