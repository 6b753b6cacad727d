"""Safe file names for exported VDR items.

VDR names are free text typed by deal teams: they may hold slashes, `..`, control characters,
names Windows reserves, or differ only in case from a sibling. Exports land on Linux disks,
on shares that Windows and macOS users open, and in S3, so every name is mapped to one path
component that is safe on all of them. The mapping is pure and deterministic: the same
siblings always give the same names, whatever order the listing returned them in, so a
re-run of an export finds what an earlier run wrote.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence

__all__ = ["MAX_COMPONENT_BYTES", "assign_names", "fold", "join_written", "safe_component"]

MAX_COMPONENT_BYTES = 255
"""Longest component, in UTF-8 bytes, that ext4, APFS, NTFS and S3 tooling all accept."""

_MAX_EXTENSION_BYTES = 24
"""An extension longer than this is treated as part of the stem when truncating."""

_REPLACEMENT = "_"

# Windows refuses these characters in names; keeping them out lets a Windows user copy the export.
_FORBIDDEN = frozenset('/\\<>:"|?*')

# Invisible characters that reorder text: they let "exe.pdf" display as "fdp.exe".
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

_WINDOWS_RESERVED = re.compile(
    r"^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$)$",
    re.IGNORECASE,
)


def fold(name: str) -> str:
    """The key under which a case-insensitive file system sees two names as the same."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def safe_component(name: str) -> str:
    """One safe path component for a VDR name (never empty, never `.` or `..`).

    Idempotent: a name this function returned comes back unchanged.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(_REPLACEMENT if _is_unsafe_char(char) else char for char in text)
    text = text.rstrip(". ")
    if not text:
        return _REPLACEMENT
    if _WINDOWS_RESERVED.match(text.split(".", 1)[0].rstrip(" ")):
        text = _REPLACEMENT + text
    if _utf8_len(text) > MAX_COMPONENT_BYTES:
        text = _shorten(text, tag=_digest(name, 8))
    return unicodedata.normalize("NFC", text)


def assign_names(
    entries: Iterable[tuple[str, str]], *, reserved: Collection[str] = ()
) -> dict[str, str]:
    """Unique safe names for siblings given as `(key, original name)` pairs.

    `key` is the item's id. Names that fold to the same key (case, Unicode normalisation, or
    the same safe form) are told apart by a short hash of the id and original name; the first
    of them in (original name, key) order keeps the plain name. Names in `reserved` are never
    handed out.
    """
    ordered = sorted(entries, key=lambda entry: (entry[1], entry[0]))
    bases = {key: safe_component(name) for key, name in ordered}
    taken = {fold(name) for name in reserved}
    result: dict[str, str] = {}
    waiting: list[tuple[str, str]] = []

    for key, name in ordered:
        folded = fold(bases[key])
        if folded in taken:
            waiting.append((key, name))
            continue
        taken.add(folded)
        result[key] = bases[key]

    for key, name in waiting:
        result[key] = _unique_variant(bases[key], key, name, taken)
    return result


def join_written(parts: Sequence[str]) -> str:
    """A written path (POSIX separators) from safe components."""
    return "/".join(parts)


def _unique_variant(base: str, key: str, name: str, taken: set[str]) -> str:
    """`base` with a hash tag that no sibling already holds; records the result in `taken`."""
    digest = _digest(f"{key}\0{name}", 64)
    for length in range(8, len(digest) + 1, 4):
        candidate = _with_tag(base, "~" + digest[:length])
        if fold(candidate) not in taken:
            taken.add(fold(candidate))
            return candidate
    raise ValueError(f"cannot find a unique name for item {key!r}")  # needs a SHA-256 collision


def _with_tag(base: str, tag: str) -> str:
    """`base` with `tag` before its extension, still within the byte cap."""
    stem, extension = _split_extension(base)
    candidate = stem + tag + extension
    if _utf8_len(candidate) <= MAX_COMPONENT_BYTES:
        return candidate
    return _shorten(base, tag=tag.lstrip("~"))


def _shorten(text: str, *, tag: str) -> str:
    """`text` cut to the byte cap, keeping its extension and marking the cut with `tag`."""
    stem, extension = _split_extension(text)
    suffix = "~" + tag + extension
    budget = MAX_COMPONENT_BYTES - _utf8_len(suffix)
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    cut = unicodedata.normalize("NFC", cut)
    while _utf8_len(cut) > budget:
        cut = unicodedata.normalize("NFC", cut[:-1])
    return (cut.rstrip(". ") or _REPLACEMENT) + suffix


def _split_extension(name: str) -> tuple[str, str]:
    """(stem, extension) where the extension is short enough to be worth keeping."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    extension = name[dot:]
    if _utf8_len(extension) > _MAX_EXTENSION_BYTES:
        return name, ""
    return name[:dot], extension


def _is_unsafe_char(char: str) -> bool:
    if char in _FORBIDDEN or char in _BIDI_CONTROLS:
        return True
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:length]
