"""Background jobs of vdr-ops: the verified, resumable export engine, its RQ tasks, reports
and the audit log in SQL.

What other packages use (see briefs/jobs_api.md):

- `jobs.api`: enqueue_export, run_export, get_job, list_jobs, cancel_job, read_progress
- `jobs.store`: get_engine, migrate, JobRecord, Report, list_reports, get_report, audit, list_audit
- `jobs.runtime_settings`: RuntimeSettings, load_runtime_settings, save_runtime_settings
- `jobs.tasks`: the RQ entry points (run_export_plan, run_export_shard, run_export_finalize)
- `jobs.cli`: `vdr export`, `vdr reports`, `vdr report`, `vdr worker`, `vdr db`

How an export runs: `plan` lists the room and cuts it into shards (`jobs.plan`), each shard's
files are moved by `jobs.transfer` (one download teed to `jobs.local_dest` and `jobs.s3_dest`),
and `finalize` writes the manifest (`jobs.manifest`) and the report. Shared state lives in Redis
(`jobs.state`, `jobs.progress`); the steps and their leases are in `jobs.engine`.
"""
