"""`vdr console`: the Slack app in a terminal, driven through a fake Slack workspace.

    with Workspace(redis=redis, engine=engine, vdr=client) as workspace:
        session = Session(workspace, rich.console.Console(), person="ben")
        session.execute("/vdr search falcon")
        session.execute("press Export… in Falcon")

The app is the real one (`bot.app.create_app`) behind HTTP on loopback; every request it gets
is signed as Slack signs them, and every Web API call it makes lands in the fake, from which
the console draws messages, threads, edits, ephemeral replies, modals and App Home.
"""

from bot.console._session import Session, Timing
from bot.console._workspace import CAST, CHANNEL_ID, CHANNEL_NAME, Person, Workspace
from bot.console.errors import (
    BotComplained,
    ConsoleError,
    DeliveryFailed,
    SlackCallFailed,
    WaitTimedOut,
)

__all__ = [
    "CAST",
    "CHANNEL_ID",
    "CHANNEL_NAME",
    "BotComplained",
    "ConsoleError",
    "DeliveryFailed",
    "Person",
    "Session",
    "SlackCallFailed",
    "Timing",
    "WaitTimedOut",
    "Workspace",
]
