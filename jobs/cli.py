"""`vdr export`, `vdr cancel`, `vdr reports`, `vdr report`, `vdr worker`, `vdr db`.

Exit codes: 0 done (export succeeded), 1 the export failed or another error, 2 bad usage
(click's), 3 no such room or an ambiguous name, 4 the token was refused, 5 the proxy cannot be
reached, 130 cancelled from the keyboard.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.filesize import decimal as human_size
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from vdr_client import (
    AmbiguousRoom,
    DeadlineExceeded,
    NotFound,
    RetryEvent,
    TransportError,
    Unauthorized,
    VdrClient,
    VdrError,
)
from vdr_ops.output import make_console, unreachable_message
from vdr_ops.params import room_argument

EXIT_FAILED, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 3, 4, 5, 130


def _shown(text: str) -> str:
    """`text` safe to print: control characters (terminal escapes) shown as \\xNN, and rich
    markup escaped. Room names and paths come from the data room, not from us."""
    visible = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return escape(visible)


def _console(stderr: bool = False) -> Console:
    return make_console(stderr=stderr)


def _fail(message: str, code: int) -> click.exceptions.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {_shown(message)}")
    return click.exceptions.Exit(code)


def _services() -> tuple[Any, Any]:
    """Redis and the SQL engine from the process settings; a bad setting ends the command."""

    from vdr_ops.settings import get_settings

    settings = get_settings()
    return _redis(settings.redis_url), _engine(settings.database_url)


def _redis(redis_url: str) -> Any:
    """A Redis client for REDIS_URL, or one line naming it when the URL is not one."""
    from redis import Redis

    try:
        return Redis.from_url(redis_url)
    except ValueError as error:
        raise _fail(f"REDIS_URL is not a Redis URL ({error}); write it like "
                    "redis://127.0.0.1:6379/0", EXIT_FAILED) from error


def _engine(database_url: str) -> Any:
    """The migrated engine, or one line naming DATABASE_URL when it cannot be used."""
    import sqlalchemy as sa

    from jobs import store

    try:
        return store.get_engine(database_url)
    except (sa.exc.ArgumentError, sa.exc.OperationalError, sa.exc.InterfaceError,
            sa.exc.NoSuchModuleError, ValueError, ImportError) as error:  # no driver installed
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise _fail(f"cannot use the jobs database (DATABASE_URL): {reason}; set DATABASE_URL "
                    "to a reachable PostgreSQL URL or a SQLite file in an existing folder",
                    EXIT_FAILED) from error


def _check_redis(redis: Any) -> None:
    from redis.exceptions import RedisError

    try:
        redis.ping()
    except RedisError as error:
        raise _fail(f"cannot reach Redis ({error}); start it or set REDIS_URL to where it runs",
                    EXIT_FAILED) from error


# --- vdr export -------------------------------------------------------------------------------


@click.command()
@room_argument("room")
@click.option("--to", "local_root", metavar="DIR",
              help="Export root folder (default: the runtime settings' export root).")
@click.option("--no-local", is_flag=True, help="Export to S3 only.")
@click.option("--s3", "s3_url", metavar="s3://BUCKET/PREFIX", help="Also export to S3 here.")
@click.option("--enqueue", is_flag=True, help="Queue the export for `vdr worker` and return.")
@click.option("--requested-by", default=None, help="Who asked (default: your login name).")
def export(
    room: str, local_root: str | None, no_local: bool, s3_url: str | None, enqueue: bool,
    requested_by: str | None,
) -> None:
    """Export ROOM (id or unambiguous name) to a local folder and/or S3, verified."""
    from jobs import api
    from jobs.engine import Services
    from jobs.errors import JobsError

    if local_root is not None and not local_root.strip():
        raise click.BadParameter("an empty folder name; leave --to out for the default root",
                                 param_hint="--to")
    redis, engine = _services()
    who = requested_by or getpass.getuser()
    notice = _retry_notices()
    options = {"room_ref": room, "to_local": not no_local, "s3_url": s3_url,
               "requested_by": who, "redis": redis, "engine": engine, "local_root": local_root,
               "client": VdrClient.from_settings(on_retry=notice)}
    try:
        if enqueue:
            job = api.enqueue_export(**options)
            _console().print(
                f"queued export job [bold]{job.id}[/] of {_shown(job.room_name)}: `vdr worker` "
                f"runs it; follow it with `vdr report {job.id}`, stop it with "
                f"`vdr cancel {job.id}`", soft_wrap=True)
            return
        services = Services(redis=redis, engine=engine, client_factory=_noticing(notice))
        report = _run_with_progress({**options, "services": services})
    except AmbiguousRoom as error:
        raise _fail(str(error), EXIT_NOT_FOUND) from error
    except NotFound as error:
        raise _fail(f"no room {room!r}: {error}", EXIT_NOT_FOUND) from error
    except Unauthorized as error:
        raise _fail("the proxy refused the token; check VDR_API_TOKEN", EXIT_AUTH) from error
    except DeadlineExceeded as error:
        raise _fail(f"gave up: the proxy (VDR_API_URL) did not answer in time ({error}); check "
                    "that it runs and VDR_API_URL points at it", EXIT_UNREACHABLE) from error
    except TransportError as error:
        raise _fail(unreachable_message(error), EXIT_UNREACHABLE) from error
    except (JobsError, VdrError) as error:
        raise _fail(str(error), EXIT_FAILED) from error
    if report is None:
        raise _fail("another process holds part of this export; see `vdr reports`", EXIT_FAILED)
    _print_report(report)
    if report.state == "cancelled":
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if report.state != "succeeded":
        raise click.exceptions.Exit(EXIT_FAILED)


RETRY_NOTICE_EVERY_S = 2.0
"""At most one retry notice on stderr this often: many transfers retry at once."""


def _retry_notices() -> Callable[[RetryEvent], None]:
    """Say on stderr that the client is retrying, so a proxy outage is not silent."""
    console = _console(stderr=True)
    last = [-RETRY_NOTICE_EVERY_S]
    lock = threading.Lock()

    def notice(event: RetryEvent) -> None:
        with lock:
            now = time.monotonic()
            if now - last[0] < RETRY_NOTICE_EVERY_S:
                return
            last[0] = now
        console.print(f"[yellow]proxy unreachable or failing[/] ({_shown(event.reason)}), "
                      f"retrying (attempt {event.attempt}, next in {event.delay_s:.1f}s)")

    return notice


def _noticing(notice: Callable[[RetryEvent], None]) -> Callable[..., VdrClient]:
    """A client factory for the engine whose retries are counted by the job and shown here."""
    def factory(**kwargs: Any) -> VdrClient:
        counted = kwargs.pop("on_retry", None)

        def both(event: RetryEvent) -> None:
            if counted is not None:
                counted(event)
            notice(event)

        return VdrClient.from_settings(on_retry=both, **kwargs)

    return factory


def _run_with_progress(options: dict[str, Any]) -> Any:
    """Run the export in a thread while this one draws the bar; Ctrl-C cancels the job."""
    from jobs import api

    outcome: dict[str, Any] = {}
    job_ready, finished = threading.Event(), threading.Event()

    def on_job(job: Any) -> None:
        outcome["job"] = job
        job_ready.set()

    def target() -> None:
        try:
            outcome["report"] = api.run_export(**options, on_job=on_job)
        except BaseException as error:  # handed to the main thread
            outcome["error"] = error
        finally:
            job_ready.set()
            finished.set()

    # Waits use Events, not Thread.join: a join interrupted by Ctrl-C may later report the
    # thread finished while it still runs (CPython 3.11).
    threading.Thread(target=target, name="vdr-export-inline", daemon=True).start()
    try:
        job_ready.wait()
        _show_progress(finished, outcome, options["redis"])
    except KeyboardInterrupt:
        job_ready.wait()  # Ctrl-C may come before the job exists: cancel it once it does
        _cancel_inline(outcome, options, finished)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("report")


def _show_progress(finished: threading.Event, outcome: dict[str, Any], redis: Any) -> None:
    from jobs.api import read_progress

    job = outcome.get("job")
    if job is None:
        finished.wait()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[files]}"), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"export {_shown(job.room_name)}", total=None, files="", rate="")
        while not finished.wait(0.25):
            progress = read_progress(job.id, redis=redis)
            bar.update(task, total=progress.bytes_total or None, completed=progress.bytes_done,
                       files=f"{progress.files_done}/{progress.files_total} files",
                       rate=f"{human_size(int(progress.rate_bps))}/s")


def _cancel_inline(
    outcome: dict[str, Any], options: dict[str, Any], finished: threading.Event
) -> None:
    from jobs import api

    job = outcome.get("job")
    _console(stderr=True).print("cancelling: stopping the files in flight, then the report ...")
    if job is not None:
        api.cancel_job(job.id, actor=options["requested_by"], redis=options["redis"],
                       engine=options["engine"])
    finished.wait()


# --- vdr cancel ------------------------------------------------------------------------------


@click.command()
@click.argument("job_id")
@click.option("--requested-by", default=None, help="Who asks (default: your login name).")
def cancel(job_id: str, requested_by: str | None) -> None:
    """Cancel a queued or running job (one whose process died is closed at once)."""
    from jobs import api
    from jobs.errors import JobNotFound, JobsError

    redis, engine = _services()
    try:
        job = api.cancel_job(job_id, actor=requested_by or getpass.getuser(), redis=redis,
                             engine=engine)
    except JobNotFound as error:
        raise _fail(f"{error}; `vdr reports` lists finished jobs", EXIT_NOT_FOUND) from error
    except JobsError as error:
        raise _fail(str(error), EXIT_FAILED) from error
    if job.state in api.FINAL_STATES:
        _console().print(f"job [bold]{job.id}[/] is {_state(job.state)}")
    else:
        _console().print(f"job [bold]{job.id}[/] asked to stop; it ends within seconds")


# --- vdr reports / vdr report -----------------------------------------------------------------


@click.command()
@click.option("--room", default=None, help="Only reports of rooms whose id or name matches.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def reports(room: str | None, limit: int, as_json: bool) -> None:
    """List export reports, newest first."""
    from jobs import store

    _, engine = _services()
    found = store.list_reports(engine, room=room, limit=limit)
    if as_json:
        for item in found:
            click.echo(item.model_dump_json())
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("report", no_wrap=True, min_width=12)  # copied into `vdr report ID`
    table.add_column("room", ratio=1)
    for name in ("state", "files", "size", "finished (UTC)"):
        table.add_column(name, no_wrap=True)
    for item in found:
        table.add_row(item.id, _shown(item.room_name), _state(item.state),
                      f"{item.files_done}/{item.files_total}", human_size(item.bytes_done),
                      f"{item.finished_at:%Y-%m-%d %H:%M}")
    _console().print(table if found else "no reports yet")


@click.command()
@click.argument("report_id")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def report(report_id: str, as_json: bool) -> None:
    """Show one report (by report id or job id); of a job still running, where it stands."""
    from jobs import store
    from jobs.api import FINAL_STATES

    redis, engine = _services()
    found = store.get_report(engine, report_id)
    if found is None:
        job = store.get_job(engine, report_id)
        if job is not None and job.state not in FINAL_STATES:
            _print_unfinished(job, redis, engine)
            return
        raise _fail(f"no report {report_id!r}; `vdr reports` lists them", EXIT_NOT_FOUND)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return
    _print_report(found)


def _print_unfinished(job: Any, redis: Any, engine: Any) -> None:
    """A job with no report yet: where it stands, and how to stop it."""
    from jobs.api import read_progress

    say = functools.partial(_console().print, soft_wrap=True)
    say(f"[bold]{_shown(job.room_name)}[/] ({job.room_id}) {job.kind} {_state(job.state)} — job "
        f"{job.id}, asked by {_shown(job.requested_by)}; its report comes when it ends")
    try:
        progress = read_progress(job.id, redis=redis, engine=engine)
    except Exception as error:  # Redis away: the state from SQL is still worth showing
        say(f"progress unknown: {type(error).__name__}")
    else:
        eta = f", about {progress.eta_s:.0f}s left" if progress.eta_s else ""
        say(f"files {progress.files_done}/{progress.files_total}, "
            f"{human_size(progress.bytes_done)} of {human_size(progress.bytes_total)}, "
            f"{_retries(progress.retries)}{eta}")
    say(f"`vdr cancel {job.id}` stops it")


def _print_report(item: Any) -> None:
    # One line per fact, never cut at the console's width: paths and reasons are long, and a
    # line broken in two reads as two facts (and breaks grep).
    console = _console()
    say = functools.partial(console.print, soft_wrap=True)
    say(f"[bold]{_shown(item.room_name)}[/] ({item.room_id}) export {_state(item.state)}"
        f" — report {item.id}, job {item.job_id}, asked by {_shown(item.requested_by)}")
    if item.files_total == 0 and item.state != "succeeded":  # "0/0" would read as an empty room
        say(f"files: none listed before it ended, {_retries(item.retries)}, {item.duration_s:.1f}s")
    else:
        say(f"files {item.files_done}/{item.files_total} (already there: {item.files_skipped}, "
            f"failed: {item.files_failed}), {human_size(item.bytes_done)} of "
            f"{human_size(item.bytes_total)}, {_retries(item.retries)}, {item.duration_s:.1f}s")
    for location in item.manifest_locations:
        say(f"manifest: {_shown(location)}")
    if item.error:
        say(f"[red]error:[/] {_shown(item.error)}")
    for failure in item.failures[:50]:
        say(f"[red]failed[/] {_shown(failure['path'])}: {_shown(failure['reason'])}")
    for retry in item.retried[:50]:
        say(f"retried {_shown(retry['path'])}: {_shown(retry['reason'])} ×{retry['count']}")
    hint = _rerun_hint(item)
    if hint:
        say(hint)


def _retries(count: int) -> str:
    return "1 retry" if count == 1 else f"{count} retries"


def _rerun_hint(item: Any) -> str | None:
    """What to do after an export that did not finish: the same export again resumes it."""
    if item.state == "cancelled" and item.files_done < item.files_total:
        return ("run the same export again to finish it: the files already exported are "
                "verified, not fetched again")
    if item.state == "failed" and item.files_failed and not item.error:
        return (f"run the same export again once the cause is fixed: it fetches only the "
                f"{item.files_failed} file(s) that failed")
    return None


def _state(state: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(state, "blue")
    return f"[{colour}]{state}[/]"


# --- vdr worker / vdr db ----------------------------------------------------------------------


@click.command()
@click.option("--burst", is_flag=True, help="Quit once the queues are empty (tests, batch runs).")
@click.option("--queue", "queues", multiple=True, help="Queue(s) to work (default: vdr).")
@click.option("--name", default=None, help="Worker name shown by RQ.")
@click.option("--simple", is_flag=True, help="Run jobs in this process instead of a fork.")
@click.option("--no-scheduler", is_flag=True, help="Do not run RQ's scheduler (retry back-off).")
def worker(burst: bool, queues: tuple[str, ...], name: str | None, simple: bool,
           no_scheduler: bool) -> None:
    """Run an RQ worker for export jobs (start as many as you like)."""

    from jobs.config import EngineConfig
    from jobs.worker import run_worker
    from vdr_ops.defaults import QUEUE_NAME
    from vdr_ops.settings import get_settings

    settings = get_settings()
    if logging.getLogger("vdr").getEffectiveLevel() > logging.INFO:
        logging.getLogger("vdr").setLevel(logging.INFO)  # one line per job step, like RQ's own
    _check_redis(_redis(settings.redis_url))
    _engine(settings.database_url)  # migrate before the first job needs it
    run_worker(redis_url=settings.redis_url, queues=list(queues) or [QUEUE_NAME], burst=burst,
               simple=simple, name=name, with_scheduler=not no_scheduler,
               reap_interval_s=EngineConfig().reap_interval_s)


@click.group()
def db() -> None:
    """The jobs database (DATABASE_URL): migrations."""


@db.command()
def upgrade() -> None:
    """Apply every migration (Alembic upgrade head)."""
    from jobs import store
    from vdr_ops.settings import get_settings

    engine = store.create_engine(get_settings().database_url)
    store.migrate(engine)
    click.echo(f"database at revision {store.current_revision(engine)}")


@db.command()
def current() -> None:
    """Print the revision the database is at, and the newest one shipped."""
    from jobs import store
    from vdr_ops.settings import get_settings

    engine = store.create_engine(get_settings().database_url)
    revisions = {"current": store.current_revision(engine), "head": store.head_revision()}
    click.echo(json.dumps(revisions))

