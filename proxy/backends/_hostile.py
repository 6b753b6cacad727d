"""Item names that break naive exporters, for the synthetic backend's hostile mode and tests.

Every name here is one a real VDR has been seen to hold, or one that attacks a path join:
traversal, separators of both platforms, NUL and control characters, Unicode normalisation
and case twins, trailing dots and spaces (which Windows strips), names longer than 255 bytes
once encoded, empty names and the device names Windows reserves.
"""

from __future__ import annotations

import unicodedata

NAME_MAX_BYTES = 255
"""The longest file name (in bytes, UTF-8) most Linux and macOS file systems accept."""

_TRAVERSAL = [
    "..",
    ".",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/shadow",
    "C:\\boot.ini",
    "%2e%2e%2fsecret.txt",
    "....//....//x.txt",
]

_SEPARATORS = ["board/minutes.pdf", "board\\minutes.pdf", "a/b\\c.docx"]

_CONTROL = [
    "nul\x00inside.pdf",
    "bell\x07and\x1besc.txt",
    "tab\there.xlsx",
    "line\nbreak.pdf",
    "carriage\rreturn.pdf",
    "del\x7fchar.txt",
    "c1\x85control.txt",
    "rtl\u202efdp.exe",
    "zero\u200bwidth.pdf",
    "\ufeffbom-first.txt",
    "line\u2028separator.txt",
]

_TWINS = [
    unicodedata.normalize("NFC", "Café Résumé.pdf"),
    unicodedata.normalize("NFD", "Café Résumé.pdf"),
    "Report.PDF",
    "report.pdf",
    "REPORT.pdf",
    "Straße.docx",
    "STRASSE.docx",
]

_TRAILING = ["notes.", "notes..", "notes ", " notes", "notes. . ", "...", "   "]

_LONG = [
    "é" * 127 + "x",  # 255 bytes: the longest that still fits on disk
    "Ä" * 130 + ".pdf",  # 264 bytes
    "日本語の文書" * 15 + ".pdf",  # 274 bytes
    "📄" * 70 + ".xlsx",  # 285 bytes
    "A" * 300 + ".txt",
]

_RESERVED = [
    "",
    "CON",
    "NUL",
    "aux.txt",
    "com1",
    "LPT9.log",
    "prn.",
    "Con.pdf",
    "~",
    "-rf",
    "$HOME",
    '*?<>|:".txt',
    "name:with:colons.pdf",
]


def hostile_names() -> list[str]:
    """Every hostile name, in a fixed order (duplicates kept out; twins are distinct strings)."""
    names: list[str] = []
    for group in (_TRAVERSAL, _SEPARATORS, _CONTROL, _TWINS, _TRAILING, _LONG, _RESERVED):
        names.extend(name for name in group if name not in names)
    return names


def disk_safe(name: str) -> bool:
    """True when a Linux file system can hold `name` as one directory entry."""
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\x00" not in name
        and len(name.encode("utf-8")) <= NAME_MAX_BYTES
    )


def hostile_names_on_disk() -> list[str]:
    """The hostile names a Linux directory can really hold (no '/', no NUL, <= 255 bytes)."""
    return [name for name in hostile_names() if disk_safe(name)]
