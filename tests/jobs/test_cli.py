"""`vdr export`, `vdr reports`, `vdr report`, `vdr db` through click, against real services."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from rq import Queue

from jobs import api, store
from proxy import DirectoryBackend, FaultConfig, ProxyServer
from tests.fixtures.jobs import JobsEnv
from tests.fixtures.proxy import DIRECTORY_ROOM_FILES
from vdr_ops.cli import main
from vdr_ops.settings import get_settings


@pytest.fixture
def cli(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer], directory_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., object]:
    server = make_proxy(DirectoryBackend(directory_root))
    monkeypatch.setenv("VDR_API_URL", server.url)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> object:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return run


def test_vdr_export_runs_inline_and_the_report_is_printed_and_stored(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    result = cli("export", "Project Beta", "--to", str(jobs_env.tmp / "out"),
                 "--s3", f"s3://{jobs_env.bucket}/cli", "--requested-by", "ops")

    output = result.output  # type: ignore[attr-defined]
    assert "succeeded" in output and "files 3/3" in output
    room_dir = next((jobs_env.tmp / "out").iterdir())
    assert (room_dir / "Q&A" / "Buyer questions.xlsx").read_bytes() == DIRECTORY_ROOM_FILES[
        "Project Beta/Q&A/Buyer questions.xlsx"]

    listed = cli("reports", "--json").output  # type: ignore[attr-defined]
    report = json.loads(listed.splitlines()[0])
    assert report["room_name"] == "Project Beta" and report["requested_by"] == "ops"
    shown = json.loads(cli("report", report["job_id"], "--json").output)  # type: ignore[attr-defined]
    assert shown == report
    assert "manifest:" in cli("report", report["id"]).output  # type: ignore[attr-defined]


def test_vdr_export_enqueue_queues_a_job_for_the_workers(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    result = cli("export", "Project Alpha", "--enqueue", "--no-local",
                 "--s3", f"s3://{jobs_env.bucket}/queued")

    output = result.output  # type: ignore[attr-defined]
    assert "queued export job" in output
    job_id = output.split("job ")[1].split()[0]
    assert f"vdr report {job_id}" in output and f"vdr cancel {job_id}" in output
    assert Queue("vdr", connection=jobs_env.redis).count == 1


def test_vdr_export_says_what_to_do_when_the_room_is_ambiguous_or_missing(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    ambiguous = cli("export", "Project", "--to", str(jobs_env.tmp), code=3)
    missing = cli("export", "Nope", "--to", str(jobs_env.tmp), code=3)
    unknown_report = cli("report", "doesnotexist", code=3)

    assert "give the room's id or exact name" in ambiguous.output  # type: ignore[attr-defined]
    assert "no room 'Nope'" in missing.output  # type: ignore[attr-defined]
    assert "vdr reports" in unknown_report.output  # type: ignore[attr-defined]


def test_vdr_db_upgrade_migrates_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    get_settings.cache_clear()
    runner = CliRunner()

    before = json.loads(runner.invoke(main, ["db", "current"]).output)
    upgraded = runner.invoke(main, ["db", "upgrade"])
    after = json.loads(runner.invoke(main, ["db", "current"]).output)
    get_settings.cache_clear()

    assert before["current"] is None
    assert upgraded.exit_code == 0
    assert after["current"] == after["head"] is not None


def _as_if_in_the_foreground() -> None:
    """Ctrl-C as a terminal's foreground job gets it. A suite run as a background job (CI, or
    `... &`) has SIGINT ignored, every child would inherit that, and rightly keep it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_vdr_export_cancels_the_job_and_reports_it(
    jobs_env: JobsEnv, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., object],
) -> None:
    # 200 files, 2 at a time, 200 ms each: 20 s in all, so the interrupt lands mid-export even
    # on a machine slow enough to need seconds to notice the first files.
    server = make_proxy(synthetic_backend(), faults=FaultConfig(latency_ms=200))
    vdr = Path(sys.executable).parent / "vdr"
    env = jobs_env.worker_env(server.url, VDR_EXPORT_CONCURRENCY="2")
    process = subprocess.Popen([str(vdr), "export", "bench-small", "--to", str(jobs_env.tmp)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=_as_if_in_the_foreground)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # mid-export: some files done, most not
        jobs = api.list_jobs(engine=jobs_env.engine)
        if jobs and api.read_progress(jobs[0].id, redis=jobs_env.redis).files_done >= 3:
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail(f"no progress seen: {process.communicate()[0].decode()}")

    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()

    assert process.returncode == 130, output
    report = store.list_reports(jobs_env.engine)[0]
    assert report.state == "cancelled" and report.files_done < report.files_total
    assert "cancelled" in output


def test_a_report_of_an_unfinished_export_says_to_run_it_again_on_unbroken_lines(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    long_path = "/Legal/" + "Share purchase agreement, execution version " * 3 + ".pdf"
    now = datetime.now(UTC)
    failed = store.Report(
        id="r-failed", job_id="j-failed", kind="export", room_id="room-1",
        room_name="Project Falcon", requested_by="U1", state="failed",
        destinations=["/exports/falcon"], files_total=600, files_done=598, files_failed=2,
        failures=[{"path": long_path, "reason": "TransportError: GET timed out after 30 s"}],
        created_at=now, finished_at=now,
    )
    cancelled = failed.model_copy(update={
        "id": "r-cancelled", "job_id": "j-cancelled", "state": "cancelled", "files_done": 384,
        "files_failed": 0, "failures": [],
    })
    for report in (failed, cancelled):
        store.insert_job(jobs_env.engine, store.JobRecord(
            id=report.job_id, kind="export", room_id="room-1", room_name="Project Falcon",
            requested_by="U1", state=report.state, destinations=report.destinations,
            created_at=now,
        ), params={})
        store.save_report(jobs_env.engine, report)

    failed_text = cli("report", "r-failed").output  # type: ignore[attr-defined]
    cancelled_text = cli("report", "r-cancelled").output  # type: ignore[attr-defined]

    assert "fetches only the 2 file(s) that failed" in failed_text
    assert f"failed {long_path}: TransportError: GET timed out after 30 s\n" in failed_text
    assert "run the same export again to finish it" in cancelled_text



def test_a_report_of_an_export_that_ended_before_listing_does_not_read_as_an_empty_room(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    blocker = jobs_env.tmp / "a-file"
    blocker.write_text("not a folder")

    failed = cli("export", "Project Alpha", "--to", str(blocker / "out"), code=1)

    output = failed.output  # type: ignore[attr-defined]
    assert "files: none listed before it ended" in output and "0/0" not in output
    assert "Not a directory" in output and "not tidied" not in output


def test_vdr_report_of_a_running_job_says_where_it_stands_and_how_to_stop_it(
    cli: Callable[..., object], jobs_env: JobsEnv
) -> None:
    queued = cli("export", "Project Alpha", "--enqueue", "--to", str(jobs_env.tmp / "q"))
    job_id = queued.output.split("job ")[1].split()[0]  # type: ignore[attr-defined]

    shown = cli("report", job_id).output  # type: ignore[attr-defined]

    assert f"job {job_id}" in shown and "queued" in shown and "files 0/0" in shown
    assert f"vdr cancel {job_id}" in shown
