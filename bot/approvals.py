"""Deleting rooms from Slack: `/vdr trash|purge|restore ROOM`, the approval card, the override.

A request (from the command, or a button on a search result or a room) is checked — role,
room state, and for a purge the archive guard — and then posted in the channel as a card:
the room, its size, file count, last activity, the latest export and whether it still matches
the live room, and the monthly storage the action saves. The card's Approve / Reject buttons
count only for a member of the approver group who is not the requester; anyone else gets an
ephemeral explanation and the card stays as it was. The first decision edits the card (who,
when); later clicks change nothing. An approved request becomes a job: its message is posted
in the card's thread, and the job watcher (`bot.watcher`) keeps it and the report there.

A purge the guard refuses is not posted; the requester is told how to fix it (export first),
and an admin is offered an override: a modal where the room's exact name must be typed.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.context.respond import Respond
from slack_sdk.errors import SlackApiError

from bot import views
from bot.deps import Deps
from bot.errors import PermissionDenied
from bot.flows import Reply, find_room, guarded
from bot.roles import Role
from jobs import approvals, deletion, guard, store
from jobs.approvals import Action, Approval, Override, RequestFacts
from vdr_client import Room, VdrError

__all__ = [
    "APPROVE",
    "OVERRIDE",
    "OVERRIDE_MODAL",
    "REJECT",
    "approval_card",
    "decide_from_card",
    "register",
    "request_deletion",
]

log = logging.getLogger("vdr.bot.approvals")

APPROVE = "approval_approve"
REJECT = "approval_reject"
OVERRIDE = "approval_override"
OVERRIDE_MODAL = "approval_override_modal"
OVERRIDE_NAME = "override_name"
OVERRIDE_REASON = "override_reason"
ROOM_BUTTONS = {views.ROOM_TRASH: "trash", views.ROOM_PURGE: "purge",
                views.ROOM_RESTORE: "restore"}
"""Action ids of the room buttons (show, search) and the request each one starts."""

ACTIONS: tuple[Action, ...] = ("trash", "purge", "restore")

SLOW_CHECK_FILES = 5000
"""Rooms with this many files get a note that the export check is running."""

_VERB = {"trash": "move to the trash", "purge": "purge for good", "restore": "restore"}
_TITLE = {"trash": "Trash", "purge": "Purge", "restore": "Restore"}


def register(app: App, deps: Deps) -> None:
    """Add the deletion listeners to the Bolt app."""
    app.action(APPROVE)(_on_decision(deps, approve=True))
    app.action(REJECT)(_on_decision(deps, approve=False))
    app.action(OVERRIDE)(_on_override_button(deps))
    for action_id, action in ROOM_BUTTONS.items():
        app.action(action_id)(_on_room_button(deps, action))
    app.view(OVERRIDE_MODAL)(_on_override_submit(deps))


# -- requests ----------------------------------------------------------------------------------


def request_deletion(deps: Deps, reply: Reply, action: str, ref: str) -> None:
    """Check a trash / purge / restore request and post its approval card in the channel."""
    guarded(reply, lambda: _request(deps, reply, action, ref))


def _request(deps: Deps, reply: Reply, action: str, ref: str) -> None:
    deps.roles.require(reply.user, Role.OPERATOR)
    chosen = next((known for known in ACTIONS if known == action), None)
    if chosen is None:
        reply.send(views.error_message(f"{action} is not a deletion; use trash, purge or restore."))
        return
    if reply.channel is None or not _in_shared_channel(reply.channel):
        reply.send(views.notice(f":speech_balloon: A {action} needs a second person's approval, "
                                "so ask in a channel approvers can see: "
                                f"`/vdr {action} {views.escape(views.clip(ref, 200))}` there."))
        return
    expire_cards(deps)
    room = find_room(deps, reply, ref)
    if room is None or not _room_allows(deps, reply, chosen, room):
        return
    if room.file_count >= SLOW_CHECK_FILES:
        reply.send(views.notice(f":mag: Comparing the {room.file_count:,} files of "
                                f"*{views.escape(views.clip(room.name, 200))}* with its latest "
                                "export; the request follows in a moment."))
    verdict = guard.check_room(deps.vdr, deps.engine, room)
    if chosen == "purge" and not verdict.ok:
        _refuse_purge(deps, reply, room, verdict)
        return
    _post_request(deps, reply.channel, chosen, room, verdict, requester=reply.user)


def _in_shared_channel(channel: str) -> bool:
    """A card is only useful where others see it: not in a direct message."""
    return not channel.startswith("D")


def _room_allows(deps: Deps, reply: Reply, action: Action, room: Room) -> bool:
    """Whether the room's state and the VDR allow `action`; tells the user when not."""
    name = f"*{views.escape(views.clip(room.name, 200))}*"
    problem = None
    capabilities = deps.vdr.capabilities()
    if action == "trash" and room.status == "trashed":
        problem = f"{name} is already in the trash; `/vdr purge` or `/vdr restore` it."
    elif action == "restore" and room.status != "trashed":
        problem = f"{name} is not in the trash (it is {room.status}); nothing to restore."
    elif action == "restore" and not capabilities.supports_restore:
        problem = "This VDR cannot restore rooms from the trash."
    elif action == "purge" and capabilities.room_purge == "none":
        problem = "This VDR cannot purge rooms; ask its administrators to remove it."
    busy = next((job for job in store.list_jobs(deps.engine, active_only=True, limit=500)
                 if job.room_id == room.id), None)
    if problem is None and busy is not None:
        problem = (f"Job `{busy.id}` ({busy.kind} of {name}) is still {busy.state}; wait for "
                   f"its report, or `/vdr cancel {busy.id}`, then ask again.")
    pending = approvals.pending_for(deps.engine, room.id, action)
    if problem is None and pending is not None:
        problem = (f"A {action} of {name} is already waiting for approval (request "
                   f"`{pending.id}`, asked by <@{pending.requested_by}>).")
    if problem is not None:
        reply.send(views.notice(f":information_source: {problem}"))
    return problem is None


