"""The `/vdr` grammar: the text after the slash command, parsed into one command object.

    help [topic]                    search [text] [status:S] [owner:O] [inactive:180d] [sort:K]
    show <room>                     export <room>
    trash <room>                    purge <room>                    restore <room>
    jobs                            cancel <job id>
    reports [room]                  report <id>
    settings

Pure: no I/O, so every rule is a unit test. Room references are the rest of the line, quotes
optional (Slack's curly quotes count). Unknown or malformed input parses to `Help` carrying the
problem, so the user always gets an answer that says what to type instead.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from vdr_client import ROOM_STATUSES

COMMAND = re.compile(r"^/vdr")
"""The slash command (a workspace may install a second copy as `/vdr-staging`, say)."""

SORT_KEYS: dict[str, str] = {
    "size": "-size",
    "activity": "last_activity",
    "last_activity": "last_activity",
    "name": "name",
    "created": "created",
}
"""`sort:` words and the API order they mean: biggest, stalest, A to Z, oldest first."""

_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}
_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


@dataclass(frozen=True)
class Help:
    topic: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Search:
    text: str | None = None
    status: str | None = None
    owner: str | None = None
    inactive_days: int | None = None
    sort: str = "name"


@dataclass(frozen=True)
class Show:
    room: str


@dataclass(frozen=True)
class Export:
    room: str


@dataclass(frozen=True)
class Deletion:
    """`trash`, `purge` or `restore` of a room: a request that needs an approver."""

    action: str
    room: str


@dataclass(frozen=True)
class Jobs:
    pass


@dataclass(frozen=True)
class Cancel:
    job_id: str


@dataclass(frozen=True)
class Reports:
    room: str | None = None


@dataclass(frozen=True)
class ReportDetail:
    report_id: str


@dataclass(frozen=True)
class EditSettings:
    pass


Command = (Help | Search | Show | Export | Deletion | Jobs | Cancel | Reports | ReportDetail
           | EditSettings)

VERBS = ("help", "search", "show", "export", "trash", "purge", "restore", "jobs", "cancel",
         "reports", "report", "settings")
"""Every verb `/vdr` knows, in the order help lists them."""


class _Malformed(ValueError):
    """A known verb with arguments that do not fit; the message says what would."""


def parse(text: str) -> Command:
    """The command `text` asks for; `Help` (with the problem) when it asks for nothing valid."""
    words = _split(text)
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb not in VERBS:
        return Help(problem=f"I don't know `{_clip(words[0])}`.")
    try:
        return _PARSERS[verb](args)
    except _Malformed as exc:
        return Help(topic=verb, problem=str(exc))


def _split(text: str) -> list[str]:
    """Words of `text`; quotes group words, and an unbalanced quote is just a character."""
    text = text.translate(_CURLY).strip()
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _clip(word: str, limit: int = 40) -> str:
    return word if len(word) <= limit else word[: limit - 1] + "…"


def _rest(args: list[str], what: str, verb: str) -> str:
    if not args:
        raise _Malformed(f"`{verb}` needs {what}: `/vdr {verb} <{what}>`.")
    return " ".join(args)


def _help(args: list[str]) -> Command:
    topic = args[0].lower() if args else None
    return Help(topic=topic if topic in VERBS else None)


def _search(args: list[str]) -> Command:
    text: list[str] = []
    found: dict[str, str] = {}
    for word in args:
        key, sep, value = word.partition(":")
        key = key.lower()
        if not sep or key not in _EXAMPLES:
            text.append(word)
            continue
        if not value:
            raise _Malformed(f"`{key}:` needs a value, e.g. `{_EXAMPLES[key]}`.")
        found[key] = value
    return Search(
        text=" ".join(text) or None,
        status=_status(found["status"]) if "status" in found else None,
        owner=found.get("owner"),
        inactive_days=_inactive(found["inactive"]) if "inactive" in found else None,
        sort=_sort(found["sort"]) if "sort" in found else "name",
    )


def _status(value: str) -> str:
    status = value.lower()
    if status not in ROOM_STATUSES:
        raise _Malformed(f"`status:{_clip(value)}` is not a status; use one of "
                         + ", ".join(f"`{s}`" for s in ROOM_STATUSES) + ".")
    return status


def _inactive(value: str) -> int:
    match = re.fullmatch(r"(\d{1,5})([dwmy]?)", value.lower())
    if match is None or int(match.group(1)) == 0:
        raise _Malformed(f"`inactive:{_clip(value)}` is not a period; write e.g. `inactive:180d`, "
                         "`inactive:26w`, `inactive:6m` or `inactive:1y`.")
    return int(match.group(1)) * _UNIT_DAYS[match.group(2) or "d"]


def _sort(value: str) -> str:
    reverse = value.startswith("-")
    key = value.lstrip("-").lower()
    if key not in SORT_KEYS:
        raise _Malformed(f"`sort:{_clip(value)}` is not an order; use `sort:size`, "
                         "`sort:activity` or `sort:name` (a leading `-` reverses it).")
    order = SORT_KEYS[key]
    if reverse:
        order = order[1:] if order.startswith("-") else "-" + order
    return order


_EXAMPLES = {"status": "status:active", "owner": "owner:dana", "inactive": "inactive:180d",
             "sort": "sort:size"}


def _no_args(verb: str, command: Command) -> Callable[[list[str]], Command]:
    def parse_verb(args: list[str]) -> Command:
        if args:
            raise _Malformed(f"`{verb}` takes nothing after it.")
        return command
    return parse_verb


_PARSERS: dict[str, Callable[[list[str]], Command]] = {
    "help": _help,
    "search": _search,
    "show": lambda args: Show(_rest(args, "room", "show")),
    "export": lambda args: Export(_rest(args, "room", "export")),
    "trash": lambda args: Deletion("trash", _rest(args, "room", "trash")),
    "purge": lambda args: Deletion("purge", _rest(args, "room", "purge")),
    "restore": lambda args: Deletion("restore", _rest(args, "room", "restore")),
    "jobs": _no_args("jobs", Jobs()),
    "cancel": lambda args: Cancel(_rest(args, "job id", "cancel")),
    "reports": lambda args: Reports(" ".join(args) or None),
    "report": lambda args: ReportDetail(_rest(args, "report id", "report")),
    "settings": _no_args("settings", EditSettings()),
}


def render_search(search: Search) -> str:
    """The `/vdr search ...` line that parses back to `search` (shown above its results)."""
    parts = [search.text] if search.text else []
    if search.status:
        parts.append(f"status:{search.status}")
    if search.owner:
        parts.append(f"owner:{search.owner}")
    if search.inactive_days:
        parts.append(f"inactive:{search.inactive_days}d")
    if search.sort != "name":
        parts.append(f"sort:{_sort_word(search.sort)}")
    return "search " + " ".join(parts) if parts else "search"


def _sort_word(order: str) -> str:
    for word, meant in SORT_KEYS.items():
        if meant == order:
            return word
        if "-" + meant.lstrip("-") == order or meant == "-" + order:
            return "-" + word
    return order
