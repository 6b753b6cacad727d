"""`vdr rooms search|show|tree`: what the client sees, printed for operators.

Exit codes: 0 fine, 1 any other API error, 2 bad usage (click's), 3 no such room or an
ambiguous name, 4 the token was refused, 5 the proxy cannot be reached.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import click
from rich.console import Console
from rich.filesize import decimal as human_size
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from vdr_client import (
    ROOM_SORTS,
    ROOM_STATUSES,
    AmbiguousRoom,
    DeadlineExceeded,
    Item,
    NotFound,
    RetryPolicy,
    Room,
    TransportError,
    Unauthorized,
    VdrClient,
    VdrError,
)
from vdr_ops.output import make_console, unreachable_message
from vdr_ops.params import room_argument
from vdr_ops.settings import get_settings

CLI_RETRY = RetryPolicy(attempts=3, base_delay_s=0.2, max_delay_s=2.0, deadline_s=20.0)
"""An operator at a terminal wants an answer soon, not after minutes of patient retries."""

CHILDREN_SHOWN = 50
"""Children listed per folder by `vdr rooms tree` before the rest is summed up in one line."""

EXIT_API, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_UNREACHABLE = 1, 3, 4, 5

P = ParamSpec("P")
R = TypeVar("R")


def _console() -> Console:
    return make_console()


def _client() -> VdrClient:
    return VdrClient.from_settings(retry=CLI_RETRY, timeout_s=15.0)


def _fail(message: str, code: int) -> click.exceptions.Exit:
    make_console(stderr=True).print(Text.assemble(("error: ", "bold red"), message))
    return click.exceptions.Exit(code)


def _explain_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn client errors into a message that says what to do next, and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AmbiguousRoom as exc:
            _print_candidates(exc)
            raise _fail(f"{exc.total} rooms match {exc.ref!r}; give an id or the exact name",
                        EXIT_NOT_FOUND) from None
        except NotFound as exc:
            raise _fail(f"{exc.message}. Try `vdr rooms search` to find the room.",
                        EXIT_NOT_FOUND) from None
        except Unauthorized as exc:
            raise _fail(_auth_message(exc), EXIT_AUTH) from None
        except DeadlineExceeded as exc:
            raise _fail(str(exc), EXIT_API) from None
        except TransportError as exc:
            raise _fail(unreachable_message(exc), EXIT_UNREACHABLE) from None
        except VdrError as exc:
            raise _fail(str(exc), EXIT_API) from None

    return wrapper


def _auth_message(exc: Unauthorized) -> str:
    if get_settings().vdr_api_token is None:
        return "the proxy requires a token: set VDR_API_TOKEN to the token it was started with."
    return "the proxy refused the token in VDR_API_TOKEN (wrong or expired); set the right one."


def _print_candidates(exc: AmbiguousRoom) -> None:
    table = _rooms_table(f"Rooms matching {exc.ref!r}")
    for room in exc.candidates:
        _add_room_row(table, room)
    console = make_console(stderr=True)
    console.print(table)
    if exc.total > len(exc.candidates):
        console.print(f"... and {exc.total - len(exc.candidates)} more")


@click.group()
def rooms() -> None:
    """Search and inspect data rooms through the VDR proxy (VDR_API_URL, VDR_API_TOKEN)."""


@rooms.command()
@click.argument("text", required=False)
@click.option("--status", type=click.Choice(ROOM_STATUSES), help="Only rooms in this state.")
@click.option("--owner", help="Only rooms of this owner (id, name or e-mail).")
@click.option("--inactive-days", type=click.IntRange(min=0),
              help="Only rooms without activity for at least this many days.")
@click.option("--sort", type=click.Choice(ROOM_SORTS), default="name", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Most rooms to show.")
@_explain_errors
def search(text: str | None, status: str | None, owner: str | None, inactive_days: int | None,
           sort: str, limit: int) -> None:
    """Rooms whose name contains TEXT, with their size and last activity."""
    with _client() as client:
        found = client.search_rooms(query=text, status=status, owner=owner, sort=sort,
                                    inactive_days=inactive_days)
        shown = list(itertools.islice(found, limit + 1))

    table = _rooms_table(f"Rooms matching {text!r}" if text else "Rooms")
    for room in shown[:limit]:
        _add_room_row(table, room)
    console = _console()
    console.print(table)
    console.print(_search_footer(len(shown), limit))


def _search_footer(count: int, limit: int) -> str:
    if count > limit:
        return f"first {limit} rooms shown; more match (raise --limit or narrow the search)"
    return f"{count} room{'s' if count != 1 else ''}"


def _rooms_table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name", overflow="fold")
    table.add_column("id", overflow="fold", no_wrap=True)
    table.add_column("status")
    table.add_column("owner", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("files", justify="right")
    table.add_column("last activity")
    return table


def _add_room_row(table: Table, room: Room) -> None:
    table.add_row(
        Text(_printable(room.name)),
        Text(room.id),
        room.status,
        Text(_printable(room.owner.name)),
        human_size(room.size.total_bytes),
        f"{room.file_count:,}",
        _when(room.last_activity_at),
    )


def _when(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    days = (datetime.now(UTC) - moment).days
    return f"{moment:%Y-%m-%d} ({days} d ago)" if days > 0 else f"{moment:%Y-%m-%d %H:%M}"


@rooms.command()
@room_argument("room_ref")
@_explain_errors
def show(room_ref: str) -> None:
    """Every field of one room, by id or by (unambiguous) name."""
    with _client() as client:
        room = client.find_room(room_ref)

    table = Table(title=_escape(room.name), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in _room_fields(room):
        table.add_row(field, Text(_printable(value)))
    _console().print(table)


def _room_fields(room: Room) -> Iterator[tuple[str, str]]:
    yield "id", room.id
    yield "name", room.name
    yield "status", room.status
    yield "owner", f"{room.owner.name} <{room.owner.email}> ({room.owner.id})"
    yield "created", _when(room.created_at)
    yield "last activity", _when(room.last_activity_at)
    yield "size (active)", _bytes(room.size.active_bytes)
    yield "size (deleted)", _bytes(room.size.deleted_bytes)
    yield "size (total)", _bytes(room.size.total_bytes)
    yield "files", f"{room.file_count:,}"
    yield "folders", f"{room.folder_count:,}"
    yield "root folder id", room.root_folder_id
    yield "etag", room.etag
    for key, value in (room.model_extra or {}).items():
        yield key, str(value)


def _bytes(count: int) -> str:
    exact = f"{count:,} bytes"
    return exact if count < 1000 else f"{human_size(count)} ({exact})"


@rooms.command()
@room_argument("room_ref")
@click.option("--depth", type=click.IntRange(min=1), default=2, show_default=True,
              help="Folder levels to show below the room.")
@_explain_errors
def tree(room_ref: str, depth: int) -> None:
    """The folders and files of one room, with their sizes."""
    with _client() as client:
        room = client.find_room(room_ref)
        top = Tree(f"[bold]{_escape(room.name)}[/]  {human_size(room.size.total_bytes)}  "
                   f"({room.file_count:,} files, {room.folder_count:,} folders)")
        _grow(client, top, room.root_folder_id, depth)

    _console().print(top)


def _grow(client: VdrClient, branch: Tree, folder_id: str, depth: int) -> None:
    """Add a folder's children to `branch`, descending `depth` levels."""
    children = client.iter_children(folder_id)
    for item in itertools.islice(children, CHILDREN_SHOWN):
        twig = branch.add(_label(item))
        if item.type == "folder" and depth > 1:
            _grow(client, twig, item.id, depth - 1)
    rest = sum(1 for _ in children)
    if rest:
        branch.add(f"[dim]... {rest:,} more[/]")


def _label(item: Item) -> str:
    name = _escape(item.name)
    if item.type == "folder":
        size = f"  {human_size(item.size)}" if item.size else ""
        return f"[bold blue]{name}/[/]{size}"
    return f"{name}  [dim]{human_size(item.size)}[/]"


def _escape(text: str) -> str:
    """A name inside Rich markup: its brackets are data, not markup."""
    return escape(_printable(text))


def _printable(text: str) -> str:
    """Names are data: control characters are shown escaped, never sent to the terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