def _refuse_purge(deps: Deps, reply: Reply, room: Room, verdict: guard.GuardVerdict) -> None:
    store.audit(deps.engine, actor=reply.user, action="purge.refused", target=room.id,
                detail={"room_name": room.name, "problem": verdict.problem,
                        "report_id": verdict.report_id, "counts": verdict.counts})
    is_admin = deps.roles.role_of(reply.user) >= Role.ADMIN
    reply.send(refusal_message(room, verdict, offer_override=is_admin, channel=reply.channel))
    log.info("purge of %s refused for %s: %s", room.id, reply.user, verdict.problem)


def _post_request(deps: Deps, channel: str, action: Action, room: Room,
                  verdict: guard.GuardVerdict | None, *, requester: str,
                  override: Override | None = None) -> None:
    runtime = deps.runtime()
    facts = approvals.request_facts(action, room, price_per_gb_month=runtime.price_per_gb_month,
                                    verdict=verdict)
    approval = approvals.create_request(
        deps.engine, action=action, room=room, requested_by=requester,
        expiry_minutes=runtime.approval_expiry_minutes, facts=facts,
        override_id=override.id if override else None,
    )
    try:
        posted = deps.client.chat_postMessage(channel=channel,
                                              **approval_card(approval, override))
    except SlackApiError as error:
        log.warning("approval %s: card not posted in %s: %s", approval.id, channel,
                    error.response.get("error"))
        approvals.withdraw(deps.engine, approval.id, actor=requester,
                           reason=f"the card could not be posted: {error.response.get('error')}")
        _tell(deps, requester, channel, f":warning: I could not post the request in <#{channel}> "
              f"({error.response.get('error')}); invite me there with `/invite` and ask again.")
        return
    approvals.attach_card(deps.engine, approval.id, {"channel": posted["channel"],
                                                     "ts": posted["ts"]})


