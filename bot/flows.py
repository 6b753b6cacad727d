"""What each command and button does, once Slack has been acknowledged.

A flow is reached the same way from `/vdr ...`, from a button on a result, or from App Home;
`Reply` hides where its answer goes (the response_url of a command or message, a modal opened
from App Home, or a direct message). VDR, jobs and Slack errors are turned here into answers
that say what to do next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

import jobs.api as jobs_api
from bot import grammar, views
from bot.deps import Deps
from bot.errors import BotError, InvalidInput, PermissionDenied
from bot.roles import Role
from jobs.errors import ExportAlreadyRunning, JobsError
from jobs.runtime_settings import RuntimeSettings, save_runtime_settings
from jobs.store import JobRecord, get_report, list_reports
from vdr_client import AmbiguousRoom, NotFound, Room, TransportError, Unauthorized, VdrError

log = logging.getLogger("vdr.bot")


@dataclass
class Reply:
    """Where the answer to one interaction goes."""

    client: WebClient
    user: str
    channel: str | None = None
    respond: Respond | None = None
    trigger_id: str | None = None
    view_id: str | None = None

    def send(self, message: views.Message, *, replace: bool = False) -> None:
        """Show `message` to the user: in place of the original when `replace`."""
        try:
            self._send(message, replace)
        except SlackApiError as error:
            log.warning("answer to %s not shown: %s", self.user, error.response.get("error"))

    def _send(self, message: views.Message, replace: bool) -> None:
        if self.respond is not None:
            response = self.respond(text=message["text"], blocks=message["blocks"],
                                    response_type="ephemeral", replace_original=replace)
            if response.status_code != 200:
                log.warning("response_url refused the answer: %s %s", response.status_code,
                            response.body)
            return
        modal = views.modal_of(message)
        if self.view_id is not None:
            self.client.views_update(view_id=self.view_id, view=modal)
        elif self.trigger_id is not None:
            self.view_id = self.client.views_open(trigger_id=self.trigger_id,
                                                  view=modal)["view"]["id"]
            self.trigger_id = None
        else:
            self.client.chat_postMessage(channel=self.user, **message)


def vdr_problem(error: VdrError, ref: str | None = None) -> str:
    """What to tell a user about a VDR error."""
    if isinstance(error, NotFound) and ref is not None:
        return (f"No room matches `{views.escape(views.clip(ref, 200))}` by id, name or part of "
                "a name. Try `/vdr search` first.")
    if isinstance(error, TransportError):
        return "The VDR proxy cannot be reached right now; try again in a minute."
    if isinstance(error, Unauthorized):
        return "The VDR proxy refused our credentials (VDR_API_TOKEN); tell an admin."
    return f"The VDR answered: {views.escape(views.clip(str(error), 500))}"


def guarded(reply: Reply, work: Callable[[], None]) -> None:
    """Run `work`, turning the app's and the VDR's errors into answers to the user."""
    try:
        work()
    except PermissionDenied as error:
        reply.send(views.notice(f":lock: {error}"))
    except BotError as error:
        reply.send(views.error_message(str(error)))
    except VdrError as error:
        reply.send(views.notice(f":warning: {vdr_problem(error)}"))  # mrkdwn, escaped


def run_command(deps: Deps, command: grammar.Command, reply: Reply) -> None:
    """Carry out a parsed `/vdr` command (export and settings open modals instead)."""
    guarded(reply, lambda: _dispatch(deps, command, reply))


def _dispatch(deps: Deps, command: grammar.Command, reply: Reply) -> None:
    if isinstance(command, grammar.Search):
        search(deps, reply, command)
    elif isinstance(command, grammar.Show):
        show_room(deps, reply, command.room)
    elif isinstance(command, grammar.Jobs):
        show_jobs(deps, reply)
    elif isinstance(command, grammar.Cancel):
        cancel(deps, reply, command.job_id)
    elif isinstance(command, grammar.Reports):
        show_reports(deps, reply, command.room)
    elif isinstance(command, grammar.ReportDetail):
        show_report(deps, reply, command.report_id)
    elif isinstance(command, grammar.Help):
        reply.send(views.help_message(command.topic, command.problem))


# -- rooms -------------------------------------------------------------------------------------


def search(deps: Deps, reply: Reply, query: grammar.Search) -> None:
    deps.roles.require(reply.user, Role.VIEWER)
    session = deps.searches.start(query, reply.user)
    show_search_page(deps, reply, session, 0, replace=False)


def show_search_page(deps: Deps, reply: Reply, session: str, page: int, *,
                     replace: bool) -> None:
    """Page `page` of a stored search, in place of the previous page when `replace`."""
    deps.roles.require(reply.user, Role.VIEWER)
    query, where = deps.searches.search(session), deps.searches.page(session, page)
    if query is None or where is None:
        reply.send(views.notice("This search has expired; run it again."), replace=replace)
        return
    cursor, first = where
    found = deps.vdr.search_rooms_page(
        query=query.text, status=query.status, owner=query.owner, sort=query.sort,
        inactive_days=query.inactive_days, cursor=cursor, limit=views.SEARCH_PAGE_SIZE,
    )
    shown = found.items[: views.SEARCH_PAGE_SIZE]
    deps.searches.record_next(session, page, found.next_cursor, len(shown))
    price = deps.runtime().price_per_gb_month
    reply.send(views.search_results(query, shown, page=page, first=first + 1, session=session,
                                    has_next=found.next_cursor is not None, price=price),
               replace=replace)


def find_room(deps: Deps, reply: Reply, ref: str) -> Room | None:
    """The room `ref` names; None after telling the user it is unknown or ambiguous."""
    try:
        return deps.vdr.find_room(ref)
    except AmbiguousRoom as error:
        reply.send(views.ambiguous_rooms(ref, error.candidates, error.total))
    except VdrError as error:
        reply.send(views.notice(f":warning: {vdr_problem(error, ref)}"))
    return None


def show_room(deps: Deps, reply: Reply, ref: str) -> None:
    deps.roles.require(reply.user, Role.VIEWER)
    room = find_room(deps, reply, ref)
    if room is not None:
        reply.send(views.room_details(room, deps.runtime().price_per_gb_month))


# -- jobs and reports --------------------------------------------------------------------------


def progress_of(deps: Deps, job_ids: list[str]) -> dict[str, views.ProgressLike | None]:
    found: dict[str, views.ProgressLike | None] = {}
    for job_id in job_ids:
        try:
            found[job_id] = jobs_api.read_progress(job_id, redis=deps.redis)
        except JobsError:
            found[job_id] = None
    return found


def show_jobs(deps: Deps, reply: Reply) -> None:
    deps.roles.require(reply.user, Role.VIEWER)
    jobs = jobs_api.list_jobs(engine=deps.engine, active_only=True, limit=views.LIST_MAX + 1)
    reply.send(views.jobs_message(jobs, progress_of(deps, [job.id for job in jobs])))


def cancel(deps: Deps, reply: Reply, job_id: str) -> None:
    deps.roles.require(reply.user, Role.OPERATOR)
    try:
        job = jobs_api.cancel_job(job_id, actor=reply.user, redis=deps.redis, engine=deps.engine)
    except JobsError as error:
        reply.send(views.error_message(str(error) or f"Job {job_id} cannot be cancelled."))
        return
    log.info("job %s: cancel requested by %s", job.id, reply.user)
    name = views.escape(views.clip(job.room_name, 200))
    if job.state in ("queued", "running"):
        text = (f":no_entry_sign: Stopping job `{job.id}` ({name}); its report follows in "
                "the job's thread.")
    else:
        text = f":no_entry_sign: Job `{job.id}` ({name}) is {job.state}."
    reply.send(views.notice(text))
    refresh_job_message(deps, job)


def refresh_job_message(deps: Deps, job: JobRecord) -> None:
    """Redraw a job's channel message now (the watcher redraws it as events arrive)."""
    origin = job.origin or {}
    if not origin.get("channel") or not origin.get("ts"):
        return
    progress = progress_of(deps, [job.id]).get(job.id)
    try:
        deps.client.chat_update(channel=origin["channel"], ts=origin["ts"],
                                **views.job_message(job, progress))
    except SlackApiError as error:
        log.warning("job %s: message not updated: %s", job.id, error.response.get("error"))


