"""Slack's mrkdwn as Rich text: bold, italic, strike, code, links, mentions and emoji codes.

Slack escapes `&`, `<` and `>` in text it shows, so a literal `<` in mrkdwn always starts a
link or a mention; everything else is plain text to unescape. Formatting marks count only at
word boundaries, as in Slack (`snake_case_name` stays as it is).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from rich.emoji import Emoji
from rich.text import Text

NameOf = Callable[[str], str]
"""Display name of a user id (`U…`) or channel id (`C…`, `D…`)."""

_TOKEN = re.compile(
    r"```(?P<pre>.+?)```"
    r"|`(?P<code>[^`\n]+)`"
    r"|<(?P<link>[^<>\n]+)>"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>[^_\n]+?)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>[^~\n]+?)~(?![\w~])",
    re.DOTALL,
)

_STYLES = {"bold": "bold", "italic": "italic", "strike": "strike"}


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Direction overrides: they can make a shown name read differently from what it is."""


def visible(text: str, *, newlines: bool = False) -> str:
    """`text` safe on a terminal: control characters shown, never obeyed.

    A room name comes from the VDR, and one holding ESC could recolour or clear the screen; C0
    controls become their Unicode pictures (ESC → ␛, newline → ␊), others a `\\x..` escape.
    `newlines` keeps line breaks, for text the app laid out in lines itself.
    """
    if text.isprintable():
        return text
    return "".join(_visible_char(c, newlines) for c in text)


def _visible_char(char: str, newlines: bool) -> str:
    if char == "\n" and newlines:
        return char
    if char == "\t":
        return " "
    if ord(char) < 0x20:
        return chr(0x2400 + ord(char))
    if char == "\x7f":
        return "␡"
    if char in _BIDI or unicodedata.category(char) == "Cc":
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    return char


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain_text(text: str, *, emoji: bool = True) -> Text:
    """A `plain_text` object's text: no formatting, emoji codes shown as emoji."""
    return Text(visible(Emoji.replace(text) if emoji else text))


def to_text(mrkdwn: str, name_of: NameOf, style: str = "") -> Text:
    """`mrkdwn` rendered as one Rich `Text`, with `style` under everything.

    Control characters show (see `visible`); line breaks stay, as the app's own layout.
    """
    out = Text(style=style)
    _append(out, mrkdwn, name_of, style)
    return out


def _append(out: Text, mrkdwn: str, name_of: NameOf, style: str) -> None:
    mrkdwn = visible(mrkdwn, newlines=True)
    position = 0
    for match in _TOKEN.finditer(mrkdwn):
        out.append(Emoji.replace(unescape(mrkdwn[position:match.start()])), style=style)
        _append_token(out, match, name_of, style)
        position = match.end()
    out.append(Emoji.replace(unescape(mrkdwn[position:])), style=style)


def _append_token(out: Text, match: re.Match[str], name_of: NameOf, style: str) -> None:
    kind = match.lastgroup or ""
    value = match.group(kind)
    if kind == "pre":
        out.append(unescape(value.strip("\n")), style=f"{style} cyan".strip())
    elif kind == "code":
        out.append(unescape(value), style=f"{style} cyan".strip())
    elif kind == "link":
        out.append(_link_text(value, name_of), style=f"{style} underline blue".strip())
    else:
        _append(out, value, name_of, f"{style} {_STYLES[kind]}".strip())


def _link_text(inner: str, name_of: NameOf) -> str:
    """What Slack shows for `<...>`: a mention's name, a link's label, or the URL."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (label or visible(name_of(target[1:])))
    if target.startswith("#"):
        return "#" + (label or visible(name_of(target[1:])))
    if target.startswith("!"):
        # <!here>, <!subteam^S1|@legal>, <!date^1700000000^{date}|fallback>
        return unescape(label) if label else "@" + target[1:].split("^")[-1]
    return unescape(label or target)