def _tell(deps: Deps, user: str, channel: str | None, text: str) -> None:
    """An ephemeral note to `user` in `channel`, else a direct message."""
    try:
        if channel:
            deps.client.chat_postEphemeral(channel=channel, user=user, **views.notice(text))
            return
    except SlackApiError:
        pass
    try:
        deps.client.chat_postMessage(channel=user, **views.notice(text))
    except SlackApiError as error:
        log.warning("note to %s not sent: %s", user, error.response.get("error"))


# -- decisions ---------------------------------------------------------------------------------


def decide_from_card(deps: Deps, reply: Reply, approval_id: str, approve: bool) -> None:
    """A click on Approve or Reject: only an approver who did not ask may decide, once."""
    current = approvals.get_request(deps.engine, approval_id)
    if current is None:
        reply.send(views.error_message("This request is unknown here; it may be from another "
                                       "installation of the app."))
        return
    if reply.user != current.requested_by and not deps.roles.is_approver(reply.user):
        _deny_non_approver(deps, reply, current)
        return
    decision = approvals.decide(deps.engine, approval_id, actor=reply.user, approve=approve)
    if decision.outcome == "own_request":
        reply.send(views.notice(f":lock: You asked for this {current.action}, so someone else "
                                "from the approver group must decide it. Four eyes: nobody "
                                "deletes alone."))
    elif decision.outcome in ("approved", "rejected") and decision.approval is not None:
        redraw_card(deps, decision.approval)
        if decision.job is not None:
            _start_job(deps, decision.approval, decision.job)
    elif decision.outcome == "expired" and decision.approval is not None:
        redraw_card(deps, decision.approval)
        reply.send(views.notice(f":hourglass: This request expired at "
                                f"{_when(decision.approval.expires_at)}; nothing was done. Ask "
                                f"again with `/vdr {current.action} "
                                f"{views.escape(views.clip(current.room_name, 200))}`."))
    elif decision.approval is not None:
        done = decision.approval
        reply.send(views.notice(f":information_source: Already {done.state} by "
                                f"<@{done.decided_by}> at {_when(done.decided_at)}; your click "
                                "changed nothing."))


def _deny_non_approver(deps: Deps, reply: Reply, approval: Approval) -> None:
    store.audit(deps.engine, actor=reply.user, action="approval.denied", target=approval.room_id,
          detail={"approval_id": approval.id, "action": approval.action,
                  "room_name": approval.room_name, "requested_by": approval.requested_by,
                  "reason": "not in the approver group"})
    reply.send(views.notice(":lock: Only members of the approver group may approve or reject "
                            "deletions, and you are not one. An admin can change the group "
                            "with `/vdr settings`."))


def _start_job(deps: Deps, approval: Approval, job: Any) -> None:
    """Post the job's message in the card's thread, point the job at it, then queue it.

    The origin is set before the job is queued, so the watcher finds it on the first event.
    """
    origin = approval.origin or {}
    if origin.get("channel") and origin.get("ts"):
        try:
            posted = deps.client.chat_postMessage(channel=origin["channel"],
                                                  thread_ts=origin["ts"],
                                                  **views.job_message(job, None))
            deletion.set_origin(deps.engine, job.id, {"channel": posted["channel"],
                                                      "ts": posted["ts"]})
        except SlackApiError as error:
            log.warning("job %s: thread message not posted: %s", job.id,
                        error.response.get("error"))
    deletion.enqueue(deps.redis, job.id)


