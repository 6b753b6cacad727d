"""The Bolt app: which listener answers which delivery, and the factory that wires them up.

Every listener acknowledges first — with the answer itself when it is instant (help, a
form's validation errors) — and does the slow part afterwards on Bolt's listener thread, so
Slack always hears back within its three seconds. Repeated deliveries are dropped by the
`bot.dedupe` middleware before any listener runs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from redis import Redis
from slack_bolt import Ack, App, BoltResponse
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from bot import approvals, dedupe, flows, grammar, views
from bot.deps import Deps, web_client
from bot.errors import InvalidInput
from vdr_client import VdrClient
from vdr_ops.settings import Settings, get_settings

log = logging.getLogger("vdr.bot")


class _BoltNoise(logging.Filter):
    """Drops two of Bolt's log lines: one that is wrong for us, one that can leak a secret.

    `vdr bot` builds its WebClient from SLACK_BOT_TOKEN and Bolt reads the same variable
    again, then warns that the token is unused. Bolt also logs the whole body of a request
    whose signature fails (response_url, trigger_id ...); `bot.server` rejects those before
    Bolt sees them, and this is the second lock.
    """

    DROPPED = ("As you gave `client` as well", "Invalid request signature detected")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


bolt_log = logging.getLogger("vdr.bot.bolt")
"""Bolt's base logger: each of Bolt's loggers copies its filters when the app is built."""
bolt_log.addFilter(_BoltNoise())


class SlackApp(App):
    """Bolt's App, which also tells the HTTP front (`bot.server`) its signing secret."""

    def __init__(self, *, signing_secret: str, **kwargs: Any) -> None:
        super().__init__(signing_secret=signing_secret, **kwargs)
        self.signing_secret = signing_secret


def create_app(settings: Settings | None = None, *, web_client: WebClient | None = None,
               redis: Redis | None = None, engine: sa.Engine | None = None,
               vdr_client: VdrClient | None = None, deps: Deps | None = None) -> App:
    """The Bolt app, with each collaborator injectable (defaults come from `settings`).

    Nothing before an `ack()` waits on Slack or the VDR: role checks that may ask Slack for a
    user group's members run after it.
    """
    deps = deps or _deps(settings or get_settings(), web_client, redis, engine, vdr_client)
    secret = deps.settings.slack_signing_secret
    app = SlackApp(
        name="vdr-ops", client=deps.client, logger=bolt_log,
        signing_secret=secret.get_secret_value() if secret else "",
        process_before_response=False, raise_error_for_unhandled_request=False,
    )
    app.use(dedupe.middleware(deps.redis))
    _register(app, deps)
    return app


def _deps(settings: Settings, client: WebClient | None, redis: Redis | None,
          engine: sa.Engine | None, vdr: VdrClient | None) -> Deps:
    from jobs.store import get_engine

    return Deps(
        settings,
        client or web_client(settings),
        redis or Redis.from_url(settings.redis_url),
        engine or get_engine(settings.database_url),
        vdr or VdrClient.from_settings(settings),
    )


def _register(app: App, deps: Deps) -> None:
    app.command(grammar.COMMAND)(_on_command(deps))
    app.action(views.ROOM_MENU)(_on_room_menu(deps))
    for action_id, verb in ((views.ROOM_SHOW, "show"), (views.ROOM_EXPORT, "export"),
                            (views.ROOM_REPORTS, "reports")):
        app.action(action_id)(_on_room_button(deps, verb))
    app.action(re.compile(f"^{views.SEARCH_PAGE}:"))(_on_search_page(deps))
    app.action(views.JOB_CANCEL)(_on_cancel(deps))
    app.action(views.REPORT_SHOW)(_on_report(deps))
    app.view(views.EXPORT_MODAL)(_on_export_submit(deps))
    app.view(views.SETTINGS_MODAL)(_on_settings_submit(deps))
    app.event("app_home_opened")(_on_home_opened(deps))
    approvals.register(app, deps)
    app.error(_on_error)


