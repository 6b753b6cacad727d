"""Every message, modal and Home view the app sends, built in one place, within Block Kit's limits.

Builders are pure: they take records (rooms, jobs, reports, progress) and return the dicts Slack
expects — `{"text", "blocks"}` for a message, a view body for a modal or App Home. Lists are cut
to a page, long text is split across sections or clipped, and user-supplied strings are escaped,
so no input can push a payload past the limits in `bot.blockkit` or inject mrkdwn links.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot import blockkit
from bot.grammar import VERBS, Search, render_search
from vdr_client import Room

if TYPE_CHECKING:
    from jobs.runtime_settings import RuntimeSettings
    from jobs.store import JobRecord, Report

Block = dict[str, Any]
Message = dict[str, Any]
View = dict[str, Any]

# Action ids and callback ids: the handlers in `bot.app` listen for exactly these.
ROOM_MENU = "room_menu"
ROOM_SHOW = "room_show"
ROOM_EXPORT = "room_export"
ROOM_REPORTS = "room_reports"
ROOM_TRASH = "room_trash"
ROOM_PURGE = "room_purge"
ROOM_RESTORE = "room_restore"
SEARCH_PAGE = "search_page"
JOB_CANCEL = "job_cancel"
REPORT_SHOW = "report_show"
EXPORT_MODAL = "export_modal"
SETTINGS_MODAL = "settings_modal"
DESTINATIONS = "destinations"
S3_PREFIX = "s3_prefix"
CONFIRM = "confirm"

SEARCH_PAGE_SIZE = 10
"""Rooms per search page: a section each, well under the 50 blocks of a message."""

LIST_MAX = 15
"""Jobs or reports listed in one message or Home section."""

FAILURES_SHOWN = 15
"""Failed files named in a report; the rest are counted, and the manifest lists them all."""

GIB = 1024**3
"""Storage is billed per GB-month, where cloud storage means 2^30 bytes by a GB."""

SETTINGS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("export_root", "Local export folder", "Where exports are written on the workers' disk."),
    ("s3_bucket", "S3 bucket", "Empty: no S3 destination is offered."),
    ("s3_prefix", "S3 prefix", "Key prefix for exports in the bucket."),
    ("concurrency", "Concurrent downloads per job", "Whole number, 1 or more."),
    ("approver_group", "Approvers", "User ids (U…) or user group ids (S…), comma-separated."),
    ("admins", "Admins", "User or group ids; empty: the workspace's own admins and owners."),
    ("operators", "Operators", "User or group ids allowed to export and cancel."),
    ("viewers", "Viewers", "User or group ids allowed to search; empty: everyone."),
    ("price_per_gb_month", "Storage price per GB-month", "In your currency, e.g. 0.25."),
    ("approval_expiry_minutes", "Approval expiry (minutes)", "Whole number, 1 or more."),
)
"""The runtime settings the settings modal edits: field, label, hint."""


class ProgressLike(Protocol):
    """What a progress line needs from `jobs.api.read_progress`."""

    @property
    def files_done(self) -> int: ...
    @property
    def files_total(self) -> int: ...
    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def rate_bps(self) -> float: ...
    @property
    def eta_s(self) -> float | None: ...


# -- text helpers ------------------------------------------------------------------------------


def escape(text: str) -> str:
    """`text` safe inside mrkdwn: no links, mentions or formatting smuggled in by a room name."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_text(text: str, limit: int = blockkit.TEXT_MAX) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at line ends where possible."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut if cut > limit // 2 else limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        pieces.append(text)
    return pieces


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KB' (binary multiples, as storage is billed)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PB"