def redraw_card(deps: Deps, approval: Approval) -> None:
    """Show the request's current state on its card."""
    origin = approval.origin or {}
    if not origin.get("channel") or not origin.get("ts"):
        return
    override = approvals.get_override(deps.engine, approval.override_id) \
        if approval.override_id else None
    try:
        deps.client.chat_update(channel=origin["channel"], ts=origin["ts"],
                                **approval_card(approval, override))
    except SlackApiError as error:
        log.warning("approval %s: card not updated: %s", approval.id,
                    error.response.get("error"))


def expire_cards(deps: Deps) -> None:
    """Mark requests past their expiry as expired and show it on their cards."""
    for approval in approvals.expire_due(deps.engine):
        redraw_card(deps, approval)


# -- override ----------------------------------------------------------------------------------


def open_override(deps: Deps, reply: Reply, value: str) -> None:
    """The admin's confirmation modal for a purge the guard refused."""
    try:
        deps.roles.require(reply.user, Role.ADMIN)
    except PermissionDenied as error:
        reply.send(views.notice(f":lock: {error}"))
        return
    data = _loads(value)
    try:
        room = deps.vdr.get_room(str(data.get("room")))
    except VdrError as error:
        reply.send(views.error_message(f"The room cannot be read: {error}"))
        return
    metadata = {"room_id": room.id, "channel": data.get("channel"),
                "problem": str(data.get("problem") or "")[:1000]}
    if reply.trigger_id is None:
        return
    try:
        deps.client.views_open(trigger_id=reply.trigger_id, view=override_modal(room, metadata))
    except SlackApiError as error:
        log.warning("override modal not shown to %s: %s", reply.user, error.response.get("error"))


def submit_override(deps: Deps, ack: Ack, user: str, view: dict[str, Any]) -> None:
    """Check the typed name before acknowledging; record the override; post the request."""
    meta = views.metadata(view)
    values = view.get("state", {}).get("values", {})
    typed = _input_value(values, OVERRIDE_NAME)
    reason = _input_value(values, OVERRIDE_REASON).strip()
    if deps.roles.role_of(user) < Role.ADMIN:
        ack(response_action="errors", errors={OVERRIDE_NAME: "Only admins may override."})
        return
    try:
        room = deps.vdr.get_room(str(meta.get("room_id")))
    except VdrError as error:
        ack(response_action="errors", errors={OVERRIDE_NAME: f"The room cannot be read: {error}"})
        return
    try:
        override = approvals.record_override(deps.engine, admin=user, room=room,
                                             typed_name=typed, reason=reason,
                                             guard_problem=meta.get("problem") or None)
    except approvals.OverrideRefused:
        ack(response_action="errors", errors={
            OVERRIDE_NAME: f"That is not the room's exact name. Type {views.clip(room.name, 200)} "
                           "exactly, or cancel."})
        return
    ack()
    channel = str(meta.get("channel") or user)
    _post_request(deps, channel, "purge", room, None, requester=user, override=override)


def _input_value(values: dict[str, Any], block_id: str) -> str:
    return str(values.get(block_id, {}).get(block_id, {}).get("value") or "")