def _on_command(deps: Deps) -> Any:
    def on_command(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        command = grammar.parse(body.get("text") or "")
        if isinstance(command, grammar.Help):
            ack(**views.help_message(command.topic, command.problem))
            return
        ack()
        log.info("%s: /vdr %s", body.get("user_id"), type(command).__name__.lower())
        reply = flows.Reply(deps.client, body["user_id"], body.get("channel_id"), respond,
                            body.get("trigger_id"))
        if isinstance(command, grammar.Export):
            flows.open_export(deps, reply, command.room)
        elif isinstance(command, grammar.Deletion):
            approvals.request_deletion(deps, reply, command.action, command.room)
        elif isinstance(command, grammar.EditSettings):
            flows.open_settings(deps, reply)
        else:
            flows.run_command(deps, command, reply)

    return on_command


def reply_to_action(deps: Deps, body: dict[str, Any], respond: Respond | None) -> flows.Reply:
    """Where to answer a click: the message's response_url, or a modal for Home and modals."""
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id")
    container = body.get("container") or {}
    if container.get("type") != "view":
        return flows.Reply(deps.client, user, channel, respond, body.get("trigger_id"))
    view = body.get("view") or {}
    in_modal = view.get("type") == "modal"
    return flows.Reply(deps.client, user, channel, None, body.get("trigger_id"),
                       view.get("id") if in_modal else None)


def _room_action(deps: Deps, reply: flows.Reply, verb: str, room_id: str) -> None:
    if verb == "export":
        flows.open_export(deps, reply, room_id)
    elif verb == "show":
        flows.run_command(deps, grammar.Show(room_id), reply)
    elif verb == "reports":
        flows.run_command(deps, grammar.Reports(room_id), reply)
    elif verb in approvals.ACTIONS:
        approvals.request_deletion(deps, reply, verb, room_id)


def _on_room_menu(deps: Deps) -> Any:
    def on_room_menu(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        verb, room_id = flows.parse_value(body["actions"][0]["selected_option"]["value"])
        _room_action(deps, reply_to_action(deps, body, respond), verb, room_id)

    return on_room_menu


def _on_room_button(deps: Deps, verb: str) -> Any:
    def on_room_button(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        room_id = body["actions"][0]["value"]
        _room_action(deps, reply_to_action(deps, body, respond), verb, room_id)

    return on_room_button


def _on_search_page(deps: Deps) -> Any:
    def on_search_page(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        session, _, page = body["actions"][0]["value"].rpartition(":")
        reply = reply_to_action(deps, body, respond)
        flows.guarded(reply, lambda: flows.show_search_page(deps, reply, session, int(page),
                                                            replace=True))

    return on_search_page


def _on_cancel(deps: Deps) -> Any:
    def on_cancel(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = reply_to_action(deps, body, respond)
        flows.run_command(deps, grammar.Cancel(body["actions"][0]["value"]), reply)
        if (body.get("view") or {}).get("type") == "home":
            flows.publish_home(deps, reply.user)

    return on_cancel


def _on_report(deps: Deps) -> Any:
    def on_report(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        reply = reply_to_action(deps, body, respond)
        flows.run_command(deps, grammar.ReportDetail(body["actions"][0]["value"]), reply)

    return on_report


def _on_export_submit(deps: Deps) -> Any:
    def on_export_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            request = flows.read_export_form(deps, view, user)
        except InvalidInput as error:
            ack(response_action="errors", errors={error.field: str(error)})
            return
        ack()
        # A copy of this submission that slipped past the delivery dedupe stops here; the
        # job's idempotency key is the last guard if Redis lost the claim.
        if dedupe.claim(deps.redis, f"export:{request.idempotency_key}"):
            flows.start_export(deps, request)

    return on_export_submit


def _on_settings_submit(deps: Deps) -> Any:
    def on_settings_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            new = flows.read_settings_form(deps, view, user)
        except InvalidInput as error:
            ack(response_action="errors", errors={error.field: str(error)})
            return
        ack()
        flows.save_settings(deps, new, user)

    return on_settings_submit


def _on_home_opened(deps: Deps) -> Any:
    def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            flows.publish_home(deps, event["user"])

    return on_home_opened


def _on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    kind = body.get("type") or ("command" if "command" in body else "?")
    log.exception("unhandled error in a %s listener: %s", kind, error, exc_info=error)
    return None