def human_duration(seconds: float) -> str:
    """3725 -> '1h 02m'; 65 -> '1m 05s'; 4 -> '4s'."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def days_since(moment: datetime, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, (now - moment).days)


def monthly_cost(total_bytes: int, price_per_gb_month: float) -> float:
    return total_bytes / GIB * price_per_gb_month


def money(amount: float) -> str:
    return f"{amount:,.2f}"


# -- block helpers -----------------------------------------------------------------------------


def plain(text: str, limit: int = blockkit.TEXT_MAX) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text or " ", limit), "emoji": True}


def mrkdwn(text: str, limit: int = blockkit.TEXT_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text or " ", limit)}


def section(text: str, accessory: dict[str, Any] | None = None,
            block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def sections(text: str) -> list[Block]:
    """Long text as as many sections as it takes."""
    return [section(piece) for piece in split_text(text)]


def fields(pairs: Iterable[tuple[str, str]]) -> Block:
    items = [mrkdwn(f"*{label}*\n{value}", blockkit.SECTION_FIELD_TEXT_MAX)
             for label, value in pairs]
    return {"type": "section", "fields": items[: blockkit.SECTION_FIELDS_MAX]}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, blockkit.HEADER_TEXT_MAX)}


def context(*texts: str) -> Block:
    shown = [mrkdwn(t) for t in texts if t][: blockkit.CONTEXT_ELEMENTS_MAX]
    return {"type": "context", "elements": shown or [mrkdwn(" ")]}


def divider() -> Block:
    return {"type": "divider"}


def button(label: str, action_id: str, value: str | None = None, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "action_id": action_id,
                               "text": plain(label, blockkit.BUTTON_TEXT_MAX)}
    if value is not None:
        element["value"] = value[: blockkit.BUTTON_VALUE_MAX]
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)[: blockkit.ACTIONS_ELEMENTS_MAX]}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def option(label: str, value: str, description: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"text": plain(label, blockkit.OPTION_TEXT_MAX), "value": value}
    if description:
        item["description"] = plain(description, blockkit.OPTION_TEXT_MAX)
    return item


def confirm_dialog(title: str, text: str, yes: str) -> dict[str, Any]:
    return {"title": plain(title, 100), "text": mrkdwn(text, 300), "confirm": plain(yes, 30),
            "deny": plain("Keep it", 30)}


def message(text: str, blocks: list[Block]) -> Message:
    """A message payload: `text` is the notification and screen-reader fallback.

    Slack reads `text` as mrkdwn, so whatever a user or the VDR supplied in it must already be
    escaped like block text: a room named `<!channel>` would otherwise ping the channel.
    """
    return {"text": clip(text, blockkit.MESSAGE_TEXT_MAX),
            "blocks": blocks[: blockkit.MESSAGE_BLOCKS_MAX]}


# -- help --------------------------------------------------------------------------------------

_USAGE = {
    "help": ("help [command]", "What you can type, or more about one command."),
    "search": ("search [text] [status:S] [owner:O] [inactive:180d] [sort:size|activity|name]",
               "Find rooms. `status:` is active, archived, readonly, preparation or trashed; "
               "`inactive:` takes days (`180d`), weeks (`26w`), months (`6m`) or years (`1y`); "
               "`sort:size` puts the biggest first, `sort:activity` the stalest, and a leading "
               "`-` reverses an order."),
    "show": ("show <room>", "A room's size, owner, activity and storage cost; by id or name."),
    "export": ("export <room>", "Copy a room to local disk and/or S3 with a verified manifest; "
               "progress and the final report appear in a thread. Operators only."),
    "trash": ("trash <room>", "Ask to move a room to the trash; an approver (not you) must "
              "approve it on the card posted in the channel. Operators only."),
    "purge": ("purge <room>", "Ask to delete a room for good. Needs an export whose manifest "
              "still matches the room (run `/vdr export` first) and an approver's OK."),
    "restore": ("restore <room>", "Ask to bring a trashed room back; an approver must approve."),
    "jobs": ("jobs", "Jobs queued or running, with their progress."),
    "cancel": ("cancel <job id>", "Stop a queued or running job. Operators only."),
    "reports": ("reports [room]", "Recent job reports, all or for one room."),
    "report": ("report <id>", "One report in full (a report id or a job id)."),
    "settings": ("settings", "Edit export folder, S3, roles and pricing. Admins only."),
}


def help_message(topic: str | None = None, problem: str | None = None) -> Message:
    """Usage of every command, or of `topic`; `problem` (what was wrong) goes first."""
    blocks: list[Block] = []
    if problem:
        blocks.append(section(f":warning: {escape(problem)}"))
    verbs = [topic] if topic in _USAGE else list(VERBS)
    lines = [f"`/vdr {_USAGE[v][0]}`\n{_USAGE[v][1]}" for v in verbs]
    blocks.extend(sections("\n\n".join(lines)))
    if topic not in _USAGE:
        blocks.append(context("Rooms can be named by id, by exact name, or by a unique part of "
                              "the name; quote names with spaces if you like."))
    fallback = escape(problem) if problem else "Commands of /vdr"
    return message(fallback, blocks)


def error_message(text: str) -> Message:
    return message(escape(text), [section(f":warning: {escape(text)}")])


def notice(text: str) -> Message:
    """A one-line answer; `text` is trusted mrkdwn built by the app."""
    return message(text, [section(text)])


# -- rooms -------------------------------------------------------------------------------------


def room_line(room: Room, price_per_gb_month: float | None = None) -> str:
    """One room in two lines of mrkdwn: name and status, then owner, size, files, activity."""
    idle = days_since(room.last_activity_at)
    first = f"*{escape(clip(room.name, 200))}*  ·  {room.status}"
    facts = [escape(clip(room.owner.name, 80)), human_bytes(room.size.total_bytes),
             f"{room.file_count:,} files", f"last activity {idle} days ago"]
    if price_per_gb_month is not None:
        cost = monthly_cost(room.size.total_bytes, price_per_gb_month)
        facts.append(f"{money(cost)}/month")
    return first + "\n" + " · ".join(facts)


def room_menu(room: Room) -> dict[str, Any] | None:
    """The overflow menu of a room row; None when the id is too long to carry in a value."""
    if len(room.id) + 8 > blockkit.OPTION_VALUE_MAX:
        return None
    first = ("restore", "Restore…") if room.status == "trashed" else ("trash", "Move to trash…")
    return {"type": "overflow", "action_id": ROOM_MENU, "options": [
        option("Show details", f"show:{room.id}"),
        option("Export…", f"export:{room.id}"),
        option("Reports", f"reports:{room.id}"),
        option(first[1], f"{first[0]}:{room.id}"),
        option("Purge…", f"purge:{room.id}"),
    ]}


def room_rows(rooms: Sequence[Room], price: float | None = None) -> list[Block]:
    return [section(room_line(room, price), room_menu(room)) for room in rooms]


def search_results(search: Search, rooms: Sequence[Room], *, page: int, first: int,
                   session: str, has_next: bool, price: float | None = None) -> Message:
    """One page of search results, with Previous/Next buttons that carry the search session.

    `first` is the 1-based number of the page's first room.
    """
    shown = rooms[:SEARCH_PAGE_SIZE]
    query = escape(clip("/vdr " + render_search(search), 300))
    if not shown:
        text = "No rooms match." if page == 0 else "No more rooms."
        return message(text, [section(f"`{query}`: {text}")])
    span = f"rooms {first}–{first + len(shown) - 1}"
    blocks = [section(f"`{query}` — page {page + 1}, {span}"), *room_rows(shown, price)]
    paging = []
    if page > 0:
        paging.append(button("◀ Previous", f"{SEARCH_PAGE}:prev", f"{session}:{page - 1}"))
    if has_next:
        paging.append(button("Next ▶", f"{SEARCH_PAGE}:next", f"{session}:{page + 1}"))
    if paging:
        blocks.append(actions(*paging))
    return message(f"Rooms matching {escape(render_search(search))} ({span})", blocks)


def room_details(room: Room, price_per_gb_month: float) -> Message:
    cost = monthly_cost(room.size.total_bytes, price_per_gb_month)
    size = (f"{human_bytes(room.size.total_bytes)} "
            f"({human_bytes(room.size.deleted_bytes)} deleted)")
    blocks = [
        header(room.name),
        fields([
            ("Status", room.status),
            ("Owner", f"{escape(clip(room.owner.name, 80))} "
                      f"({escape(clip(room.owner.email, 120))})"),
            ("Size", size),
            ("Contents", f"{room.file_count:,} files in {room.folder_count:,} folders"),
            ("Created", room.created_at.date().isoformat()),
            ("Last activity", f"{room.last_activity_at.date().isoformat()} "
                              f"({days_since(room.last_activity_at)} days ago)"),
            ("Storage cost", f"{money(cost)} per month"),
        ]),
        actions(button("Export…", ROOM_EXPORT, room.id, style="primary"),
                button("Reports", ROOM_REPORTS, room.id),
                button("Restore…", ROOM_RESTORE, room.id) if room.status == "trashed"
                else button("Move to trash…", ROOM_TRASH, room.id),
                button("Purge…", ROOM_PURGE, room.id, style="danger")),
        context(f"Room id `{escape(clip(room.id, 200))}`"),
    ]
    return message(f"Room {escape(room.name)}", blocks)


def ambiguous_rooms(ref: str, candidates: Sequence[Room], total: int) -> Message:
    shown = candidates[:LIST_MAX]
    more = f" (showing {len(shown)})" if total > len(shown) else ""
    intro = section(f"{total} rooms match `{escape(clip(ref, 200))}`{more}. Pick one, or give "
                    "the room's id or exact name.")
    return message(f"{total} rooms match {escape(ref)}", [intro, *room_rows(shown)])


# -- modals ------------------------------------------------------------------------------------


def loading_modal(title: str, text: str) -> View:
    return {"type": "modal", "title": plain(title, blockkit.VIEW_TITLE_MAX),
            "close": plain("Close"), "blocks": [section(text)]}


def error_modal(title: str, text: str) -> View:
    return loading_modal(title, f":warning: {escape(text)}")


def export_modal(room: Room, runtime: RuntimeSettings, metadata: dict[str, Any]) -> View:
    """The export form: destinations (local disk, S3), the S3 prefix, and a confirmation."""
    local = option("Local disk", "local", clip(runtime.export_root, 70))
    choices = [local]
    s3_url = runtime.s3_url()
    if s3_url:
        choices.append(option("Amazon S3", "s3", clip(f"bucket {runtime.s3_bucket}", 70)))
    blocks: list[Block] = [
        section(room_line(room, runtime.price_per_gb_month)),
        _input(DESTINATIONS, "Destinations", {
            "type": "checkboxes", "action_id": DESTINATIONS, "options": choices,
            "initial_options": choices,
        }, hint="Each file is downloaded once and written to every destination chosen."),
    ]
    if s3_url:
        prefix = "/".join(p for p in (runtime.s3_prefix.strip("/"), _slug(room.name)) if p)
        blocks.append(_input(S3_PREFIX, "S3 prefix", {
            "type": "plain_text_input", "action_id": S3_PREFIX, "initial_value": prefix,
            "max_length": 512,
        }, hint=f"Objects go to s3://{runtime.s3_bucket}/<prefix>/…", optional=True))
    blocks.append(_input(CONFIRM, "Confirm", {
        "type": "checkboxes", "action_id": CONFIRM, "options": [option(
            f"Export {clip(room.name, 40)}", "yes",
            f"{human_bytes(room.size.total_bytes)} in {room.file_count:,} files")],
    }))
    return {
        "type": "modal", "callback_id": EXPORT_MODAL, "title": plain("Export room"),
        "submit": plain("Export"), "close": plain("Cancel"), "blocks": blocks,
        "private_metadata": json.dumps(metadata)[: blockkit.PRIVATE_METADATA_MAX],
    }


def _input(block_id: str, label: str, element: dict[str, Any], *, hint: str | None = None,
           optional: bool = False) -> Block:
    block: Block = {"type": "input", "block_id": block_id, "label": plain(label, 2000),
                    "element": element, "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _slug(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    return "-".join(filter(None, kept.split("-")))[:80] or "room"


def settings_modal(runtime: RuntimeSettings) -> View:
    """The admins' form: one text field per runtime setting, lists comma-separated."""
    values = runtime.model_dump()
    blocks = []
    for name, label, hint in SETTINGS_FIELDS:
        value = values.get(name)
        shown = ", ".join(value) if isinstance(value, list) else str(value or "")
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": name,
                                   "max_length": blockkit.INPUT_VALUE_MAX}
        if shown:
            element["initial_value"] = clip(shown, blockkit.INPUT_VALUE_MAX)
        blocks.append(_input(name, label, element, hint=hint, optional=True))
    return {"type": "modal", "callback_id": SETTINGS_MODAL, "title": plain("vdr-ops settings"),
            "submit": plain("Save"), "close": plain("Cancel"), "blocks": blocks}


