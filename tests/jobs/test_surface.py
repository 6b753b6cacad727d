"""The public surface of jobs is what the agreed contract (briefs/jobs_api.md) says it is."""

from __future__ import annotations

import inspect

import pytest

from jobs import api, runtime_settings, store

CONTRACT = {
    store.get_engine: ["database_url"],
    store.migrate: ["engine"],
    store.list_reports: ["engine", "room", "limit"],
    store.get_report: ["engine", "report_id"],
    store.audit: ["engine", "actor", "action", "target", "detail"],
    store.list_audit: ["engine", "target", "limit"],
    runtime_settings.load_runtime_settings: ["engine", "redis"],
    runtime_settings.save_runtime_settings: ["engine", "redis", "settings", "actor"],
    api.enqueue_export: ["room_ref", "to_local", "s3_url", "requested_by", "origin",
                         "idempotency_key", "redis", "engine"],
    api.get_job: ["job_id", "engine"],
    api.list_jobs: ["engine", "active_only", "limit"],
    api.cancel_job: ["job_id", "actor", "redis", "engine"],
    api.read_progress: ["job_id", "redis"],
}


@pytest.mark.parametrize("function", list(CONTRACT), ids=lambda f: f.__qualname__)
def test_contract_functions_take_the_agreed_parameters_first(function: object) -> None:
    names = list(inspect.signature(function).parameters)  # type: ignore[arg-type]

    assert names[: len(CONTRACT[function])] == CONTRACT[function]  # type: ignore[index]


def test_models_carry_the_agreed_fields() -> None:
    job_fields = {"id", "kind", "room_id", "room_name", "requested_by", "state", "destinations",
                  "origin", "created_at", "started_at", "finished_at"}
    report_fields = {"id", "job_id", "kind", "room_id", "room_name", "requested_by", "state",
                     "destinations", "files_total", "files_done", "files_skipped",
                     "files_failed", "bytes_total", "bytes_done", "retries", "duration_s",
                     "failures", "manifest_locations", "created_at", "finished_at"}
    progress_fields = {"files_done", "files_total", "bytes_done", "bytes_total", "retries",
                       "failures", "rate_bps", "eta_s", "state", "updated_at"}
    settings_fields = {"export_root", "s3_bucket", "s3_prefix", "concurrency", "approver_group",
                       "admins", "operators", "viewers", "price_per_gb_month",
                       "approval_expiry_minutes"}

    assert job_fields <= set(store.JobRecord.model_fields)
    assert report_fields <= set(store.Report.model_fields)
    assert progress_fields <= set(api.Progress.model_fields)
    assert settings_fields <= set(runtime_settings.RuntimeSettings.model_fields)
    assert set(api.__all__) >= {"enqueue_export", "get_job", "list_jobs", "cancel_job",
                                "read_progress"}
