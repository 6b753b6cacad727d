"""`vdr bot`: the Slack app, in Socket Mode when SLACK_APP_TOKEN is set, else over HTTP."""

from __future__ import annotations

import logging

import click

log = logging.getLogger("vdr.bot")


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Interface for HTTP mode (Slack reaches it through your HTTPS front end).")
@click.option("--port", type=int, default=None, help="HTTP port (default: PORT, else 3000).")
@click.option("--edit-interval", type=float, default=None,
              help="Seconds between edits of a job's progress message (default 3).")
def bot(host: str, port: int | None, edit_interval: float | None) -> None:
    """Run the Slack app and the watcher that posts job progress and reports to threads."""
    from bot.app import create_app
    from bot.deps import Deps
    from bot.server import serve_http, serve_socket_mode
    from bot.watcher import EDIT_INTERVAL_S, JobWatcher
    from vdr_ops.settings import get_settings

    settings = get_settings()
    _require(settings.slack_bot_token, "SLACK_BOT_TOKEN")
    if settings.slack_app_token is None:
        _require(settings.slack_signing_secret, "SLACK_SIGNING_SECRET")
    deps = Deps.from_settings(settings)
    app = create_app(deps=deps)
    watcher = JobWatcher(deps, edit_interval_s=edit_interval or EDIT_INTERVAL_S).start()
    try:
        if settings.slack_app_token is not None:
            serve_socket_mode(app, settings.slack_app_token.get_secret_value())
        else:
            serve_http(app, host, port or settings.port)
    finally:
        watcher.stop()


def _require(value: object, name: str) -> None:
    if value is None:
        raise click.UsageError(
            f"{name} is not set; README.md's 'Slack set-up' section says where to find it."
        )