# -- jobs, progress and reports ----------------------------------------------------------------


def progress_line(progress: ProgressLike | None, state: str) -> str:
    """'Running · 120/4,210 files · 1.2/9.8 GB · 40.1 MB/s · ETA 3m 20s'."""
    if progress is None or state == "queued":
        return f"*{state.capitalize()}*"
    parts = [f"*{state.capitalize()}*",
             f"{progress.files_done:,}/{progress.files_total:,} files",
             f"{human_bytes(progress.bytes_done)}/{human_bytes(progress.bytes_total)}"]
    if state == "running":
        parts.append(f"{human_bytes(progress.rate_bps)}/s")
        if progress.eta_s is not None:
            parts.append(f"ETA {human_duration(progress.eta_s)}")
    return " · ".join(parts)


def job_title(job: JobRecord) -> str:
    who = f"<@{job.requested_by}>" if job.requested_by.startswith(("U", "W")) else \
        escape(job.requested_by)
    return (f":package: *{job.kind.capitalize()} of {escape(clip(job.room_name, 200))}* "
            f"requested by {who} — job `{job.id}`")


def job_message(job: JobRecord, progress: ProgressLike | None) -> Message:
    """The job's message in the channel: title, progress line, destinations, Cancel button."""
    blocks = [section(job_title(job)), section(progress_line(progress, job.state))]
    if job.destinations:
        blocks.append(context("To " + ", ".join(f"`{escape(clip(d, 300))}`"
                                                for d in job.destinations[:9])))
    if job.state in ("queued", "running"):
        blocks.append(actions(_cancel_button(job)))
    else:
        blocks.append(context("The report is in the thread."))
    return message(f"{job.kind.capitalize()} of {escape(job.room_name)}: {job.state}", blocks)