def show_reports(deps: Deps, reply: Reply, room: str | None) -> None:
    deps.roles.require(reply.user, Role.VIEWER)
    reports = list_reports(deps.engine, room=room, limit=views.LIST_MAX)
    reply.send(views.reports_message(reports, room))


def show_report(deps: Deps, reply: Reply, report_id: str) -> None:
    deps.roles.require(reply.user, Role.VIEWER)
    report = get_report(deps.engine, report_id)
    if report is None:
        reply.send(views.error_message(f"No report or job has the id {report_id}."))
        return
    reply.send(views.report_message(report))


# -- export ------------------------------------------------------------------------------------


def open_export(deps: Deps, reply: Reply, ref: str) -> None:
    """Open the export modal for `ref`: a loading modal first, within the trigger's 3 seconds."""
    title = "Export room"
    loading = views.loading_modal(title, f"Looking up *{views.escape(views.clip(ref, 200))}*…")
    try:
        if reply.view_id is None and reply.trigger_id is not None:
            opened = deps.client.views_open(trigger_id=reply.trigger_id, view=loading)
            reply.view_id, reply.trigger_id = opened["view"]["id"], None
        form = _export_form(deps, reply, ref)
        if reply.view_id is not None:
            deps.client.views_update(view_id=reply.view_id, view=form)
    except SlackApiError as error:
        log.warning("export modal for %s not shown: %s", reply.user, error.response.get("error"))


