"""Slack's mrkdwn as Rich text: bold, italic, strike, code, links, mentions and emoji codes.

Slack escapes `&`, `<` and `>` in text it shows, so a literal `<` in mrkdwn always starts a
link or a mention; everything else is plain text to unescape. Formatting marks count only at
word boundaries, as in Slack (`snake_case_name` stays as it is).
"""

from __future__ import annotations

import re
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


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain_text(text: str, *, emoji: bool = True) -> Text:
    """A `plain_text` object's text: no formatting, emoji codes shown as emoji."""
    return Text(Emoji.replace(text) if emoji else text)


def to_text(mrkdwn: str, name_of: NameOf, style: str = "") -> Text:
    """`mrkdwn` rendered as one Rich `Text`, with `style` under everything."""
    out = Text(style=style)
    _append(out, mrkdwn, name_of, style)
    return out


def _append(out: Text, mrkdwn: str, name_of: NameOf, style: str) -> None:
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
        return "@" + (label or name_of(target[1:]))
    if target.startswith("#"):
        return "#" + (label or name_of(target[1:]))
    if target.startswith("!"):
        # <!here>, <!subteam^S1|@legal>, <!date^1700000000^{date}|fallback>
        return unescape(label) if label else "@" + target[1:].split("^")[-1]
    return unescape(label or target)