def _cancel_button(job: JobRecord) -> dict[str, Any]:
    return button("Cancel job", JOB_CANCEL, job.id, style="danger", confirm=confirm_dialog(
        "Cancel this job?", f"The {job.kind} of *{escape(clip(job.room_name, 100))}* stops; "
        "files already written stay.", "Cancel job"))


def job_rows(jobs: Sequence[JobRecord], progress: dict[str, ProgressLike | None]) -> list[Block]:
    rows = []
    for job in jobs[:LIST_MAX]:
        line = progress_line(progress.get(job.id), job.state)
        text = f"*{escape(clip(job.room_name, 150))}* · {job.kind} · `{job.id}`\n{line}"
        accessory = _cancel_button(job) if job.state in ("queued", "running") else None
        rows.append(section(text, accessory))
    return rows


def jobs_message(jobs: Sequence[JobRecord], progress: dict[str, ProgressLike | None]) -> Message:
    if not jobs:
        return notice("No jobs are queued or running.")
    more = f" (showing {LIST_MAX})" if len(jobs) > LIST_MAX else ""
    blocks = [section(f"*{len(jobs)} active job(s)*{more}"), *job_rows(jobs, progress)]
    return message(f"{len(jobs)} active job(s)", blocks)


def report_rows(reports: Sequence[Report]) -> list[Block]:
    rows = []
    for report in reports[:LIST_MAX]:
        when = report.finished_at.strftime("%Y-%m-%d %H:%M")
        text = (f"*{escape(clip(report.room_name, 150))}* · {report.kind} · {report.state}\n"
                f"{when} UTC · {report.files_done:,} files · {human_bytes(report.bytes_done)}")
        rows.append(section(text, button("View", REPORT_SHOW, report.id)))
    return rows


