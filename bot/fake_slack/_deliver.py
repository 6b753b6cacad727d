"""Slack's other half: deliveries to the app's Request URL, built and signed as Slack does.

A slash command, a button click, a modal submission or an App Home visit becomes the form or
JSON body Slack would send, signed with the app's signing secret (v0, HMAC-SHA256 of
`v0:{timestamp}:{body}`), and posted over HTTP. Trigger ids and response URLs handed out here
are the ones the fake's Web API then accepts, with Slack's expiry rules.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot import blockkit
from bot.fake_slack._api import APP_ID, BOT_ID
from bot.fake_slack._store import Channel, Message, ResponseUrl, Store, User, View

ACK_DEADLINE_S = 3.0
"""Slack shows the user an error when the app has not answered within three seconds."""


class DeliveryError(Exception):
    """The fake could not build a delivery: unknown message, view, element or option."""


@dataclass(frozen=True)
class Delivery:
    """One request sent to the app, and how the app answered it."""

    kind: str
    body: str
    content_type: str
    status: int
    response_text: str
    elapsed_s: float
    retry_num: int = 0

    @property
    def late(self) -> bool:
        """True when Slack would have given up waiting for the acknowledgement."""
        return self.elapsed_s > ACK_DEADLINE_S

    def json(self) -> Any:
        return json.loads(self.response_text) if self.response_text.strip() else None


class SlackSide:
    """Builds, signs and sends what Slack sends to an app; applies what the app answers."""

    def __init__(self, store: Store, base_url: str, signing_secret: str) -> None:
        self.store = store
        self.base_url = base_url
        self.signer = SignatureVerifier(signing_secret)
        self.request_url: str | None = None
        self.http = httpx.Client(timeout=30.0)

    # -- sending -----------------------------------------------------------------------------

    def sign(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        """The two headers Slack adds to every request, for `body` sent at `timestamp`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.signer.generate_signature(timestamp=ts, body=body) or ""
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def send(self, kind: str, body: str, content_type: str, *, retry_num: int = 0,
             headers: dict[str, str] | None = None) -> Delivery:
        """Post `body` to the app, signed now; with `headers`, exactly those instead."""
        if self.request_url is None:
            raise DeliveryError("no request URL: set FakeSlack.request_url to the app's")
        signature = self.sign(body) if headers is None else {}
        sent = {"Content-Type": content_type, **signature}
        if retry_num:
            sent.update({"X-Slack-Retry-Num": str(retry_num),
                         "X-Slack-Retry-Reason": "http_timeout"})
        sent.update(headers or {})
        started = time.monotonic()
        response = self.http.post(self.request_url, content=body.encode(), headers=sent)
        return Delivery(kind, body, content_type, response.status_code, response.text,
                        time.monotonic() - started, retry_num)

    def redeliver(self, delivery: Delivery, retry_num: int = 1) -> Delivery:
        """The same body again, as Slack's retry of an unacknowledged delivery."""
        return self.send(delivery.kind, delivery.body, delivery.content_type,
                         retry_num=retry_num)

    def _form(self, kind: str, payload: dict[str, Any]) -> Delivery:
        body = urlencode({"payload": json.dumps(payload)})
        return self.send(kind, body, "application/x-www-form-urlencoded")

    # -- pieces every payload carries ----------------------------------------------------------

    def _user(self, user_id: str) -> User:
        user = self.store.users.get(user_id)
        if user is None:
            raise DeliveryError(f"unknown user {user_id}: add it with FakeSlack.add_user")
        return user

    def _channel(self, channel_id: str) -> Channel:
        with self.store.lock:
            channel = self.store.channels.get(channel_id)
            if channel is None:
                channel = Channel(channel_id, channel_id.lower())
                self.store.channels[channel_id] = channel
            return channel

    def _trigger(self, user_id: str) -> str:
        trigger_id = f"{int(time.time())}.{self.store.new_id('')}.fake"
        with self.store.lock:
            self.store.triggers[trigger_id] = (time.time(), user_id)
        return trigger_id

    def _response_url(self, channel: str, user: str, source: tuple[str, str] | None) -> str:
        token = self.store.new_id("R")
        with self.store.lock:
            self.store.response_urls[token] = ResponseUrl(token, channel, user, source,
                                                          time.time())
        return f"{self.base_url}/respond/{token}"

    def _user_obj(self, user: User) -> dict[str, Any]:
        return {"id": user.id, "username": user.name, "name": user.name,
                "team_id": self.store.team_id}

    def _team(self) -> dict[str, Any]:
        return {"id": self.store.team_id, "domain": "fake-workspace"}

    # -- slash commands ------------------------------------------------------------------------

    def command(self, text: str, *, user: str, channel: str, command: str = "/vdr") -> Delivery:
        who, where = self._user(user), self._channel(channel)
        form = {
            "token": "fake-verification-token", "team_id": self.store.team_id,
            "team_domain": "fake-workspace", "channel_id": where.id, "channel_name": where.name,
            "user_id": who.id, "user_name": who.name, "command": command, "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": self._response_url(where.id, who.id, None),
            "trigger_id": self._trigger(who.id),
        }
        delivery = self.send("command", urlencode(form), "application/x-www-form-urlencoded")
        self._show_ack_message(delivery, where.id, who.id)
        return delivery

    def _show_ack_message(self, delivery: Delivery, channel: str, user: str) -> None:
        """A command's acknowledgement may carry a message: Slack shows it to the user only."""
        if delivery.status != 200 or not delivery.response_text.strip():
            return
        try:
            answer = delivery.json()
        except ValueError:
            answer = {"text": delivery.response_text}
        if not isinstance(answer, dict) or not (answer.get("text") or answer.get("blocks")):
            return
        if blockkit.message_problems(answer.get("text"), answer.get("blocks")):
            return
        with self.store.lock:
            self.store.messages.append(Message(
                channel, self.store.new_ts(), self.store.bot_user_id, answer.get("text") or "",
                answer.get("blocks") or [], ephemeral_to=user,
            ))

    # -- clicks on messages and views ------------------------------------------------------------

    def click_message(self, channel: str, ts: str, *, user: str, action_id: str,
                      value: str | None = None) -> Delivery:
        who = self._user(user)
        with self.store.lock:
            message = self.store.find_message(channel, ts)
            if message is None:
                raise DeliveryError(f"no message {ts} in {channel}")
            block_id, element = _find_element(message.blocks, action_id, value)
            action = _action(block_id, element, value)
            snapshot = message.as_api()
            ephemeral = message.ephemeral_to is not None
        payload = {
            "type": "block_actions", "user": self._user_obj(who), "api_app_id": APP_ID,
            "token": "fake-verification-token", "team": self._team(),
            "container": {"type": "message", "message_ts": ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "trigger_id": self._trigger(who.id), "is_enterprise_install": False,
            "channel": {"id": channel, "name": self._channel(channel).name},
            "state": {"values": {}},
            "response_url": self._response_url(channel, who.id, (channel, ts)),
            "actions": [action],
        }
        if not ephemeral:
            payload["message"] = snapshot
        return self._form("block_actions", payload)

    def click_view(self, view_id: str, *, user: str, action_id: str,
                   value: str | None = None, values: dict[str, Any] | None = None) -> Delivery:
        who = self._user(user)
        with self.store.lock:
            view = self._view(view_id)
            block_id, element = _find_element(view.body.get("blocks") or [], action_id, value)
            action = _action(block_id, element, value)
            snapshot = self._view_payload(view, values or {})
        payload = {
            "type": "block_actions", "user": self._user_obj(who), "api_app_id": APP_ID,
            "token": "fake-verification-token", "team": self._team(),
            "container": {"type": "view", "view_id": view_id},
            "trigger_id": self._trigger(who.id), "is_enterprise_install": False,
            "view": snapshot, "actions": [action],
        }
        return self._form("block_actions", payload)

    # -- modal submissions ----------------------------------------------------------------------

    def submit(self, view_id: str, *, user: str, values: dict[str, Any] | None = None) -> Delivery:
        who = self._user(user)
        with self.store.lock:
            view = self._view(view_id)
            if view.type != "modal":
                raise DeliveryError(f"view {view_id} is not a modal")
            snapshot = self._view_payload(view, values or {})
        payload = {
            "type": "view_submission", "team": self._team(), "user": self._user_obj(who),
            "api_app_id": APP_ID, "token": "fake-verification-token",
            "trigger_id": self._trigger(who.id), "view": snapshot, "response_urls": [],
            "is_enterprise_install": False,
        }
        delivery = self._form("view_submission", payload)
        if delivery.status == 200:
            self._apply_response_action(view, delivery)
        return delivery

    def _apply_response_action(self, view: View, delivery: Delivery) -> None:
        """Close, update, push or keep the modal, as the acknowledgement asks."""
        try:
            answer = delivery.json() or {}
        except ValueError:
            answer = {}
        action = answer.get("response_action") if isinstance(answer, dict) else None
        with self.store.lock:
            if action == "errors":
                return
            if action == "update" and not blockkit.view_problems(answer.get("view")):
                view.history.append(view.body)
                view.body = dict(answer["view"])
                return
            if action == "push" and not blockkit.view_problems(answer.get("view")):
                pushed = View(self.store.new_id("V"), "modal", view.user, dict(answer["view"]),
                              self.store.new_id("h"), view.root_view_id, view.id)
                self.store.views[pushed.id] = pushed
                return
            stack = [v for v in self.store.views.values() if v.root_view_id == view.root_view_id]
            for closing in stack if action == "clear" else [view]:
                closing.closed = True

    def _view(self, view_id: str) -> View:
        view = self.store.views.get(view_id)
        if view is None or view.closed:
            raise DeliveryError(f"no open view {view_id}")
        return view

    def _view_payload(self, view: View, values: dict[str, Any]) -> dict[str, Any]:
        snapshot = view.as_api(self.store.team_id, APP_ID, BOT_ID)
        snapshot["state"] = {"values": dict(_state_values(view.body.get("blocks") or [], values))}
        return snapshot

    # -- events ----------------------------------------------------------------------------------

    def open_home(self, user: str) -> Delivery:
        who = self._user(user)
        event = {"type": "app_home_opened", "user": who.id, "channel": "D" + who.id[1:],
                 "tab": "home", "event_ts": self.store.new_ts()}
        body = {
            "token": "fake-verification-token", "team_id": self.store.team_id,
            "api_app_id": APP_ID, "event": event, "type": "event_callback",
            "event_id": self.store.new_id("Ev"), "event_time": int(time.time()),
            "authorizations": [{"team_id": self.store.team_id, "user_id": self.store.bot_user_id,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        return self.send("event", json.dumps(body), "application/json")


def _iter_elements(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, block in enumerate(blocks):
        block_id = block.get("block_id") or f"b{i}"
        for element in block.get("elements") or []:
            if block.get("type") == "actions":
                yield block_id, element
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                yield block_id, block[key]


def _find_element(blocks: list[dict[str, Any]], action_id: str,
                  value: str | None = None) -> tuple[str, dict[str, Any]]:
    """The element `action_id`; when several share it, the one offering `value`."""
    for block_id, element in _iter_elements(blocks):
        if element.get("action_id") == action_id and _offers(element, value):
            return block_id, element
    raise DeliveryError(f"no element with action_id {action_id!r} offering {value!r}")


def _offers(element: dict[str, Any], value: str | None) -> bool:
    if value is None:
        return True
    if element.get("type") == "button":
        return element.get("value") == value
    options = element.get("options") or []
    return any(value in (o.get("value"), o.get("text", {}).get("text")) for o in options)


def _pick(options: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    for option in options:
        if wanted in (option.get("value"), option.get("text", {}).get("text")):
            return copy.deepcopy(option)
    raise DeliveryError(f"no option {wanted!r}")


def _action(block_id: str, element: dict[str, Any], value: str | None) -> dict[str, Any]:
    """The `actions[0]` of a block_actions payload for a click on `element`."""
    action: dict[str, Any] = {"action_id": element.get("action_id"), "block_id": block_id,
                              "type": element.get("type"), "action_ts": f"{time.time():.6f}"}
    kind = element.get("type")
    if kind == "button":
        action["text"] = element.get("text")
        if "value" in element:
            action["value"] = element["value"]
    elif kind in ("overflow", "static_select", "radio_buttons"):
        if value is None:
            raise DeliveryError(f"{kind} {element.get('action_id')!r} needs an option")
        action["selected_option"] = _pick(element.get("options") or [], value)
    else:
        action["value"] = value
    return action


def _state_values(blocks: list[dict[str, Any]],
                  given: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """`view.state.values` as Slack builds it: the user's entries, else the initial values."""
    for i, block in enumerate(blocks):
        element = block.get("element")
        if block.get("type") != "input" or not isinstance(element, dict):
            continue
        block_id = block.get("block_id") or f"b{i}"
        action_id = element.get("action_id") or f"a{i}"
        raw = given.get(action_id, given.get(block_id))
        yield block_id, {action_id: _element_state(element, raw)}


def _element_state(element: dict[str, Any], raw: Any) -> dict[str, Any]:
    kind = element.get("type")
    state: dict[str, Any] = {"type": kind}
    options = element.get("options") or []
    if kind in ("checkboxes", "multi_static_select"):
        chosen = [_pick(options, v) for v in raw] if raw is not None else \
            copy.deepcopy(element.get("initial_options") or [])
        state["selected_options"] = chosen
    elif kind in ("radio_buttons", "static_select"):
        state["selected_option"] = _pick(options, raw) if raw is not None else \
            copy.deepcopy(element.get("initial_option"))
    elif kind == "users_select":
        state["selected_user"] = raw if raw is not None else element.get("initial_user")
    elif kind == "multi_users_select":
        state["selected_users"] = raw if raw is not None else element.get("initial_users", [])
    elif kind == "conversations_select":
        state["selected_conversation"] = raw if raw is not None else \
            element.get("initial_conversation")
    else:
        state["value"] = str(raw) if raw is not None else element.get("initial_value")
    return state
