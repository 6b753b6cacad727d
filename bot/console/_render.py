"""Block Kit drawn in a terminal: messages, modals and App Home as Rich renderables.

Every button, menu option and form field drawn gets a number in the session's `Controls`, so
it can be operated by number or label. Forms show the values the console user has entered so
far (the draft) over the view's initial values, and the app's validation errors under the
fields they concern.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bot.console._controls import Control, Controls, Place
from bot.console._mrkdwn import NameOf, plain_text, to_text, unescape

Block = dict[str, Any]

_BUTTON_STYLES = {"primary": "bold green", "danger": "bold red"}

_CHOICE_ELEMENTS = ("overflow", "static_select", "radio_buttons")


def text_of(obj: Mapping[str, Any] | None, name_of: NameOf, style: str = "") -> Text:
    """A text object (`plain_text` or `mrkdwn`) as Rich text."""
    if not obj:
        return Text("")
    if obj.get("type") == "mrkdwn":
        return to_text(str(obj.get("text") or ""), name_of, style)
    return Text.assemble(plain_text(str(obj.get("text") or "")), style=style)


def raw_text(blocks: list[Block]) -> str:
    """The words of `blocks`, for matching `in TEXT` and `expect TEXT` (no markup)."""
    return "\n".join(_block_words(block) for block in blocks)


def _block_words(block: Block) -> str:
    parts: list[str] = []
    for obj in [block.get("text"), block.get("label"), *(block.get("fields") or []),
                *(e for e in block.get("elements") or [] if "text" in e and "type" in e
                  and e.get("type") in ("mrkdwn", "plain_text"))]:
        if isinstance(obj, dict) and obj.get("text"):
            parts.append(unescape(str(obj["text"])))
    return "\n".join(parts)


class Renderer:
    """Draws Block Kit into Rich renderables and numbers the controls it draws."""

    def __init__(self, controls: Controls, name_of: NameOf) -> None:
        self.controls = controls
        self.name_of = name_of

    # -- containers --------------------------------------------------------------------------

    def message(self, heading: Text, text: str, blocks: list[Block], place: Place,
                files: list[str] | None = None) -> RenderableType:
        """A message: its heading line, then its blocks (or its text when it has none)."""
        shown = self.controls.new_rendering()
        body: list[RenderableType] = []
        if blocks:
            body.extend(self.blocks(blocks, place, shown, raw_text(blocks) or text))
        elif text:
            body.append(to_text(text, self.name_of))
        body.extend(Text(f"📎 {name}", style="cyan") for name in files or [])
        return Group(heading, Padding(Group(*body), (0, 0, 0, 2), expand=False))

    def view(self, view: Mapping[str, Any], place: Place, *, title: str,
             draft: Mapping[str, Any] | None = None,
             errors: Mapping[str, str] | None = None) -> RenderableType:
        """A modal or Home view in a panel; forms show `draft` values and `errors`."""
        shown = self.controls.new_rendering()
        blocks = list(view.get("blocks") or [])
        body = self.blocks(blocks, place, shown, raw_text(blocks), draft or {}, errors or {})
        footer = self._view_footer(view)
        if footer is not None:
            body.append(footer)
        style = "magenta" if view.get("type") == "modal" else "blue"
        return Panel(Group(*body), title=title, title_align="left", border_style=style)

    def _view_footer(self, view: Mapping[str, Any]) -> Text | None:
        if view.get("type") != "modal":
            return None
        parts = []
        if view.get("submit"):
            parts.append(f"submit → {view['submit'].get('text')}")
        close = (view.get("close") or {}).get("text") or "Close"
        parts.append(f"close → {close}")
        return Text("   ".join(parts), style="dim")

    # -- blocks ------------------------------------------------------------------------------

    def blocks(self, blocks: list[Block], place: Place, shown: int, place_text: str,
               draft: Mapping[str, Any] | None = None,
               errors: Mapping[str, str] | None = None) -> list[RenderableType]:
        out: list[RenderableType] = []
        for index, block in enumerate(blocks):
            block_id = str(block.get("block_id") or f"b{index}")
            context = _Context(place, shown, block_id, _block_words(block), place_text)
            out.extend(self._block(block, context, draft or {}))
            if errors and block_id in errors:
                out.append(Text(f"  ⚠ {errors[block_id]}", style="bold red"))
        return out

    def _block(self, block: Block, ctx: _Context,
               draft: Mapping[str, Any]) -> Iterator[RenderableType]:
        kind = block.get("type")
        if kind == "section":
            yield from self._section(block, ctx)
        elif kind == "header":
            yield text_of(block.get("text"), self.name_of, "bold underline")
        elif kind == "context":
            yield self._context(block)
        elif kind == "divider":
            yield Rule(style="dim")
        elif kind == "actions":
            yield self._elements(block.get("elements") or [], ctx)
        elif kind == "input":
            yield from self._input(block, ctx, draft)
        elif kind == "image":
            yield Text(f"[image: {block.get('alt_text') or ''}]", style="dim")
        elif kind == "rich_text":
            yield Text(_rich_text_words(block))
        else:
            yield Text(f"[{kind} block]", style="dim")

    def _section(self, block: Block, ctx: _Context) -> Iterator[RenderableType]:
        if block.get("text"):
            yield text_of(block["text"], self.name_of)
        if block.get("fields"):
            yield self._fields(block["fields"])
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            yield Padding(self._elements([accessory], ctx), (0, 0, 0, 2), expand=False)

    def _fields(self, fields: list[dict[str, Any]]) -> Table:
        grid = Table.grid(padding=(0, 3))
        cells = [text_of(f, self.name_of) for f in fields]
        for left in range(0, len(cells), 2):
            grid.add_row(*cells[left:left + 2], *([Text("")] if left + 1 >= len(cells) else []))
        return grid

    def _context(self, block: Block) -> Text:
        pieces = []
        for element in block.get("elements") or []:
            if element.get("type") == "image":
                pieces.append(Text(f"[{element.get('alt_text') or 'image'}]"))
            else:
                pieces.append(text_of(element, self.name_of))
        line = Text("  ·  ").join(pieces)
        line.stylize("dim")
        return line

    # -- interactive elements ------------------------------------------------------------------

    def _elements(self, elements: list[dict[str, Any]], ctx: _Context) -> Text:
        line = Text()
        for element in elements:
            if line:
                line.append("   ")
            line.append_text(self._element(element, ctx))
        return line

    def _element(self, element: dict[str, Any], ctx: _Context) -> Text:
        kind = element.get("type")
        if kind == "button":
            label = str((element.get("text") or {}).get("text") or "button")
            control = self._add(ctx, "button", label, element, value=element.get("value"))
            style = _BUTTON_STYLES.get(str(element.get("style")), "bold")
            return Text.assemble((f"[{control.number}] ", "bold cyan"),
                                 (plain_text(label).plain, style))
        if kind in _CHOICE_ELEMENTS:
            return self._choices(element, ctx)
        return Text(f"[{kind}: not operable from the console]", style="dim")

    def _choices(self, element: dict[str, Any], ctx: _Context) -> Text:
        marks = {"overflow": "⋯ ", "static_select": "▾ ", "radio_buttons": "◦ "}
        line = Text(marks.get(str(element.get("type")), ""), style="dim")
        placeholder = (element.get("placeholder") or {}).get("text")
        if placeholder:
            line.append(f"{placeholder}: ", style="dim")
        for i, option in enumerate(_options(element)):
            label = str((option.get("text") or {}).get("text") or option.get("value"))
            control = self._add(ctx, "option", label, element, value=option.get("value"))
            line.append("  " if i else "")
            line.append(f"[{control.number}] ", style="bold cyan")
            line.append(plain_text(label).plain)
        return line

    def _add(self, ctx: _Context, kind: str, label: str, element: dict[str, Any],
             value: Any = None) -> Control:
        return self.controls.add(
            kind=kind, label=label, action_id=str(element.get("action_id") or ""),
            place=ctx.place, value=None if value is None else str(value),
            block_id=ctx.block_id, block_text=ctx.block_text, place_text=ctx.place_text,
            confirm=element.get("confirm"), url=element.get("url"), element=element,
            shown=ctx.shown,
        )

    # -- form fields ---------------------------------------------------------------------------

    def _input(self, block: Block, ctx: _Context, draft: Mapping[str, Any]) -> Iterator[Text]:
        element = block.get("element") or {}
        label = str((block.get("label") or {}).get("text") or element.get("action_id") or "")
        control = self._add(ctx, "field", label, element)
        action_id = str(element.get("action_id") or "")
        line = Text.assemble((f"({control.number}) ", "bold cyan"), (label, "bold"))
        if block.get("optional"):
            line.append(" (optional)", style="dim")
        line.append(": ")
        line.append_text(self._field_value(element, draft.get(action_id)))
        yield line
        hint = (block.get("hint") or {}).get("text")
        if hint:
            yield Text(f"     {hint}", style="dim")

    def _field_value(self, element: dict[str, Any], entered: Any) -> Text:
        kind = element.get("type")
        if kind in ("checkboxes", "radio_buttons", "static_select", "multi_static_select"):
            return self._choice_value(element, entered)
        if kind in ("users_select", "multi_users_select"):
            users = entered if entered is not None else \
                element.get("initial_user") or element.get("initial_users") or []
            names = [users] if isinstance(users, str) else list(users)
            return Text(", ".join("@" + self.name_of(u) for u in names) or "(nobody)")
        if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
            value = entered if entered is not None else element.get("initial_value")
            return Text(f"“{value}”") if value else Text("(empty)", style="dim")
        return Text(f"({kind}: not operable from the console)", style="dim")

    def _choice_value(self, element: dict[str, Any], entered: Any) -> Text:
        chosen = set(chosen_values(element, entered))
        many = element.get("type") in ("checkboxes", "multi_static_select")
        out = Text()
        for i, option in enumerate(_options(element)):
            on = option.get("value") in chosen
            mark = ("☑ " if on else "☐ ") if many else ("◉ " if on else "○ ")
            out.append("   " if i else "")
            out.append(mark, style="bold green" if on else "dim")
            out.append(plain_text(str((option.get("text") or {}).get("text") or "")).plain)
            description = (option.get("description") or {}).get("text")
            if description:
                out.append(f" — {description}", style="dim")
        return out


class _Context:
    """Where the elements being drawn sit: their place, block and the text around them."""

    def __init__(self, place: Place, shown: int, block_id: str, block_text: str,
                 place_text: str) -> None:
        self.place = place
        self.shown = shown
        self.block_id = block_id
        self.block_text = block_text
        self.place_text = place_text


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def chosen_values(element: dict[str, Any], entered: Any) -> list[str]:
    """Option values currently chosen in a choice field: the draft's, else the initial ones."""
    if entered is not None:
        return [entered] if isinstance(entered, str) else list(entered)
    initial = element.get("initial_options") or []
    if element.get("initial_option"):
        initial = [element["initial_option"]]
    return [str(option.get("value")) for option in initial]


def _rich_text_words(block: Block) -> str:
    words: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                words.append(node["text"])
            for child in node.get("elements") or []:
                walk(child)

    walk(block)
    return "".join(words)


def clock(ts: str) -> str:
    """A message timestamp as the time of day it shows in Slack."""
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")
    except ValueError:
        return ts


def option_values(element: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, label) of every option of a choice element."""
    return [(str(o.get("value")), str((o.get("text") or {}).get("text") or ""))
            for o in _options(element)]