def reports_message(reports: Sequence[Report], room: str | None) -> Message:
    scope = f" for `{escape(clip(room, 200))}`" if room else ""
    if not reports:
        return notice(f"No reports{scope} yet.")
    blocks = [section(f"*Recent reports{scope}*"), *report_rows(reports)]
    return message(f"{len(reports)} report(s)", blocks)


def report_message(report: Report) -> Message:
    """A report in full: totals, duration, destinations, failures, and where the manifest is."""
    icon = {"succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:"}
    blocks = [
        header(f"{report.kind.capitalize()} report — {report.room_name}"),
        section(f"{icon.get(report.state, ':grey_question:')} *{report.state.capitalize()}* "
                f"in {human_duration(report.duration_s)} · report `{report.id}` · job "
                f"`{report.job_id}`"),
        fields([
            ("Files", f"{report.files_done:,} of {report.files_total:,} "
                      f"({report.files_skipped:,} already there, {report.files_failed:,} failed)"),
            ("Bytes", f"{human_bytes(report.bytes_done)} of {human_bytes(report.bytes_total)}"),
            ("Retries", f"{report.retries:,}"),
            ("Requested by", f"<@{report.requested_by}>"),
        ]),
    ]
    blocks.extend(sections("*Destinations*\n" + _bullets(report.destinations or ["none"])))
    if report.error:
        blocks.extend(sections(f"*Error*\n{escape(clip(report.error, 2000))}"))
    if report.failures:
        blocks.extend(sections(failures_text(report.failures, report.files_failed)))
    if report.manifest_locations:
        blocks.extend(sections("*Manifest*\n" + _bullets(report.manifest_locations)))
    return message(f"{report.kind.capitalize()} of {escape(report.room_name)}: {report.state}",
                   blocks)