def _export_form(deps: Deps, reply: Reply, ref: str) -> views.View:
    try:
        deps.roles.require(reply.user, Role.OPERATOR)
        room = deps.vdr.find_room(ref)
    except PermissionDenied as error:
        return views.error_modal("Export room", str(error))
    except AmbiguousRoom as error:
        return views.modal_of(views.ambiguous_rooms(ref, error.candidates, error.total),
                              "Export room")
    except VdrError as error:
        return views.error_modal("Export room", vdr_problem(error, ref))
    metadata = {"room_id": room.id, "room_name": room.name, "channel": reply.channel}
    return views.export_modal(room, deps.runtime(), metadata)


@dataclass(frozen=True)
class ExportRequest:
    """A validated export submission."""

    room_id: str
    room_name: str
    channel: str
    user: str
    to_local: bool
    s3_url: str | None
    idempotency_key: str


def read_export_form(deps: Deps, view: dict[str, Any], user: str) -> ExportRequest:
    """The submission as a request, or InvalidInput naming the block to flag."""
    values = view.get("state", {}).get("values", {})
    chosen = _selected(values, views.DESTINATIONS)
    if not chosen:
        raise InvalidInput(views.DESTINATIONS, "Choose at least one destination.")
    if not _selected(values, views.CONFIRM):
        raise InvalidInput(views.CONFIRM, "Tick the box to confirm the export.")
    meta = views.metadata(view)
    s3_url = _s3_url(deps, values) if "s3" in chosen else None
    return ExportRequest(
        room_id=str(meta.get("room_id")), room_name=str(meta.get("room_name")),
        channel=str(meta.get("channel") or user), user=user, to_local="local" in chosen,
        s3_url=s3_url, idempotency_key=f"slack:{view.get('id')}:{view.get('hash')}",
    )


def _selected(values: dict[str, Any], block_id: str) -> list[str]:
    state = values.get(block_id, {}).get(block_id, {})
    return [option["value"] for option in state.get("selected_options") or []]


def _s3_url(deps: Deps, values: dict[str, Any]) -> str:
    bucket = deps.runtime().s3_bucket
    if not bucket:
        raise InvalidInput(views.DESTINATIONS, "No S3 bucket is configured; an admin can set "
                           "one with /vdr settings.")
    prefix = (values.get(views.S3_PREFIX, {}).get(views.S3_PREFIX, {}).get("value") or "")
    prefix = prefix.strip().strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise InvalidInput(views.S3_PREFIX, "The prefix may not contain empty, `.` or `..` parts.")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def start_export(deps: Deps, request: ExportRequest) -> None:
    """Post the job's message, queue the job with that message as its origin, redraw it.

    The role is checked again here, after the acknowledgement (a user group lookup may wait
    on Slack): the form was only offered to operators, but a submission can be forged.
    """
    if not _allowed(deps, request.user, Role.OPERATOR):
        return
    channel, ts = _post_job_placeholder(deps, request)
    if ts is None:
        return
    try:
        job = jobs_api.enqueue_export(
            room_ref=request.room_id, to_local=request.to_local, s3_url=request.s3_url,
            requested_by=request.user, origin={"channel": channel, "ts": ts},
            idempotency_key=request.idempotency_key, redis=deps.redis, engine=deps.engine,
            client=deps.vdr,
        )
    except ExportAlreadyRunning as error:
        _say(deps, channel, ts, f":hourglass: {views.escape(str(error))} (job `{error.job_id}`)")
        return
    except (JobsError, VdrError) as error:
        _say(deps, channel, ts, f":x: The export could not be queued: {views.escape(str(error))}")
        return
    if (job.origin or {}).get("ts") not in (None, ts):
        _delete(deps, channel, ts)  # a copy of this submission got there first
        return
    log.info("job %s: export of %s queued by %s", job.id, job.room_id, request.user)
    refresh_job_message(deps, job)


def _post_job_placeholder(deps: Deps, request: ExportRequest) -> tuple[str, str | None]:
    text = (f":package: Export of *{views.escape(views.clip(request.room_name, 200))}* "
            f"requested by <@{request.user}>: queueing…")
    message = views.notice(text)
    try:
        posted = deps.client.chat_postMessage(channel=request.channel, **message)
        return posted["channel"], posted["ts"]
    except SlackApiError as error:
        log.info("cannot post in %s (%s); using a direct message", request.channel,
                 error.response.get("error"))
    hint = f"\nI could not post in <#{request.channel}>; invite me there with `/invite`."
    try:
        posted = deps.client.chat_postMessage(channel=request.user, **views.notice(text + hint))
        return posted["channel"], posted["ts"]
    except SlackApiError as error:
        log.warning("export by %s not started: Slack refused every channel (%s)", request.user,
                    error.response.get("error"))
        return request.user, None


