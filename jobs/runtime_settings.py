"""The settings admins edit from Slack: one SQL row, cached in Redis, invalidated on write."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from jobs import defaults
from jobs._tables import RuntimeSettingsRow
from jobs.config import EngineConfig
from jobs.store import audit, utcnow

__all__ = ["RuntimeSettings", "load_runtime_settings", "save_runtime_settings"]

log = logging.getLogger("vdr.jobs.settings")

CACHE_KEY = "vdr:runtime-settings"
"""Redis key of the cached row (JSON)."""

CACHE_TTL_S = 3600
"""The cache is a copy: it expires even if an invalidation is ever missed."""

_ROW_ID = 1


class RuntimeSettings(BaseModel):
    """Deployment-wide settings an admin changes without a restart."""

    export_root: str = Field(default_factory=lambda: _process_export_root())
    s3_bucket: str | None = None
    s3_prefix: str = ""
    concurrency: int = Field(
        default_factory=lambda: EngineConfig().concurrency, ge=1, le=defaults.MAX_CONCURRENCY,
        description="Files in flight per export process; default VDR_EXPORT_CONCURRENCY or 16.",
    )
    approver_group: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)
    viewers: list[str] = Field(default_factory=list, description="Empty: everyone may view.")
    price_per_gb_month: float = Field(default=0.25, ge=0)
    approval_expiry_minutes: int = Field(default=60, ge=1)

    def s3_url(self) -> str | None:
        """`s3://bucket/prefix` of the default S3 destination, None when no bucket is set."""
        if not self.s3_bucket:
            return None
        prefix = self.s3_prefix.strip("/")
        return f"s3://{self.s3_bucket}/{prefix}" if prefix else f"s3://{self.s3_bucket}"


def load_runtime_settings(engine: sa.Engine, redis: Redis | None) -> RuntimeSettings:
    """The current settings: from Redis when cached, else from SQL (defaults if never saved)."""
    cached = _read_cache(redis)
    if cached is not None:
        return cached
    with Session(engine) as session:
        row = session.get(RuntimeSettingsRow, _ROW_ID)
        data: dict[str, Any] = dict(row.data) if row else {}
    settings = RuntimeSettings.model_validate(data)
    _write_cache(redis, settings)
    return settings


def save_runtime_settings(
    engine: sa.Engine, redis: Redis | None, settings: RuntimeSettings, *, actor: str
) -> None:
    """Store new settings, drop the cached copy, and audit who changed what."""
    before = load_runtime_settings(engine, redis)
    data = settings.model_dump(mode="json")
    with Session(engine) as session, session.begin():
        row = session.get(RuntimeSettingsRow, _ROW_ID)
        if row is None:
            row = RuntimeSettingsRow(id=_ROW_ID)
            session.add(row)
        row.data, row.updated_at, row.updated_by = data, utcnow(), actor
    _invalidate(redis)
    old = before.model_dump(mode="json")
    changed = {key: value for key, value in data.items() if old[key] != value}
    audit(engine, actor=actor, action="settings.update", target="runtime-settings", detail=changed)


def _read_cache(redis: Redis | None) -> RuntimeSettings | None:
    if redis is None:
        return None
    try:
        raw = redis.get(CACHE_KEY)
    except RedisError as error:
        log.warning("runtime settings cache unreadable, using SQL: %s", error)
        return None
    if raw is None:
        return None
    try:
        return RuntimeSettings.model_validate_json(raw)
    except ValidationError:
        return None  # written by another version; SQL is the truth


def _write_cache(redis: Redis | None, settings: RuntimeSettings) -> None:
    if redis is None:
        return
    try:
        redis.set(CACHE_KEY, settings.model_dump_json(), ex=CACHE_TTL_S)
    except RedisError as error:
        log.warning("runtime settings cache not written: %s", error)


def _invalidate(redis: Redis | None) -> None:
    if redis is not None:
        redis.delete(CACHE_KEY)


def _process_export_root() -> str:
    from vdr_ops.settings import get_settings

    return str(get_settings().export_root)