def failures_text(failures: Sequence[dict[str, str]], total: int | None = None) -> str:
    total = max(total or 0, len(failures))
    lines = [f"• `{escape(clip(f.get('path', '?'), 300))}` — "
             f"{escape(clip(f.get('reason', '?'), 300))}" for f in failures[:FAILURES_SHOWN]]
    more = total - len(lines)
    tail = f"\n…and {more:,} more, all listed in the manifest." if more > 0 else ""
    return f"*{total:,} file(s) failed*\n" + "\n".join(lines) + tail


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"• `{escape(clip(item, 500))}`" for item in items)


def retries_message(counts: dict[str, int], window_s: float) -> Message:
    """A thread reply summing up the retries of the last `window_s` seconds."""
    total = sum(counts.values())
    detail = ", ".join(f"{escape(clip(reason, 60))} ×{n}" for reason, n in
                       sorted(counts.items(), key=lambda kv: -kv[1])[:10])
    text = (f":repeat: {total:,} retr{'y' if total == 1 else 'ies'} in the last "
            f"{human_duration(window_s)}: {detail}")
    return message(text, [context(text)])


def failures_message(failures: Sequence[dict[str, str]], total: int) -> Message:
    """A thread reply naming files that failed since the last one."""
    text = failures_text(failures, total)
    return message(f"{total} file(s) failed", sections(text))


def manifest_location_message(locations: Sequence[str], size: int | None) -> Message:
    why = f" ({human_bytes(size)}, too big to attach)" if size else ""
    text = f":page_facing_up: Manifest{why}:\n" + _bullets(locations)
    return message("Manifest location", sections(text))


# -- App Home ----------------------------------------------------------------------------------


def home_view(jobs: Sequence[JobRecord], progress: dict[str, ProgressLike | None],
              reports: Sequence[Report], stale_rooms: Sequence[Room],
              price_per_gb_month: float, *, rooms_error: str | None = None) -> View:
    """App Home: running jobs, recent reports, and the rooms idle longest with their cost."""
    blocks: list[Block] = [header("Running jobs")]
    blocks.extend(job_rows(jobs, progress) or [context("No jobs are queued or running.")])
    blocks += [divider(), header("Recent reports")]
    blocks.extend(report_rows(reports) or [context("No reports yet.")])
    blocks += [divider(), header("Rooms inactive the longest")]
    total = sum(monthly_cost(r.size.total_bytes, price_per_gb_month) for r in stale_rooms)
    blocks.append(context(f"Storage priced at {money(price_per_gb_month)} per GB-month; these "
                          f"{len(stale_rooms)} rooms cost {money(total)} per month."))
    if rooms_error:
        blocks.append(section(f":warning: Rooms could not be listed: {escape(rooms_error)}"))
    blocks.extend(room_rows(stale_rooms[:LIST_MAX], price_per_gb_month))
    return {"type": "home", "blocks": blocks[: blockkit.VIEW_BLOCKS_MAX]}


def modal_of(payload: Message, title: str = "vdr-ops") -> View:
    """A message shown in a modal instead (answers to clicks in App Home or in a modal)."""
    return {"type": "modal", "title": plain(title, blockkit.VIEW_TITLE_MAX),
            "close": plain("Close"), "blocks": payload["blocks"][: blockkit.VIEW_BLOCKS_MAX]}


def metadata(view: dict[str, Any]) -> dict[str, Any]:
    """The private_metadata a builder stored in a view, decoded."""
    try:
        found = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
