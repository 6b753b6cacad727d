"""Block Kit's published limits, and a checker that names every breach the way Slack does.

The app's builders stay inside these limits by construction (paging, splitting, truncating);
the fake Slack server runs the same checker on every payload it receives, so a builder that
ever oversteps fails its test with Slack's own error (`invalid_blocks`) instead of in a
customer's channel. Each problem reads like Slack's: `"[ERROR] ... [json-pointer:/blocks/3/...]"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MESSAGE_BLOCKS_MAX = 50
"""Blocks in one message."""

VIEW_BLOCKS_MAX = 100
"""Blocks in one modal or App Home view."""

MESSAGE_TEXT_MAX = 40_000
"""Characters of a message's top-level `text`."""

TEXT_MAX = 3000
"""Characters of any text object, a section's text among them."""

SECTION_FIELDS_MAX = 10
"""Fields of one section block."""

SECTION_FIELD_TEXT_MAX = 2000
"""Characters of one section field."""

HEADER_TEXT_MAX = 150
"""Characters of a header block's text."""

CONTEXT_ELEMENTS_MAX = 10
"""Elements of one context block."""

ACTIONS_ELEMENTS_MAX = 25
"""Elements of one actions block."""

BUTTON_TEXT_MAX = 75
"""Characters of a button's label."""

BUTTON_VALUE_MAX = 2000
"""Characters of a button's value."""

URL_MAX = 3000
"""Characters of a button's or image's URL."""

ID_MAX = 255
"""Characters of a block_id, action_id, callback_id or external_id."""

OPTION_TEXT_MAX = 75
"""Characters of an option's label or description."""

OPTION_VALUE_MAX = 150
"""Characters of an option's value."""

OVERFLOW_OPTIONS_MAX = 5
"""Options of an overflow menu."""

SELECT_OPTIONS_MAX = 100
"""Options of a static select."""

CHOICE_OPTIONS_MAX = 10
"""Options of a checkbox group or a radio button group."""

PLACEHOLDER_MAX = 150
"""Characters of a placeholder."""

INPUT_LABEL_MAX = 2000
"""Characters of an input block's label or hint."""

INPUT_VALUE_MAX = 3000
"""Characters a plain-text input may be limited to (its `max_length`)."""

VIEW_TITLE_MAX = 24
"""Characters of a modal's title, submit and close labels."""

PRIVATE_METADATA_MAX = 3000
"""Characters of a view's private_metadata."""

_INTERACTIVE = {
    "button", "overflow", "static_select", "multi_static_select", "external_select",
    "users_select", "multi_users_select", "conversations_select", "multi_conversations_select",
    "channels_select", "multi_channels_select", "checkboxes", "radio_buttons", "datepicker",
    "timepicker", "datetimepicker", "plain_text_input", "number_input", "email_text_input",
    "url_text_input",
}
_ACCESSORY = _INTERACTIVE - {"plain_text_input", "number_input", "email_text_input",
                             "url_text_input"} | {"image"}
_INPUT_ELEMENTS = _INTERACTIVE - {"button", "overflow"}


