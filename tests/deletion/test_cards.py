"""Deletion cards, the refusal and the override modal fit Block Kit and escape room names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import approvals as bot_approvals
from bot import blockkit, grammar
from bot.views import help_message
from jobs import approvals
from jobs.guard import GuardVerdict
from tests.deletion.test_approvals import make_room

HOSTILE = "<!channel> *Deal* & <https://evil.test|click> " + "Ω" * 900


def request(state: str, action: str = "purge", name: str = HOSTILE,
            **changes: Any) -> approvals.Approval:
    room = make_room(name)
    verdict = GuardVerdict(room_id=room.id, room_name=room.name, room_etag="e", ok=False,
                           problem="the room differs from its export: " + "x" * 3000,
                           report_id="r1", export_finished_at=datetime.now(UTC))
    facts = approvals.request_facts(action, room, price_per_gb_month=0.25,  # type: ignore[arg-type]
                                    verdict=verdict)
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "id": "a1", "action": action, "room_id": room.id, "room_name": room.name,
        "room_etag": "e", "requested_by": "U1", "requested_at": now,
        "expires_at": now + timedelta(hours=1), "state": state, "facts": facts,
        "decided_by": "U2" if state in ("approved", "rejected") else None,
        "decided_at": now if state in ("approved", "rejected") else None,
        "job_id": "j1" if state == "approved" else None,
    }
    data.update(changes)
    return approvals.Approval.model_validate(data)


def mrkdwn_texts(node: Any) -> list[str]:
    """Every mrkdwn text in a block tree (plain_text is never parsed for links or mentions)."""
    if isinstance(node, list):
        return [text for child in node for text in mrkdwn_texts(child)]
    if not isinstance(node, dict):
        return []
    if node.get("type") == "mrkdwn":
        return [node["text"]]
    return [text for value in node.values() for text in mrkdwn_texts(value)]


@pytest.mark.parametrize("state", ["pending", "approved", "rejected", "expired"])
@pytest.mark.parametrize("action", ["trash", "purge", "restore"])
def test_cards_fit_block_kit_and_escape_the_room_name(state: str, action: str) -> None:
    override = approvals.Override(id="o1", at=datetime.now(UTC), admin="U9", room_id="r",
                                  room_name=HOSTILE, room_etag="e", reason="<@U1> " * 500)

    card = bot_approvals.approval_card(request(state, action), override)

    assert blockkit.message_problems(card["text"], card["blocks"]) == []
    body = " ".join(mrkdwn_texts(card["blocks"]))
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body
    assert "<https://evil.test" not in body
    buttons = [e["action_id"] for b in card["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert buttons == ([bot_approvals.APPROVE, bot_approvals.REJECT] if state == "pending"
                       else [])


def test_a_pending_purge_asks_for_confirmation_before_approving() -> None:
    card = bot_approvals.approval_card(request("pending", "purge", name="Project Falcon"))
    approve = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == bot_approvals.APPROVE)
    assert "permanently" in approve["confirm"]["text"]["text"]


def test_the_card_states_who_decided_and_when() -> None:
    decided = request("approved", "trash", name="Project Falcon")
    card = bot_approvals.approval_card(decided)
    when = decided.decided_at.strftime("%Y-%m-%d %H:%M UTC")  # type: ignore[union-attr]
    assert f"*Approved* by <@U2> at {when}" in str(card["blocks"])


def test_refusal_and_override_modal_fit_with_long_difference_lists() -> None:
    room = make_room(HOSTILE)
    paths = [f"/folder/{'n' * 250}-{i}" for i in range(20)]
    verdict = GuardVerdict(room_id=room.id, room_name=room.name, room_etag="e", ok=False,
                           problem="p " * 2000, added=paths, changed=paths, missing=paths,
                           counts={"added": 5000, "changed": 20, "missing": 20})

    refusal = bot_approvals.refusal_message(room, verdict, offer_override=True, channel="C1")
    modal = bot_approvals.override_modal(room, {"room_id": room.id, "problem": "p" * 5000})

    assert blockkit.message_problems(refusal["text"], refusal["blocks"]) == []
    assert "…and 4,995 more" in str(refusal["blocks"])
    assert f"/vdr export {room.id}" in str(refusal["blocks"])  # a hostile name is given by id
    assert blockkit.view_problems(modal) == []


def test_the_grammar_knows_the_three_deletions_and_help_explains_them() -> None:
    assert grammar.parse('purge "Project Falcon"') == grammar.Deletion("purge", "Project Falcon")
    assert grammar.parse("trash Falcon") == grammar.Deletion("trash", "Falcon")
    assert grammar.parse("restore rm-123") == grammar.Deletion("restore", "rm-123")
    missing = grammar.parse("purge")
    assert isinstance(missing, grammar.Help) and "`/vdr purge <room>`" in (missing.problem or "")
    text = str(help_message()["blocks"])
    assert all(f"/vdr {verb} <room>" in text for verb in ("trash", "purge", "restore"))
