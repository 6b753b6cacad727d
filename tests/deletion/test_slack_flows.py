"""Deletion from Slack, end to end: signed requests to the app served on loopback, the fake
Slack Web API over HTTP (real WebClient), the proxy over a directory of real rooms, real Redis
and SQLite, and a `vdr worker` process running the jobs; the watcher reports in the threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot import approvals as bot_approvals
from bot import views
from bot.fake_slack import FakeSlack, Message
from bot.watcher import JobWatcher
from jobs import approvals, store
from jobs.approvals import ApprovalRow
from tests.deletion.conftest import World, every_path, tree_bytes
from tests.fixtures.slack import ADMIN, CHANNEL, OPERATOR, VIEWER, grant_roles, serve_bot

APPROVER_A = "U0APPRADA"
APPROVER_B = "U0APPRBOB"


@dataclass
class Chat:
    """The fake workspace with the app and its watcher running against `world`."""

    slack: FakeSlack
    world: World
    deps: Any

    def ask(self, text: str, user: str = OPERATOR) -> None:
        delivery = self.slack.command(text, user=user, channel=CHANNEL)
        assert delivery.status == 200 and not delivery.late

    def card(self, room_name: str) -> Message:
        """The newest request card about `room_name` in the channel."""
        def find() -> Message | None:
            cards = [m for m in self.slack.messages(CHANNEL) if m.ephemeral_to is None
                     and m.thread_ts is None and "requested:" in m.text and room_name in m.text]
            return cards[-1] if cards else None
        return self.slack.wait_for(find, what=f"request card for {room_name}")

    def click(self, card: Message, action_id: str, user: str) -> None:
        delivery = self.slack.click(CHANNEL, card.ts, action_id, user=user)
        assert delivery.status == 200 and not delivery.late

    def told(self, user: str, fragment: str) -> Message:
        """The ephemeral message to `user` containing `fragment` (waits for it)."""
        def find() -> Message | None:
            found = [m for m in self.slack.messages(CHANNEL, user=user)
                     if m.ephemeral_to == user and fragment in text_of(m)]
            return found[-1] if found else None
        return self.slack.wait_for(find, what=f"message to {user} saying {fragment!r}")

    def approval(self, card: Message) -> approvals.Approval:
        request_id = approval_id(card)
        found = approvals.get_request(self.world.engine, request_id)
        assert found is not None
        return found

    def decided(self, card: Message) -> approvals.Approval:
        """The request once a decision reached SQL and the card shows it."""
        self.slack.wait_for(lambda: self.approval(card).state != "pending", what="a decision")
        self.slack.wait_for(lambda: not has_buttons(self.slack.message(CHANNEL, card.ts)),
                            what="the card redrawn")
        return self.approval(card)

    def report_in_thread(self, card: Message) -> Message:
        def find() -> Message | None:
            found = [m for m in self.slack.thread(CHANNEL, card.ts) if " report — " in text_of(m)]
            return found[-1] if found else None
        return self.slack.wait_for(find, timeout_s=30, what="report in the card's thread")


def text_of(message: Message | None) -> str:
    return json.dumps(message.blocks, ensure_ascii=False) + (message.text if message else "") \
        if message else ""


def has_buttons(card: Message | None) -> bool:
    return card is not None and bot_approvals.APPROVE in json.dumps(card.blocks)


def approval_id(card: Message) -> str:
    for block in card.blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == bot_approvals.APPROVE:
                return str(element["value"])
    context = next(b for b in card.blocks if b["type"] == "context")
    return str(context["elements"][0]["text"].split("`")[1])


@pytest.fixture
def chat(world: World, worker: Any, fake_slack: FakeSlack) -> Iterator[Chat]:
    fake_slack.add_user(APPROVER_A, "ada")
    fake_slack.add_user(APPROVER_B, "bo")
    grant_roles(world.engine, world.redis, export_root=str(world.exports),
                approver_group=[OPERATOR, APPROVER_A, APPROVER_B], price_per_gb_month=0.25)
    with serve_bot(fake_slack, redis=world.redis, engine=world.engine, vdr=world.vdr) as deps:
        watcher = JobWatcher(deps, edit_interval_s=0.2, summary_interval_s=0.5,
                             block_ms=100).start()
        try:
            yield Chat(fake_slack, world, deps)
        finally:
            watcher.stop()


def audit_story(engine: Any, request_id: str) -> list[tuple[str, str]]:
    return [(event.actor, event.action) for event in approvals.history(engine, request_id)]


# -- four eyes ---------------------------------------------------------------------------------


def test_requester_and_non_approvers_cannot_decide_and_the_card_stays(chat: Chat) -> None:
    chat.ask('trash "Project Beta"')
    card = chat.card("Project Beta")
    shown = chat.slack.message(CHANNEL, card.ts)

    chat.click(card, bot_approvals.APPROVE, OPERATOR)
    chat.told(OPERATOR, "You asked for this trash")
    chat.click(card, bot_approvals.APPROVE, VIEWER)
    chat.told(VIEWER, "Only members of the approver group")
    chat.click(card, bot_approvals.REJECT, ADMIN)
    chat.told(ADMIN, "Only members of the approver group")

    after = chat.slack.message(CHANNEL, card.ts)
    assert after is not None and shown is not None
    assert after.blocks == shown.blocks and after.edits == []
    request = chat.approval(card)
    assert request.state == "pending" and request.job_id is None
    assert store.list_jobs(chat.world.engine, active_only=False) == []
    assert audit_story(chat.world.engine, request.id) == [
        (OPERATOR, "approval.requested"), (OPERATOR, "approval.denied"),
        (VIEWER, "approval.denied"), (ADMIN, "approval.denied")]

    chat.click(card, bot_approvals.REJECT, APPROVER_A)
    rejected = chat.decided(card)
    assert (rejected.state, rejected.decided_by) == ("rejected", APPROVER_A)
    final = chat.slack.message(CHANNEL, card.ts)
    assert final is not None and f"*Rejected* by <@{APPROVER_A}>" in text_of(final)
    assert len(final.edits) == 1
    assert chat.world.vdr.find_room("Project Beta").status == "active"


def test_a_second_click_changes_nothing(chat: Chat) -> None:
    chat.ask('trash "Project Beta"')
    card = chat.card("Project Beta")
    chat.click(card, bot_approvals.REJECT, APPROVER_A)
    chat.decided(card)

    click_stale(chat, card, bot_approvals.APPROVE, APPROVER_B)

    chat.told(APPROVER_B, "Already rejected")
    final = chat.slack.message(CHANNEL, card.ts)
    assert final is not None and len(final.edits) == 1
    assert chat.approval(card).state == "rejected"
    assert store.list_jobs(chat.world.engine, active_only=False) == []


def click_stale(chat: Chat, card: Message, action_id: str, user: str) -> None:
    """A click on the card as first shown: what a client that has not redrawn it sends."""
    with chat.slack.store.lock:
        stored = chat.slack.store.find_message(CHANNEL, card.ts)
        assert stored is not None
        current, stored.blocks = stored.blocks, card.blocks
    try:
        chat.click(card, action_id, user)
    finally:
        with chat.slack.store.lock:
            stored.blocks = current


def test_two_approvers_clicking_at_once_produce_one_job(chat: Chat) -> None:
    beta = chat.world.vdr.find_room("Project Beta")
    chat.slack.command("search Beta", user=OPERATOR, channel=CHANNEL)
    results = chat.slack.wait_for(lambda: [m for m in chat.slack.messages(CHANNEL, user=OPERATOR)
                                           if m.ephemeral_to == OPERATOR
                                           and "Project Beta" in text_of(m)], what="results")
    chat.slack.click(CHANNEL, results[-1].ts, views.ROOM_MENU, user=OPERATOR,
                     value=f"trash:{beta.id}")
    card = chat.card("Project Beta")

    barrier = threading.Barrier(2)

    def click(user: str) -> None:
        barrier.wait()
        chat.click(card, bot_approvals.APPROVE, user)

    threads = [threading.Thread(target=click, args=(u,)) for u in (APPROVER_A, APPROVER_B)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    request = chat.decided(card)
    loser = APPROVER_B if request.decided_by == APPROVER_A else APPROVER_A
    chat.told(loser, "Already approved")
    job = chat.world.wait_for_job(str(request.job_id))
    assert job.state == "succeeded"
    assert [j.id for j in store.list_jobs(chat.world.engine, active_only=False)] == [job.id]
    story = audit_story(chat.world.engine, request.id)
    assert story.count((request.decided_by or "", "approval.approved")) == 1
    assert (loser, "approval.ignored") in story
    assert [action for _, action in story].count("deletion.started") == 1
    assert not (chat.world.root / "Project Beta").exists()
    report = chat.report_in_thread(card)
    assert "Trash report" in text_of(report) and "Succeeded" in text_of(report)


def test_an_expired_request_does_nothing(chat: Chat) -> None:
    chat.ask('trash "Project Beta"')
    card = chat.card("Project Beta")
    request = chat.approval(card)
    with chat.world.engine.begin() as connection:
        connection.execute(sa.update(ApprovalRow).where(ApprovalRow.id == request.id).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    chat.click(card, bot_approvals.APPROVE, APPROVER_A)

    chat.told(APPROVER_A, "This request expired")
    expired = chat.decided(card)
    assert expired.state == "expired" and expired.job_id is None
    assert "*Expired*" in text_of(chat.slack.message(CHANNEL, card.ts))
    assert store.list_jobs(chat.world.engine, active_only=False) == []
    assert chat.world.vdr.find_room("Project Beta").status == "active"
    assert (APPROVER_A, "approval.too_late") in audit_story(chat.world.engine, request.id)


# -- the archive guard -------------------------------------------------------------------------


def test_purge_without_an_export_is_refused_with_how_to_fix_it(chat: Chat) -> None:
    chat.ask('purge "Project Beta"')

    refusal = chat.told(OPERATOR, "refused")

    body = text_of(refusal)
    assert "no successful export of this room exists" in body
    assert "/vdr export Project Beta" in body and "/vdr purge Project Beta" in body
    assert bot_approvals.OVERRIDE not in body  # operators are not offered an override
    assert not [m for m in chat.slack.messages(CHANNEL) if m.ephemeral_to is None]
    events = store.list_audit(chat.world.engine, target=chat.world.vdr.find_room("Beta").id)
    assert [(e.actor, e.action) for e in events] == [(OPERATOR, "purge.refused")]


def test_purge_after_an_export_removes_the_room_and_the_audit_tells_who_and_what(
        chat: Chat) -> None:
    export = chat.world.export("Project Beta")
    beta = chat.world.vdr.find_room("Project Beta")
    chat.ask('purge "Project Beta"')
    card = chat.card("Project Beta")
    body = text_of(card)
    assert f"report `{export.id}`" in body and "matches the live room" in body
    assert "3 files in 1 folders" in body and "per month" in body

    chat.click(card, bot_approvals.APPROVE, APPROVER_A)
    request = chat.decided(card)
    job = chat.world.wait_for_job(str(request.job_id))

    assert job.state == "succeeded"
    assert not any("Beta" in path for path in every_path(chat.world.root))
    report = chat.report_in_thread(card)
    assert "Purge report" in text_of(report) and "3 of 3" in text_of(report)
    story = approvals.history(chat.world.engine, request.id)
    asked = next(e for e in story if e.action == "approval.requested")
    approved = next(e for e in story if e.action == "approval.approved")
    ran = [e.action for e in story if e.actor == "vdr-worker"]
    removed = next(e for e in story if e.action == "room.purged")
    assert (asked.actor, approved.actor) == (OPERATOR, APPROVER_A)
    assert ran == ["deletion.started", "guard.checked", "room.trashed", "room.purge_sent",
                   "room.gone", "room.purged", "deletion.succeeded"]
    assert (removed.detail["files"], removed.detail["bytes"]) == (3, beta.size.total_bytes)
    assert removed.detail["manifest_locations"] == export.manifest_locations


def test_a_room_changed_after_its_export_blocks_the_purge(chat: Chat) -> None:
    chat.world.export("Project Alpha")
    scan = chat.world.root / "Project Alpha" / "2 Financial" / "Scan.tif"
    scan.write_bytes(b"rescanned" + scan.read_bytes()[9:])

    chat.ask('purge "Project Alpha"')

    refusal = text_of(chat.told(OPERATOR, "refused"))
    assert "1 item(s) changed" in refusal and "/2 Financial/Scan.tif" in refusal
    assert "/vdr export Project Alpha" in refusal
    assert scan.read_bytes().startswith(b"rescanned")


def test_a_room_changed_while_its_purge_awaits_approval_is_not_purged(chat: Chat) -> None:
    chat.world.export("Project Beta")
    chat.ask('purge "Project Beta"')
    card = chat.card("Project Beta")
    (chat.world.root / "Project Beta" / "late.txt").write_bytes(b"added after the request")

    chat.click(card, bot_approvals.APPROVE, APPROVER_A)
    request = chat.decided(card)
    job = chat.world.wait_for_job(str(request.job_id))

    assert job.state == "failed"
    assert (chat.world.root / "Project Beta" / "late.txt").is_file()
    assert (chat.world.root / "Project Beta" / "NDA.pdf").is_file()
    report = chat.report_in_thread(card)
    assert "Failed" in text_of(report) and "changed after the purge was requested" in \
        text_of(report)


# -- override ----------------------------------------------------------------------------------


def test_an_override_with_the_wrong_name_is_refused_and_the_right_one_is_recorded(
        chat: Chat) -> None:
    chat.ask('purge "Project Beta"', user=ADMIN)
    refusal = chat.told(ADMIN, "refused")
    chat.slack.click(CHANNEL, refusal.ts, bot_approvals.OVERRIDE, user=ADMIN)
    modal = chat.slack.wait_for(lambda: (v := chat.slack.open_modal(ADMIN))
                                and v.body.get("callback_id") == bot_approvals.OVERRIDE_MODAL
                                and v, what="override modal")

    wrong = chat.slack.submit(modal.id, user=ADMIN, values={
        bot_approvals.OVERRIDE_NAME: "project beta", bot_approvals.OVERRIDE_REASON: "paper"})

    answer = wrong.json()
    assert answer["response_action"] == "errors"
    assert "not the room's exact name" in answer["errors"][bot_approvals.OVERRIDE_NAME]
    assert chat.slack.open_modal(ADMIN) is not None
    assert not [m for m in chat.slack.messages(CHANNEL) if "requested:" in m.text]
    beta = chat.world.vdr.find_room("Project Beta")
    refused = [e for e in store.list_audit(chat.world.engine, target=beta.id)
               if e.action == "override.refused"]
    assert [(e.actor, e.detail["typed_name"]) for e in refused] == [(ADMIN, "project beta")]

    right = chat.slack.submit(modal.id, user=ADMIN, values={
        bot_approvals.OVERRIDE_NAME: "Project Beta",
        bot_approvals.OVERRIDE_REASON: "archived on paper by the notary"})
    assert right.status == 200 and not (right.json() or {}).get("errors")
    card = chat.card("Project Beta")
    assert f"overridden* by <@{ADMIN}>" in text_of(card)
    assert "archived on paper by the notary" in text_of(card)

    chat.click(card, bot_approvals.APPROVE, ADMIN)
    chat.told(ADMIN, "You asked for this purge")
    chat.click(card, bot_approvals.APPROVE, APPROVER_B)
    request = chat.decided(card)
    assert chat.world.wait_for_job(str(request.job_id)).state == "succeeded"
    assert not any("Beta" in path for path in every_path(chat.world.root))
    actions = [action for _, action in audit_story(chat.world.engine, request.id)]
    assert actions[:2] == ["override.recorded", "approval.requested"]
    assert "guard.overridden" in actions and "room.purged" in actions


# -- restore -----------------------------------------------------------------------------------


def test_a_room_trashed_from_slack_is_restored_byte_for_byte_from_its_show_button(
        chat: Chat) -> None:
    before = tree_bytes(chat.world.root)
    chat.ask('trash "Project Alpha"')
    trash_card = chat.card("Project Alpha")
    chat.click(trash_card, bot_approvals.APPROVE, APPROVER_A)
    trashed = chat.decided(trash_card)
    assert chat.world.wait_for_job(str(trashed.job_id)).state == "succeeded"
    assert not (chat.world.root / "Project Alpha").exists()

    chat.ask('show "Project Alpha"')
    shown = chat.told(OPERATOR, "Restore…")
    chat.slack.click(CHANNEL, shown.ts, views.ROOM_RESTORE, user=OPERATOR)
    restore_card = chat.slack.wait_for(
        lambda: [m for m in chat.slack.messages(CHANNEL) if m.text.startswith("Restore of")],
        what="restore card")[-1]
    chat.click(restore_card, bot_approvals.APPROVE, APPROVER_B)
    restored = chat.decided(restore_card)

    assert chat.world.wait_for_job(str(restored.job_id)).state == "succeeded"
    assert tree_bytes(chat.world.root) == before
    assert (chat.world.root / "Project Alpha" / "3 Empty Folder").is_dir()
    assert "Restore report" in text_of(chat.report_in_thread(restore_card))


# -- where requests can be made ----------------------------------------------------------------


def test_a_request_from_a_direct_message_is_sent_to_a_channel(chat: Chat) -> None:
    delivery = chat.slack.command('trash "Project Beta"', user=OPERATOR, channel="D0OPER001")
    assert delivery.status == 200

    chat.slack.wait_for(lambda: [m for m in chat.slack.messages("D0OPER001", user=OPERATOR)
                                 if "ask in a channel approvers can see" in text_of(m)],
                        what="the answer in the direct message")
    assert approvals.pending_for(chat.world.engine, chat.world.vdr.find_room("Beta").id,
                                 "trash") is None


def test_a_card_that_cannot_be_posted_withdraws_its_request(chat: Chat) -> None:
    chat.slack.add_channel("C0SECRET1", "secret", is_private=True, bot_member=False)

    chat.slack.command('trash "Project Beta"', user=OPERATOR, channel="C0SECRET1")

    note = chat.slack.wait_for(lambda: [m for m in chat.slack.messages(user=OPERATOR)
                                        if "invite me there" in text_of(m)],
                               what="a note on the failed post")
    assert note[-1].channel.startswith("D")
    beta = chat.world.vdr.find_room("Project Beta")
    assert approvals.pending_for(chat.world.engine, beta.id, "trash") is None
    events = [e.action for e in store.list_audit(chat.world.engine, target=beta.id)]
    assert events == ["approval.withdrawn", "approval.requested"]


def test_a_room_with_a_job_still_running_cannot_be_requested(chat: Chat) -> None:
    beta = chat.world.vdr.find_room("Project Beta")
    running = store.JobRecord(id="exp0running", kind="export", room_id=beta.id,
                              room_name=beta.name, requested_by=OPERATOR, state="running",
                              destinations=["/x"], created_at=datetime.now(UTC))
    store.insert_job(chat.world.engine, running, params={})

    chat.ask('trash "Project Beta"')

    chat.told(OPERATOR, "Job `exp0running` (export of *Project Beta*) is still running")
    assert approvals.pending_for(chat.world.engine, beta.id, "trash") is None
