"""The Block Kit checker: it must catch each limit Slack enforces, and pass what Slack accepts."""

from __future__ import annotations

from typing import Any

from bot import blockkit


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(label: str, action_id: str = "a") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}}


def test_a_plain_message_passes() -> None:
    assert blockkit.message_problems("hi", [_section("hello")]) == []


def test_more_than_50_blocks_in_a_message_fails() -> None:
    problems = blockkit.message_problems("x", [_section("s")] * 51)
    assert problems == ["[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]


def test_section_text_over_3000_fails_with_its_pointer() -> None:
    problems = blockkit.message_problems("x", [_section("ok"), _section("y" * 3001)])
    assert problems == ["[ERROR] must be less than 3001 characters "
                        "[json-pointer:/blocks/1/text/text]"]
    assert blockkit.message_problems("x", [_section("y" * 3000)]) == []


def test_message_text_over_40000_fails() -> None:
    assert blockkit.message_problems("t" * 40_001, None)
    assert not blockkit.message_problems("t" * 40_000, None)


def test_actions_block_over_25_elements_fails() -> None:
    block = {"type": "actions", "elements": [_button("b", f"a{i}") for i in range(26)]}
    assert blockkit.message_problems("x", [block])


def test_button_label_over_75_fails() -> None:
    block = {"type": "actions", "elements": [_button("b" * 76)]}
    assert any("elements/0/text/text" in p for p in blockkit.message_problems("x", [block]))


def test_duplicate_block_ids_and_action_ids_fail() -> None:
    blocks = [dict(_section("a"), block_id="same"), dict(_section("b"), block_id="same")]
    assert any("duplicate block_id" in p for p in blockkit.message_problems("x", blocks))
    block = {"type": "actions", "elements": [_button("one", "dup"), _button("two", "dup")]}
    assert any("duplicate action_id" in p for p in blockkit.message_problems("x", [block]))


def test_overflow_takes_at_most_five_options() -> None:
    options = [{"text": {"type": "plain_text", "text": f"o{i}"}, "value": f"v{i}"}
               for i in range(6)]
    block = dict(_section("s"), accessory={"type": "overflow", "action_id": "m",
                                           "options": options})
    assert blockkit.message_problems("x", [block])
    block["accessory"]["options"] = options[:5]
    assert not blockkit.message_problems("x", [block])


def test_header_must_be_plain_text_up_to_150() -> None:
    header = {"type": "header", "text": {"type": "mrkdwn", "text": "h"}}
    assert blockkit.message_problems("x", [header])
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    assert blockkit.message_problems("x", [header])


def test_unknown_block_type_fails() -> None:
    assert blockkit.message_problems("x", [{"type": "carousel"}])


def test_modal_limits() -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "t" * 25},
             "blocks": [_section("s")] * 101}
    problems = blockkit.view_problems(modal)
    assert any("/view/title/text" in p for p in problems)
    assert any("no more than 100" in p for p in problems)


def test_modal_with_inputs_needs_a_submit_button() -> None:
    field = {"type": "input", "label": {"type": "plain_text", "text": "L"},
             "element": {"type": "plain_text_input", "action_id": "v"}}
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": [field]}
    assert any("/view/submit" in p for p in blockkit.view_problems(modal))
    modal["submit"] = {"type": "plain_text", "text": "Go"}
    assert blockkit.view_problems(modal) == []


def test_home_allows_100_blocks() -> None:
    assert blockkit.view_problems({"type": "home", "blocks": [_section("s")] * 100}) == []
