"""Command-line arguments that several `vdr` commands take, checked the same way everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["room_argument"]

F = TypeVar("F", bound=Callable[..., Any])


def room_argument(name: str) -> Callable[[F], F]:
    """The ROOM argument (an id or an unambiguous name), passed to the command as `name`;
    a blank one is a usage error (exit 2), refused before anything is asked of the proxy."""
    return click.argument(name, metavar="ROOM", callback=_not_blank)


def _not_blank(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("give the room's id or its name; `vdr rooms search` lists them")
    return value
