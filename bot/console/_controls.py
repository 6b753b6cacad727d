"""Numbered controls: every button, menu option and form field the console has shown.

Numbers only grow during a session, so a number printed earlier still means the same control
later. A control is found by its number or by its label; a label that several controls share
is narrowed by `in TEXT` (text of the control's block, else of its message or view) and then
taken from the most recently shown message or view that has it.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.console.errors import ConsoleError

Kind = Literal["button", "option", "field"]


@dataclass(frozen=True)
class Place:
    """Where a control lives: a message (channel, ts) or a view (view id)."""

    channel: str | None = None
    ts: str | None = None
    view_id: str | None = None

    @property
    def is_view(self) -> bool:
        return self.view_id is not None


@dataclass(frozen=True)
class Control:
    number: int
    kind: Kind
    label: str
    action_id: str
    place: Place
    value: str | None = None
    """A button's value or an option's value: what the click sends."""
    block_id: str | None = None
    block_text: str = ""
    place_text: str = ""
    confirm: dict[str, Any] | None = None
    url: str | None = None
    element: dict[str, Any] = field(default_factory=dict)
    shown: int = 0
    """Order of the rendering that showed it (higher: more recent)."""


def fold(text: str) -> str:
    """`text` for loose comparison: case, accents, ellipses and quotes do not matter."""
    text = unicodedata.normalize("NFKD", text).replace("…", "...")
    kept = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(kept.casefold().strip().strip("\"'“”‘’").split())


class Controls:
    """The registry of numbered controls; thread-safe (updates render in the background)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Control] = []
        self._renderings = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def new_rendering(self) -> int:
        with self._lock:
            self._renderings += 1
            return self._renderings

    def add(self, **fields: Any) -> Control:
        with self._lock:
            control = Control(number=len(self._items) + 1, **fields)
            self._items.append(control)
            return control

    def get(self, number: int) -> Control:
        with self._lock:
            if 1 <= number <= len(self._items):
                return self._items[number - 1]
        raise ConsoleError(f"there is no control [{number}]")

    def find(self, ref: str, *, within: str | None = None,
             kinds: tuple[Kind, ...] = ("button", "option")) -> Control:
        """The control `ref` names: its number, or its label (see the module docstring)."""
        if ref.strip().lstrip("[(").rstrip("])").isdigit():
            control = self.get(int(ref.strip().lstrip("[(").rstrip("])")))
            if control.kind not in kinds:
                raise ConsoleError(f"[{control.number}] is a {control.kind}, not a "
                                   f"{' or '.join(kinds)}")
            return control
        return self._by_label(ref, within, kinds)

    def _by_label(self, ref: str, within: str | None, kinds: tuple[Kind, ...]) -> Control:
        with self._lock:
            candidates = [c for c in self._items if c.kind in kinds]
        wanted = fold(ref)
        found = [c for c in candidates if fold(c.label) == wanted] or \
            [c for c in candidates if fold(c.label).startswith(wanted)]
        if within is not None:
            found = _narrow(found, fold(within))
        if not found:
            where = f" in {within!r}" if within else ""
            raise ConsoleError(f"nothing labelled {ref!r}{where} has been shown")
        latest = max(c.shown for c in found)
        found = _unique([c for c in found if c.shown == latest])
        if len(found) > 1:
            numbers = ", ".join(f"[{c.number}]" for c in found)
            raise ConsoleError(f"{len(found)} controls are labelled {ref!r} ({numbers}); give a "
                               f"number, or add `in TEXT` naming the row")
        return found[0]


def _narrow(found: list[Control], within: str) -> list[Control]:
    by_block = [c for c in found if within in fold(c.block_text)]
    return by_block or [c for c in found if within in fold(c.place_text)]


def _unique(found: list[Control]) -> list[Control]:
    """One control per distinct target (a message re-shown twice in one rendering counts once)."""
    seen: dict[tuple[Any, ...], Control] = {}
    for control in found:
        key = (control.place, control.action_id, control.value, control.block_id)
        seen.setdefault(key, control)
    return list(seen.values())