class _Checker:
    """Walks a payload, collecting Slack-style problems with the JSON pointer of each."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"[ERROR] {message} [json-pointer:{where}]")

    def max_len(self, where: str, value: Any, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.fail(where, f"must be less than {limit + 1} characters")

    def text(self, where: str, obj: Any, limit: int = TEXT_MAX, *,
             plain_only: bool = False) -> None:
        if not isinstance(obj, dict):
            self.fail(where, "must be a text object")
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
            self.fail(f"{where}/type", "must be " + ("plain_text" if plain_only else
                                                     "plain_text or mrkdwn"))
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            self.fail(f"{where}/text", "must be more than 0 characters")
            return
        self.max_len(f"{where}/text", value, limit)

    def option(self, where: str, option: Any) -> None:
        if not isinstance(option, dict):
            self.fail(where, "must be an option object")
            return
        self.text(f"{where}/text", option.get("text"), OPTION_TEXT_MAX)
        if "description" in option:
            self.text(f"{where}/description", option["description"], OPTION_TEXT_MAX)
        value = option.get("value")
        if not isinstance(value, str) or not value:
            self.fail(f"{where}/value", "must be more than 0 characters")
        self.max_len(f"{where}/value", value, OPTION_VALUE_MAX)

    def options(self, where: str, options: Any, low: int, high: int) -> None:
        if not isinstance(options, list) or not low <= len(options) <= high:
            self.fail(where, f"must provide between {low} and {high} items")
            return
        for i, option in enumerate(options):
            self.option(f"{where}/{i}", option)

    def element(self, where: str, element: Any, allowed: set[str]) -> None:
        if not isinstance(element, dict) or element.get("type") not in allowed:
            kind = element.get("type") if isinstance(element, dict) else None
            self.fail(f"{where}/type", f"element type {kind!r} is not allowed here")
            return
        self.max_len(f"{where}/action_id", element.get("action_id"), ID_MAX)
        kind = element["type"]
        if "placeholder" in element:
            self.text(f"{where}/placeholder", element["placeholder"], PLACEHOLDER_MAX,
                      plain_only=True)
        if "confirm" in element:
            self.confirm(f"{where}/confirm", element["confirm"])
        if kind == "button":
            self.text(f"{where}/text", element.get("text"), BUTTON_TEXT_MAX, plain_only=True)
            self.max_len(f"{where}/value", element.get("value"), BUTTON_VALUE_MAX)
            self.max_len(f"{where}/url", element.get("url"), URL_MAX)
            if element.get("style") not in (None, "primary", "danger"):
                self.fail(f"{where}/style", "must be primary or danger")
        elif kind == "overflow":
            self.options(f"{where}/options", element.get("options"), 1, OVERFLOW_OPTIONS_MAX)
        elif kind in ("static_select", "multi_static_select"):
            self.options(f"{where}/options", element.get("options"), 1, SELECT_OPTIONS_MAX)
        elif kind in ("checkboxes", "radio_buttons"):
            self.options(f"{where}/options", element.get("options"), 1, CHOICE_OPTIONS_MAX)
        elif kind == "plain_text_input":
            self.max_len(f"{where}/initial_value", element.get("initial_value"), INPUT_VALUE_MAX)
            if int(element.get("max_length") or 0) > INPUT_VALUE_MAX:
                self.fail(f"{where}/max_length", f"must be at most {INPUT_VALUE_MAX}")
        elif kind == "number_input" and not isinstance(element.get("is_decimal_allowed"), bool):
            self.fail(f"{where}/is_decimal_allowed", "is required")
        elif kind == "image":
            self.max_len(f"{where}/image_url", element.get("image_url"), URL_MAX)
            self.max_len(f"{where}/alt_text", element.get("alt_text"), INPUT_LABEL_MAX)

    def confirm(self, where: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            self.fail(where, "must be a confirmation dialog object")
            return
        self.text(f"{where}/title", obj.get("title"), 100, plain_only=True)
        self.text(f"{where}/text", obj.get("text"), 300)
        self.text(f"{where}/confirm", obj.get("confirm"), 30, plain_only=True)
        self.text(f"{where}/deny", obj.get("deny"), 30, plain_only=True)

    def action_ids_unique(self, where: str, elements: Iterable[Any]) -> None:
        seen: set[str] = set()
        for i, element in enumerate(elements):
            action_id = element.get("action_id") if isinstance(element, dict) else None
            if action_id is not None and action_id in seen:
                self.fail(f"{where}/{i}/action_id", f"duplicate action_id {action_id!r}")
            if action_id is not None:
                seen.add(action_id)

    def block(self, where: str, block: Any) -> None:
        if not isinstance(block, dict):
            self.fail(where, "must be a block object")
            return
        self.max_len(f"{where}/block_id", block.get("block_id"), ID_MAX)
        check = _BLOCKS.get(str(block.get("type")))
        if check is None:
            self.fail(f"{where}/type", f"unsupported block type {block.get('type')!r}")
            return
        check(self, where, block)

    def blocks(self, where: str, blocks: Any, limit: int) -> None:
        if not isinstance(blocks, list):
            self.fail(where, "must be an array")
            return
        if len(blocks) > limit:
            self.fail(where, f"no more than {limit} items allowed")
        seen: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(f"{where}/{i}", block)
            block_id = block.get("block_id") if isinstance(block, dict) else None
            if block_id is not None and block_id in seen:
                self.fail(f"{where}/{i}/block_id", f"duplicate block_id {block_id!r}")
            if block_id is not None:
                seen.add(block_id)


def _section(c: _Checker, where: str, block: dict[str, Any]) -> None:
    if "text" not in block and "fields" not in block:
        c.fail(where, "must provide text or fields")
    if "text" in block:
        c.text(f"{where}/text", block["text"])
    fields = block.get("fields")
    if fields is not None:
        if not isinstance(fields, list) or not 1 <= len(fields) <= SECTION_FIELDS_MAX:
            c.fail(f"{where}/fields", f"must provide between 1 and {SECTION_FIELDS_MAX} items")
        else:
            for i, field in enumerate(fields):
                c.text(f"{where}/fields/{i}", field, SECTION_FIELD_TEXT_MAX)
    if "accessory" in block:
        c.element(f"{where}/accessory", block["accessory"], _ACCESSORY)


def _header(c: _Checker, where: str, block: dict[str, Any]) -> None:
    c.text(f"{where}/text", block.get("text"), HEADER_TEXT_MAX, plain_only=True)


def _divider(c: _Checker, where: str, block: dict[str, Any]) -> None:
    return None


def _context(c: _Checker, where: str, block: dict[str, Any]) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ELEMENTS_MAX:
        c.fail(f"{where}/elements", f"must provide between 1 and {CONTEXT_ELEMENTS_MAX} items")
        return
    for i, element in enumerate(elements):
        if isinstance(element, dict) and element.get("type") == "image":
            c.element(f"{where}/elements/{i}", element, {"image"})
        else:
            c.text(f"{where}/elements/{i}", element)


def _actions(c: _Checker, where: str, block: dict[str, Any]) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= ACTIONS_ELEMENTS_MAX:
        c.fail(f"{where}/elements", f"must provide between 1 and {ACTIONS_ELEMENTS_MAX} items")
        return
    for i, element in enumerate(elements):
        c.element(f"{where}/elements/{i}", element, _INTERACTIVE - {"plain_text_input"})
    c.action_ids_unique(f"{where}/elements", elements)


def _input(c: _Checker, where: str, block: dict[str, Any]) -> None:
    c.text(f"{where}/label", block.get("label"), INPUT_LABEL_MAX, plain_only=True)
    if "hint" in block:
        c.text(f"{where}/hint", block["hint"], INPUT_LABEL_MAX, plain_only=True)
    c.element(f"{where}/element", block.get("element"), _INPUT_ELEMENTS)


def _image(c: _Checker, where: str, block: dict[str, Any]) -> None:
    c.max_len(f"{where}/image_url", block.get("image_url"), URL_MAX)
    c.max_len(f"{where}/alt_text", block.get("alt_text"), INPUT_LABEL_MAX)
    if "title" in block:
        c.text(f"{where}/title", block["title"], 2000, plain_only=True)


def _rich_text(c: _Checker, where: str, block: dict[str, Any]) -> None:
    if not isinstance(block.get("elements"), list):
        c.fail(f"{where}/elements", "must be an array")


_BLOCKS = {
    "section": _section, "header": _header, "divider": _divider, "context": _context,
    "actions": _actions, "input": _input, "image": _image, "rich_text": _rich_text,
}


def message_problems(text: Any, blocks: Any) -> list[str]:
    """Every way a message's `text` and `blocks` break Block Kit's limits (empty: none)."""
    checker = _Checker()
    if isinstance(text, str) and len(text) > MESSAGE_TEXT_MAX:
        checker.fail("/text", f"must be less than {MESSAGE_TEXT_MAX + 1} characters")
    if blocks is not None:
        checker.blocks("/blocks", blocks, MESSAGE_BLOCKS_MAX)
    return checker.problems


def view_problems(view: Any) -> list[str]:
    """Every way a modal or Home view breaks Block Kit's limits (empty: none)."""
    checker = _Checker()
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        checker.fail("/view/type", "must be modal or home")
        return checker.problems
    if view["type"] == "modal":
        checker.text("/view/title", view.get("title"), VIEW_TITLE_MAX, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            checker.text(f"/view/{key}", view[key], VIEW_TITLE_MAX, plain_only=True)
    for key in ("callback_id", "external_id"):
        checker.max_len(f"/view/{key}", view.get(key), ID_MAX)
    checker.max_len("/view/private_metadata", view.get("private_metadata"), PRIVATE_METADATA_MAX)
    blocks = view.get("blocks")
    checker.blocks("/view/blocks", blocks, VIEW_BLOCKS_MAX)
    has_input = isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "input" for b in blocks
    )
    if view["type"] == "modal" and has_input and "submit" not in view:
        checker.fail("/view/submit", "is required when the view has input blocks")
    return checker.problems