def _loads(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        return {"room": value}
    return data if isinstance(data, dict) else {"room": value}


# -- listeners ---------------------------------------------------------------------------------


def _reply(deps: Deps, body: dict[str, Any], respond: Respond) -> Reply:
    from bot.app import reply_to_action

    return reply_to_action(deps, body, respond)


def _on_decision(deps: Deps, *, approve: bool) -> Any:
    def on_decision(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = _reply(deps, body, respond)
        approval_id = body["actions"][0]["value"]
        guarded(reply, lambda: decide_from_card(deps, reply, approval_id, approve))

    return on_decision


def _on_room_button(deps: Deps, action: str) -> Any:
    def on_room_button(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        request_deletion(deps, _reply(deps, body, respond), action, body["actions"][0]["value"])

    return on_room_button


def _on_override_button(deps: Deps) -> Any:
    def on_override(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = _reply(deps, body, respond)
        open_override(deps, reply, body["actions"][0]["value"])

    return on_override


def _on_override_submit(deps: Deps) -> Any:
    def on_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        submit_override(deps, ack, body["user"]["id"], view)

    return on_submit


# -- Block Kit ---------------------------------------------------------------------------------


def approval_card(approval: Approval, override: Override | None = None) -> views.Message:
    """The request card: the facts, the export check, and buttons or the decision."""
    facts, name = approval.facts, views.escape(views.clip(approval.room_name, 200))
    blocks = [
        views.header(f"{_TITLE[approval.action]} requested: {approval.room_name}"),
        views.section(f"<@{approval.requested_by}> asks to *{_VERB[approval.action]}* {name}. "
                      "A member of the approver group other than the requester must approve."),
        views.fields([
            ("Room", f"{name}\n`{views.escape(views.clip(approval.room_id, 200))}`"),
            ("Status", facts.status),
            ("Size", f"{views.human_bytes(facts.total_bytes)} "
                     f"({views.human_bytes(facts.deleted_bytes)} in the room's trash)"),
            ("Files", f"{facts.file_count:,} files in {facts.folder_count:,} folders"),
            ("Last activity", f"{facts.last_activity_at.date().isoformat()} "
                              f"({views.days_since(facts.last_activity_at)} days ago)"),
            ("Storage saved", _saving(approval.action, facts)),
            ("Latest export", _export_line(facts)),
            ("Expires", _when(approval.expires_at)),
        ]),
    ]
    if override is not None:
        blocks.append(views.section(
            f":warning: *Archive guard overridden* by <@{override.admin}> at {_when(override.at)}"
            f" (the room's name was typed to confirm). Reason: "
            f"{views.escape(views.clip(override.reason or 'none given', 1000))}"))
    blocks.append(_decision_block(approval))
    blocks.append(views.context(f"Request `{approval.id}`"))
    text = f"{_TITLE[approval.action]} of {name} requested: {approval.state}"
    return views.message(text, blocks)


def _decision_block(approval: Approval) -> views.Block:
    if approval.state == "pending":
        confirm = None
        if approval.action == "purge":
            confirm = views.confirm_dialog(
                "Purge for good?", f"*{views.escape(views.clip(approval.room_name, 100))}* and "
                "every file in it will be deleted permanently.", "Approve purge")
        return views.actions(
            views.button("Approve", APPROVE, approval.id, style="primary", confirm=confirm),
            views.button("Reject", REJECT, approval.id, style="danger"),
            block_id=f"approval:{approval.id}",
        )
    who, when = f"<@{approval.decided_by}>", _when(approval.decided_at)
    if approval.state == "approved":
        return views.section(f":white_check_mark: *Approved* by {who} at {when} — job "
                             f"`{approval.job_id}`; progress and report in the thread.")
    if approval.state == "rejected":
        return views.section(f":x: *Rejected* by {who} at {when}. Nothing was done.")
    return views.section(f":hourglass: *Expired* at {_when(approval.expires_at)} without a "
                         f"decision. Nothing was done; ask again with `/vdr {approval.action} "
                         f"{views.escape(views.clip(approval.room_name, 200))}`.")


def _saving(action: str, facts: RequestFacts) -> str:
    full = views.money(facts.total_bytes / views.GIB * facts.price_per_gb_month)
    if action == "purge":
        return (f"{views.money(facts.monthly_saving)} per month "
                f"({views.human_bytes(facts.total_bytes)} at "
                f"{views.money(facts.price_per_gb_month)} per GB-month)")
    if action == "trash":
        return f"none yet: a trashed room is still stored; purging it saves {full} per month"
    return f"none: the restored room stays stored ({full} per month)"


def _export_line(facts: RequestFacts) -> str:
    check = facts.export
    if check is None:
        return "not checked (guard overridden)"
    if check.report_id is None:
        return ":x: none — run `/vdr export` first"
    when = check.export_finished_at.date().isoformat() if check.export_finished_at else "?"
    verdict = ":white_check_mark: matches the live room" if check.ok else \
        f":x: {views.escape(views.clip(check.problem or 'does not match', 500))}"
    return f"report `{check.report_id}` of {when}\n{verdict}"


def refusal_message(room: Room, verdict: guard.GuardVerdict, *, offer_override: bool,
                    channel: str | None) -> views.Message:
    """Why a purge is refused, how to fix it, and (for an admin) the override button."""
    name = views.escape(views.clip(room.name, 200))
    ref = _command_ref(room)
    problem = views.escape(views.clip(verdict.problem or "no verified export", 1500))
    blocks = [
        views.section(f":no_entry: *Purge of {name} refused:* {problem}."),
        views.section(f"*To fix it:* run `/vdr export {ref}`, wait for its report in the "
                      f"thread, then ask again with `/vdr purge {ref}`. Nothing is purged that "
                      "is not verifiably archived."),
    ]
    details = _differences(verdict)
    if details:
        blocks.extend(views.sections(details))
    if offer_override:
        value = json.dumps({"room": room.id, "channel": channel,
                            "problem": views.clip(verdict.problem or "", 1000)})
        blocks.append(views.actions(views.button("Override as admin…", OVERRIDE, value,
                                                 style="danger")))
        blocks.append(views.context("An override purges without a verified archive; you will "
                                    "have to type the room's exact name, and it is recorded."))
    return views.message(f"Purge of {name} refused: {problem}", blocks)


def _differences(verdict: guard.GuardVerdict) -> str:
    lines = []
    for label, paths in (("Added or not archived", verdict.added), ("Changed", verdict.changed),
                         ("Removed", verdict.missing), ("Not exportable", verdict.not_exportable)):
        total = verdict.counts.get(_COUNT_KEYS[label], len(paths))
        if paths:
            shown = "\n".join(f"• `{views.escape(views.clip(p, 200))}`" for p in paths[:5])
            more = f"\n…and {total - 5:,} more" if total > 5 else ""
            lines.append(f"*{label}* ({total:,})\n{shown}{more}")
    return "\n".join(lines)


_COUNT_KEYS = {"Added or not archived": "added", "Changed": "changed", "Removed": "missing",
               "Not exportable": "not_exportable"}


def override_modal(room: Room, metadata: dict[str, Any]) -> views.View:
    """The admin's confirmation: type the room's exact name, and say why."""
    problem = views.escape(views.clip(str(metadata.get("problem") or "no verified export"), 1000))
    blocks = [
        views.section(f":warning: This purges *{views.escape(views.clip(room.name, 200))}* "
                      f"({views.human_bytes(room.size.total_bytes)}, {room.file_count:,} files) "
                      f"*without a verified archive*: {problem}."),
        views.section("The request still needs a second person's approval. The override, the "
                      "name you type and your reason are recorded in the audit log."),
        {"type": "input", "block_id": OVERRIDE_NAME,
         "label": views.plain("Type the room's exact name to confirm"),
         "element": {"type": "plain_text_input", "action_id": OVERRIDE_NAME,
                     "max_length": 1000}},
        {"type": "input", "block_id": OVERRIDE_REASON, "label": views.plain("Reason"),
         "element": {"type": "plain_text_input", "action_id": OVERRIDE_REASON,
                     "multiline": True, "max_length": 2000}},
    ]
    return {"type": "modal", "callback_id": OVERRIDE_MODAL, "title": views.plain("Override guard"),
            "submit": views.plain("Override"), "close": views.plain("Cancel"), "blocks": blocks,
            "private_metadata": json.dumps(metadata)[:3000]}


def _command_ref(room: Room) -> str:
    """How to name the room in a command: its name when plain, else its id."""
    if re.fullmatch(r"[\w .,&()'-]{1,80}", room.name):
        return views.escape(room.name)
    return views.escape(room.id)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "?"
