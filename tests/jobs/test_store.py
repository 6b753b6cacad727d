"""Jobs, reports, audit and runtime settings on real SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import jobs
from jobs import store
from jobs._tables import Base
from jobs.runtime_settings import (
    CACHE_KEY,
    RuntimeSettings,
    load_runtime_settings,
    save_runtime_settings,
)


def make_job(job_id: str, *, key: str | None = None, room: str = "room-1") -> store.JobRecord:
    return store.JobRecord(
        id=job_id, kind="export", room_id=room, room_name="Project Falcon", requested_by="U1",
        state="queued", destinations=["/exports/falcon"], origin={"channel": "C1", "ts": "1.2"},
        created_at=datetime.now(UTC), idempotency_key=key,
    )


def make_report(job_id: str, *, room_name: str = "Project Falcon") -> store.Report:
    now = datetime.now(UTC).replace(microsecond=0)
    return store.Report(
        id=f"r-{job_id}", job_id=job_id, kind="export", room_id="room-1", room_name=room_name,
        requested_by="U1", state="failed", destinations=["/exports/falcon", "s3://b/p/falcon"],
        files_total=10, files_done=9, files_skipped=2, files_failed=1, bytes_total=5_000_000_000,
        bytes_done=4_000_000_000, retries=3, duration_s=12.5,
        failures=[{"path": "/Legal/NDA.pdf", "reason": "sha256 differs from the backend's"}],
        retried=[{"path": "/Legal/NDA.pdf", "reason": "429", "count": 3}],
        manifest_locations=["/exports/falcon/manifest.jsonl"],
        created_at=now - timedelta(seconds=13), finished_at=now,
    )


def test_schema_matches_the_models_after_migration(any_engine: sa.Engine) -> None:
    for module in pkgutil.iter_modules(jobs.__path__):  # every module that declares tables
        importlib.import_module(f"jobs.{module.name}")
    with any_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert diff == []
    assert store.current_revision(any_engine) == store.head_revision()


def test_the_same_report_reads_back_from_sqlite_and_postgresql(
    sqlite_engine: sa.Engine, pg_engine: sa.Engine
) -> None:
    for engine in (sqlite_engine, pg_engine):
        store.insert_job(engine, make_job("j1"), params={"room_id": "room-1"})
        store.save_report(engine, make_report("j1"))

    from_sqlite = store.get_report(sqlite_engine, "r-j1")
    from_postgres = store.get_report(pg_engine, "j1")  # by job id works too

    assert from_sqlite is not None and from_postgres is not None
    assert from_sqlite == from_postgres == make_report("j1").model_copy(
        update={"created_at": from_sqlite.created_at, "finished_at": from_sqlite.finished_at}
    )
    assert from_sqlite.finished_at.tzinfo is not None


def test_reports_are_listed_newest_first_and_filtered_by_room(any_engine: sa.Engine) -> None:
    for index, name in enumerate(["Falcon", "Eagle 100%", "Falcon II"]):
        store.insert_job(any_engine, make_job(f"j{index}"), params={})
        report = make_report(f"j{index}", room_name=name)
        store.save_report(any_engine, report.model_copy(
            update={"finished_at": report.finished_at + timedelta(minutes=index)}
        ))

    newest_first = [r.room_name for r in store.list_reports(any_engine)]
    assert newest_first == ["Falcon II", "Eagle 100%", "Falcon"]
    assert [r.job_id for r in store.list_reports(any_engine, room="falcon")] == ["j2", "j0"]
    assert [r.job_id for r in store.list_reports(any_engine, room="100%")] == ["j1"]
    assert store.list_reports(any_engine, room="_") == []


def test_an_idempotency_key_stores_one_job(any_engine: sa.Engine) -> None:
    first, created = store.insert_job(any_engine, make_job("a", key="view-1"), params={})
    again, created_again = store.insert_job(any_engine, make_job("b", key="view-1"), params={})

    assert created and not created_again
    assert again.id == first.id == "a"
    assert store.get_job(any_engine, "b") is None


def test_racing_inserts_with_one_key_yield_one_job(any_engine: sa.Engine) -> None:
    results: list[str] = []

    def insert(job_id: str) -> None:
        record, _ = store.insert_job(any_engine, make_job(job_id, key="race"), params={})
        results.append(record.id)

    threads = [threading.Thread(target=insert, args=(f"t{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(results)) == 1
    assert len(store.list_jobs(any_engine, active_only=False)) == 1


def test_job_state_moves_only_from_the_states_allowed(any_engine: sa.Engine) -> None:
    store.insert_job(any_engine, make_job("j"), params={})

    assert store.set_job_state(any_engine, "j", "running", only_from=("queued",))
    assert not store.set_job_state(any_engine, "j", "running", only_from=("queued",))
    assert store.set_job_state(any_engine, "j", "succeeded")
    job = store.get_job(any_engine, "j")

    assert job is not None and job.state == "succeeded"
    assert job.started_at is not None and job.finished_at is not None
    assert store.list_jobs(any_engine) == []


def test_audit_log_keeps_events_newest_first(any_engine: sa.Engine) -> None:
    store.audit(any_engine, actor="U1", action="export.request", target="room-1", detail={"a": 1})
    store.audit(any_engine, actor="U2", action="trash.approve", target="room-2", detail={})

    events = store.list_audit(any_engine)

    assert [e.action for e in events] == ["trash.approve", "export.request"]
    assert [e.detail for e in store.list_audit(any_engine, target="room-1")] == [{"a": 1}]


def test_runtime_settings_are_cached_and_invalidated_on_write(
    any_engine: sa.Engine, redis_conn: object
) -> None:
    import redis

    assert isinstance(redis_conn, redis.Redis)
    first = load_runtime_settings(any_engine, redis_conn)
    assert redis_conn.get(CACHE_KEY) is not None

    update = {"s3_bucket": "archive", "s3_prefix": "/vdr/", "concurrency": 8}
    changed = first.model_copy(update=update)
    save_runtime_settings(any_engine, redis_conn, changed, actor="U-admin")

    assert redis_conn.get(CACHE_KEY) is None
    loaded = load_runtime_settings(any_engine, redis_conn)
    assert loaded == changed and loaded.s3_url() == "s3://archive/vdr"
    assert load_runtime_settings(any_engine, None) == changed  # SQL alone agrees
    event = store.list_audit(any_engine, target="runtime-settings")[0]
    assert event.actor == "U-admin"
    assert event.detail == {"s3_bucket": "archive", "s3_prefix": "/vdr/", "concurrency": 8}


def test_runtime_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        RuntimeSettings(concurrency=0)
