"""What the console has shown: it follows the fake workspace and draws whatever changed.

Each pass compares the workspace with what was drawn before: new messages (with their thread
and who may see them), edited or deleted ones, modals opened, updated or closed, App Home
views published. What it draws is also kept as plain text, so `expect` can search it, and
messages that carry a warning or an error are noted, so a script line can fail on them.
"""

from __future__ import annotations

import copy
import io
import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.text import Text

from bot.console._controls import Controls, Place
from bot.console._mrkdwn import NameOf, to_text, unescape, visible
from bot.console._render import Renderer, clock
from bot.console._workspace import Workspace
from bot.fake_slack import Message, View

COMPLAINT_MARKS = (":warning:", ":x:", ":lock:")
"""Emoji the app opens a warning, an error or a refusal with (see `bot.views`)."""


@dataclass
class Shown:
    """One drawing: its plain text, the complaint it carries, and whether the app drew it."""

    text: str
    complaint: Text | None = None
    from_app: bool = True
    """False for the console's own lines (echoed input, notes), which `expect` must not see."""


@dataclass
class _Seen:
    messages: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    views: dict[str, tuple[str, bool]] = field(default_factory=dict)


class Screen:
    """Draws the workspace's changes on a Rich console; one per console session."""

    def __init__(self, workspace: Workspace, out: Console) -> None:
        self.workspace = workspace
        self.out = out
        self.controls = Controls()
        self.renderer = Renderer(self.controls, workspace.name_of)
        self.viewer: str | None = None
        """The acting user: their ephemeral messages and modals read "you"."""
        self.at_prompt = False
        """True while the cursor sits after a prompt: the next drawing starts a new line."""
        self.drafts: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.lock = threading.RLock()
        self._seen = _Seen()
        self._log: list[Shown] = []

    # -- the transcript ----------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the transcript; `since(mark)` is what was drawn after it."""
        with self.lock:
            return len(self._log)

    def since(self, mark: int) -> list[Shown]:
        with self.lock:
            return list(self._log[mark:])

    # -- following the workspace ---------------------------------------------------------------

    def refresh(self) -> int:
        """Draw everything that changed since the last pass; the number of drawings."""
        with self.lock:
            messages, views = self._changes()
            for message, state in messages:
                self._draw_message(message, state)
            for view in views:
                self._draw_view_change(view)
            return len(messages) + len(views)

    def _changes(self) -> tuple[list[tuple[Message, str]], list[View]]:
        store = self.workspace.fake.store
        messages: list[tuple[Message, str]] = []
        views: list[View] = []
        with store.lock:
            for message in store.messages:
                key, now = (message.channel, message.ts), (len(message.edits), message.deleted)
                before = self._seen.messages.get(key)
                if before != now:
                    self._seen.messages[key] = now
                    kind = "new" if before is None else "deleted" if message.deleted else "edited"
                    if not (kind == "new" and message.deleted):
                        messages.append((copy.deepcopy(message), kind))
            for view in store.views.values():
                state = (view.hash + str(len(view.history)), view.closed)
                if self._seen.views.get(view.id) != state:
                    opened = view.id not in self._seen.views
                    self._seen.views[view.id] = state
                    if not (opened and view.closed):
                        views.append(copy.deepcopy(view))
        return messages, views

    # -- messages ------------------------------------------------------------------------------

    def _draw_message(self, message: Message, change: str) -> None:
        heading = self._heading(message, change)
        if change == "deleted":
            self._print(Text.assemble(heading, (" (message deleted)", "dim")))
            return
        place = Place(channel=message.channel, ts=message.ts)
        files = [self._file_line(file_id) for file_id in message.files]
        drawing = self.renderer.message(heading, message.text, message.blocks, place, files)
        if message.thread_ts and message.thread_ts != message.ts:
            drawing = Padding(drawing, (0, 0, 0, 4), expand=False)
        self._print(drawing, complaint_of(message.text, message.blocks, self.workspace.name_of))

    def _heading(self, message: Message, change: str) -> Text:
        def name(ref: str) -> str:
            return visible(self.workspace.name_of(ref))

        heading = Text()
        if change == "edited":
            heading.append("✎ ", style="yellow")
        if message.thread_ts and message.thread_ts != message.ts:
            heading.append("↳ ", style="dim")
        heading.append(name(message.user), style="bold magenta")
        heading.append(f"  #{name(message.channel)}", style="dim")
        heading.append(f"  {clock(message.ts)}", style="dim")
        if change == "edited":
            heading.append("  (edited)", style="yellow")
        if message.thread_ts and message.thread_ts != message.ts:
            heading.append(f"  in the thread of {self._parent(message)}", style="dim")
        if message.ephemeral_to is not None:
            who = "you" if message.ephemeral_to == self.viewer else name(message.ephemeral_to)
            heading.append(f"  only visible to {who}", style="italic")
        return heading

    def _parent(self, message: Message) -> str:
        parent = self.workspace.fake.message(message.channel, message.thread_ts or "")
        if parent is None:
            return "a deleted message"
        first = unescape(parent.text or "").splitlines()[0] if parent.text else "a message"
        return visible(f"“{first[:60]}{'…' if len(first) > 60 else ''}”")

    def _file_line(self, file_id: str) -> str:
        found = self.workspace.fake.file(file_id)
        if found is None:
            return file_id
        size = len(found.content or b"")
        title = f" — {found.title}" if found.title and found.title != found.filename else ""
        return visible(f"{found.filename} ({size:,} bytes){title}")

    # -- views -----------------------------------------------------------------------------------

    def _draw_view_change(self, view: View) -> None:
        if view.closed:
            self.drafts.pop(view.id, None)
            title = (view.body.get("title") or {}).get("text") or "modal"
            self._print(Text(visible(f"(the “{title}” modal of {self._whose(view.user)} closed)"),
                             style="dim"))
            return
        self.draw_view(view)

    def draw_view(self, view: View) -> None:
        """Draw a modal or Home view as it stands, with the draft entered so far."""
        with self.lock:
            body = view.body
            if view.type == "home":
                title = f"App Home of {self._whose(view.user)}"
            else:
                modal_title = (body.get("title") or {}).get("text") or "Modal"
                title = f"{modal_title} — modal of {self._whose(view.user)}"
            drawing = self.renderer.view(body, Place(view_id=view.id), title=visible(title),
                                         draft=self.drafts.get(view.id),
                                         errors=self.errors.get(view.id))
            self._print(drawing, complaint_of("", list(body.get("blocks") or []),
                                              self.workspace.name_of))

    def _whose(self, user: str) -> str:
        return "you" if user == self.viewer else self.workspace.name_of(user)

    # -- output ----------------------------------------------------------------------------------

    def say(self, text: str | Text, style: str = "") -> None:
        """A line of the console's own (not the app's)."""
        self._print(Text(text, style=style) if isinstance(text, str) else text, from_app=False)

    def _print(self, drawing: RenderableType, complaint: Text | None = None, *,
               from_app: bool = True) -> None:
        with self.lock:
            if self.at_prompt:
                self.out.print()
                self.at_prompt = False
            self.out.print(drawing)
            self._log.append(Shown(_plain(drawing, self.out.width), complaint, from_app))


def complaint_of(text: str, blocks: list[dict[str, Any]],
                 name_of: NameOf = str) -> Text | None:
    """The first line of a message that opens with a warning, error or refusal mark.

    Drawn as Slack shows it (mentions as @name, bold as bold), to quote in a failure line.
    """
    candidates = [str((b.get("text") or {}).get("text") or "") for b in blocks
                  if b.get("type") == "section"] or [text]
    for candidate in candidates:
        if candidate.lstrip().startswith(COMPLAINT_MARKS):
            return to_text(candidate.strip().splitlines()[0], name_of)
    return None


def _plain(drawing: RenderableType, width: int) -> str:
    capture = Console(file=io.StringIO(), width=max(width, 80), color_system=None,
                      emoji=False, highlight=False)
    capture.print(drawing)
    output = capture.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()
