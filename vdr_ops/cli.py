"""The `vdr` command: one entry point, each package contributing its own sub-commands."""

from __future__ import annotations

import importlib
import logging
import os

import click

# Sub-commands are imported lazily so `vdr proxy` does not pay for Slack or RQ imports.
_COMMANDS: dict[str, str] = {
    "proxy": "proxy.cli:proxy",
    "rooms": "vdr_ops.rooms_cli:rooms",
    "export": "jobs.cli:export",
    "cancel": "jobs.cli:cancel",
    "reports": "jobs.cli:reports",
    "report": "jobs.cli:report",
    "worker": "jobs.cli:worker",
    "db": "jobs.cli:db",
    "bot": "bot.cli:bot",
    "console": "bot.console.cli:console",
    "demo": "vdr_ops.demo:demo",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """vdr-ops: search, archive and remove virtual data rooms."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if os.environ.get("VDR_LOG_LEVEL"):
        level = logging.getLevelName(os.environ["VDR_LOG_LEVEL"].upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
