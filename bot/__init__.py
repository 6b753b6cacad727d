"""The Slack app of vdr-ops: `/vdr` commands, modals, App Home and job threads.

    app = create_app(settings)               # Bolt app; every collaborator injectable
    BotServer(app, port).start()             # HTTP at /slack/events on 127.0.0.1 (tests)
    JobWatcher(deps).start()                 # job progress and reports into Slack threads

`bot.fake_slack.FakeSlack` is a fake Slack workspace over HTTP for tests and `vdr console`;
`bot.views` builds every Block Kit payload; `bot.blockkit` holds Slack's limits.
"""

from bot.app import create_app
from bot.deps import Deps
from bot.errors import BotError, InvalidInput, PermissionDenied
from bot.grammar import Command
from bot.grammar import parse as parse_command
from bot.roles import Role, Roles
from bot.server import BotServer, asgi_app
from bot.watcher import JobWatcher

__all__ = [
    "BotError",
    "BotServer",
    "Command",
    "Deps",
    "InvalidInput",
    "JobWatcher",
    "PermissionDenied",
    "Role",
    "Roles",
    "asgi_app",
    "create_app",
    "parse_command",
]
