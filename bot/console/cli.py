"""`vdr console`: a terminal chat with the Slack app, without Slack.

The console serves the real app beside a fake Slack workspace and talks to whatever proxy,
Redis and database the environment names (`VDR_API_URL`, `REDIS_URL`, `DATABASE_URL`); jobs
run on the workers of that Redis (`vdr worker`). `vdr demo` starts all of it at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import IO

import click
from rich.console import Console
from rich.text import Text

from bot.console._session import Session, Timing
from bot.console._workspace import CAST, CHANNEL_NAME, DEFAULT_PERSON, Workspace
from bot.console.errors import ConsoleError

REFRESH_S = 0.3
"""How often the interactive console draws what the app did in the background."""


@click.command()
@click.option("--script", "script", type=click.File("r", encoding="utf-8"), default=None,
              metavar="FILE", help="Run the lines of FILE ('-': standard input) and exit; "
                                   "the exit status is 1 when a line fails.")
@click.option("--as", "person", default=DEFAULT_PERSON, show_default=True, metavar="NAME",
              help=f"Who types first: {', '.join(p.name for p in CAST)}.")
@click.option("--channel", default=CHANNEL_NAME, show_default=True, metavar="NAME",
              help="The channel to type into (made up on the spot).")
@click.option("--grant-roles", is_flag=True,
              help="First add the console's people to the runtime settings' roles (ana admin, "
                   "ben operator, cleo approver, vic viewer); whoever holds a role keeps it.")
def console(script: IO[str] | None, person: str, channel: str, grant_roles: bool) -> None:
    """A terminal chat with the Slack app: type /vdr commands, press buttons by number.

    The app runs here against a fake Slack workspace and the proxy, Redis and database the
    environment names; jobs need a `vdr worker` on that Redis (`vdr demo` starts one).
    """
    from redis import Redis

    from jobs.store import get_engine
    from vdr_client import VdrClient
    from vdr_ops.settings import get_settings

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started ignoring it
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url)
    with VdrClient.from_settings(settings) as vdr, Workspace(
        redis=redis, engine=get_engine(settings.database_url), vdr=vdr, settings=settings,
    ) as workspace:
        if grant_roles:
            workspace.grant_cast_roles()
        code = run(workspace, script=script, person=person, channel=channel)
    sys.exit(code)


def run(workspace: Workspace, *, script: Iterable[str] | None, person: str = DEFAULT_PERSON,
        channel: str = CHANNEL_NAME, out: Console | None = None,
        timing: Timing | None = None) -> int:
    """Run a script (when given, or when standard input is not a terminal) or a chat."""
    out = out or Console(highlight=False)
    interactive = script is None and sys.stdin.isatty()
    confirm = _ask(out) if interactive else None
    try:
        session = Session(workspace, out, person=person, channel=channel, timing=timing,
                          confirm=confirm)
    except ConsoleError as error:
        out.print(Text.assemble("vdr console: ", error.as_text(), style="bold red"))
        return 2
    if not interactive:
        return session.run_script(script if script is not None else sys.stdin)
    return chat(session, out)


def chat(session: Session, out: Console) -> int:
    """The interactive console: one line at a time, the app's later doings drawn as they come."""
    import readline  # noqa: F401  (line editing and history for input())

    out.print(_banner(session))
    stop, prompting = threading.Event(), threading.Event()
    refresher = threading.Thread(target=_keep_drawing, args=(session, stop, prompting),
                                 daemon=True, name="vdr-console-draw")
    refresher.start()
    try:
        while not session.stopped:
            session.screen.at_prompt = True
            prompting.set()
            try:
                line = input(session.prompt)
            except EOFError:
                break
            finally:
                prompting.clear()
                session.screen.at_prompt = False
            try:
                session.execute(line)
            except ConsoleError as error:
                out.print(Text.assemble("✗ ", error.as_text(), style="bold red"))
    except KeyboardInterrupt:
        out.print()
    finally:
        stop.set()
        refresher.join(timeout=2)
    return 0


def _keep_drawing(session: Session, stop: threading.Event, prompting: threading.Event) -> None:
    """Draw what the app does between lines (job progress, reports), then prompt again."""
    while not stop.wait(REFRESH_S):
        with session.screen.lock:
            if session.screen.refresh() and prompting.is_set():
                session.screen.out.print(session.prompt, end="")
                session.screen.at_prompt = True


def _banner(session: Session) -> Text:
    people = ", ".join(f"{p.name} ({p.role})" for p in CAST)
    return Text.assemble(
        ("vdr console", "bold"), f" — you are {session.user_name} in #",
        session.workspace.name_of(session.channel), f". Here: {people}; `as NAME` switches.\n",
        "Type /vdr help for the app's commands, help for the console's; press buttons by "
        "[number] or label; Ctrl-D leaves.", style="cyan",
    )


def _ask(out: Console) -> Callable[[str], bool]:
    def confirm(question: str) -> bool:
        try:
            return input(question).strip().lower() in ("y", "yes")
        except EOFError:
            return False

    return confirm
