"""Where the commands print, and what they say alike: one setup for every `vdr` command."""

from __future__ import annotations

import os

from rich.console import Console

from vdr_client import TransportError
from vdr_ops.settings import get_settings

__all__ = ["WIDTH_WHEN_PIPED", "make_console", "unreachable_message"]

WIDTH_WHEN_PIPED = 1000
"""Columns a console assumes when its output is a file or another program, not a terminal."""


def make_console(*, stderr: bool = False) -> Console:
    """A console for command output, on stdout or stderr.

    On a terminal, tables and messages fit its width. Piped into a file or another program,
    Rich would assume 80 columns, folding a long room name over two lines and cutting others
    short with an ellipsis; there a row stays on one line instead, so that what a script
    greps for is whole. `COLUMNS`, when set, decides in both cases."""
    console = Console(highlight=False, stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = WIDTH_WHEN_PIPED
    return console


def unreachable_message(exc: TransportError) -> str:
    """What to say when the proxy cannot be reached: where we looked, and how to fix it."""
    url = get_settings().vdr_api_url
    return (
        f"cannot reach the VDR proxy at {url} ({exc}). Start one with `vdr proxy` (or "
        "`vdr demo` for the whole product on this machine), or point VDR_API_URL at a running one."
    )