def _allowed(deps: Deps, user: str, needed: Role) -> bool:
    """True when `user` has the role; else tells them so in a direct message."""
    try:
        deps.roles.require(user, needed)
    except PermissionDenied as error:
        _direct(deps, user, f":lock: {error}")
        return False
    return True


def _direct(deps: Deps, user: str, text: str) -> None:
    try:
        deps.client.chat_postMessage(channel=user, **views.notice(text))
    except SlackApiError as error:
        log.warning("direct message to %s not sent: %s", user, error.response.get("error"))


def _say(deps: Deps, channel: str, ts: str, text: str) -> None:
    try:
        deps.client.chat_update(channel=channel, ts=ts, **views.notice(text))
    except SlackApiError as error:
        log.warning("message %s not updated: %s", ts, error.response.get("error"))


def _delete(deps: Deps, channel: str, ts: str) -> None:
    try:
        deps.client.chat_delete(channel=channel, ts=ts)
    except SlackApiError as error:
        log.warning("duplicate message %s not deleted: %s", ts, error.response.get("error"))


# -- settings ----------------------------------------------------------------------------------


def open_settings(deps: Deps, reply: Reply) -> None:
    try:
        deps.roles.require(reply.user, Role.ADMIN)
    except PermissionDenied as error:
        reply.send(views.notice(f":lock: {error}"))
        return
    if reply.trigger_id is None:
        return
    try:
        deps.client.views_open(trigger_id=reply.trigger_id,
                               view=views.settings_modal(deps.runtime()))
    except SlackApiError as error:
        log.warning("settings modal not shown: %s", error.response.get("error"))


def read_settings_form(deps: Deps, view: dict[str, Any], user: str) -> RuntimeSettings:
    """The submitted runtime settings, validated, or InvalidInput naming the field."""
    values = view.get("state", {}).get("values", {})
    data = deps.runtime().model_dump()
    for name, _, _ in views.SETTINGS_FIELDS:
        raw = (values.get(name, {}).get(name, {}).get("value") or "").strip()
        data[name] = _setting_value(name, raw, data[name])
    try:
        return RuntimeSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else views.SETTINGS_FIELDS[0][0]
        raise InvalidInput(field, first["msg"]) from error


def _setting_value(name: str, raw: str, current: Any) -> Any:
    if isinstance(current, list):
        return [part for part in raw.replace(",", " ").split() if part]
    if name == "s3_bucket":
        return raw or None
    if isinstance(current, (int, float)) and not isinstance(current, bool) and raw == "":
        return current
    return raw


def save_settings(deps: Deps, new: RuntimeSettings, user: str) -> None:
    if not _allowed(deps, user, Role.ADMIN):
        return
    before = deps.runtime().model_dump(mode="json")
    save_runtime_settings(deps.engine, deps.redis, new, actor=user)
    changed = [key for key, value in new.model_dump(mode="json").items() if before[key] != value]
    log.info("runtime settings changed by %s: %s", user, ", ".join(changed) or "nothing")
    text = ("Settings saved: " + ", ".join(f"`{key}`" for key in changed)) if changed else \
        "Settings saved; nothing changed."
    _direct(deps, user, f":gear: {text}")


# -- App Home ----------------------------------------------------------------------------------


def publish_home(deps: Deps, user: str) -> None:
    """Draw `user`'s App Home: running jobs, recent reports, the stalest rooms and their cost."""
    try:
        deps.roles.require(user, Role.VIEWER)
    except PermissionDenied as error:
        view = {"type": "home", "blocks": [views.section(f":lock: {error}")]}
    else:
        view = _home(deps)
    try:
        deps.client.views_publish(user_id=user, view=view)
    except SlackApiError as error:
        log.warning("App Home of %s not published: %s", user, error.response.get("error"))


def _home(deps: Deps) -> views.View:
    runtime = deps.runtime()
    jobs = jobs_api.list_jobs(engine=deps.engine, active_only=True, limit=views.LIST_MAX)
    reports = list_reports(deps.engine, limit=10)
    rooms: list[Room] = []
    problem = None
    try:
        rooms = deps.vdr.search_rooms_page(sort="last_activity", limit=views.LIST_MAX).items
    except VdrError as error:
        problem = vdr_problem(error)
    return views.home_view(jobs, progress_of(deps, [j.id for j in jobs]), reports, rooms,
                           runtime.price_per_gb_month, rooms_error=problem)


def parse_value(value: str) -> tuple[str, str]:
    """`verb:argument` of an overflow option or a paging button."""
    verb, _, argument = value.partition(":")
    return verb, argument
