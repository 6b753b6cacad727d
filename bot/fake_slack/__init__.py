"""A fake Slack workspace on 127.0.0.1: the Web API the app calls, and the deliveries it receives.

    with FakeSlack() as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.api_url)
        slack.request_url = "http://127.0.0.1:3000/slack/events"
        slack.add_user("U1", "ana")
        slack.command("search falcon", user="U1", channel="C1")

The Web API half keeps state (channels, messages with threads and edits, modals and Home
views, uploaded files), records every call, checks every payload against Block Kit's limits
and refuses like Slack (`invalid_blocks`), and answers 429 + Retry-After or an error on demand.
The delivery half plays Slack's side: signed slash commands, clicks, submissions and App Home
visits posted to the app's Request URL. Tests and `vdr console` use the same object.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slack_sdk import WebClient

from bot.fake_slack._api import APP_ID, BOT_ID, ApiFailure
from bot.fake_slack._deliver import Delivery, DeliveryError, SlackSide
from bot.fake_slack._server import FakeSlackHttpServer
from bot.fake_slack._store import Call, Channel, Fault, Message, Store, UploadedFile, User, View

__all__ = [
    "APP_ID",
    "BOT_ID",
    "ApiFailure",
    "Call",
    "Delivery",
    "DeliveryError",
    "FakeSlack",
    "Message",
    "UploadedFile",
    "View",
]

T = TypeVar("T")


class FakeSlack:
    """One fake workspace served over HTTP on a free loopback port."""

    def __init__(self, *, bot_token: str = "xoxb-fake-bot-token",
                 signing_secret: str = "fake-signing-secret", team_id: str = "T0FAKE",
                 bot_user_id: str = "U0FAKEBOT", trigger_ttl_s: float = 3.0) -> None:
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        self.store = Store(team_id, bot_user_id)
        self.store.users[bot_user_id] = User(bot_user_id, "vdr-ops", is_bot=True)
        self._server = FakeSlackHttpServer(self.store, bot_token)
        self._server.api.trigger_ttl_s = trigger_ttl_s
        self.url = self._server.url
        self.api_url = f"{self.url}/api/"
        self.slack = SlackSide(self.store, self.url, signing_secret)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._server.start()
        return self

    def stop(self) -> None:
        self.slack.http.close()
        self._server.stop()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def web_client(self, **kwargs: Any) -> WebClient:
        """A real WebClient pointed at this workspace with its bot token."""
        return WebClient(token=self.bot_token, base_url=self.api_url, **kwargs)

    @property
    def request_url(self) -> str | None:
        """The app's Request URL, where deliveries go."""
        return self.slack.request_url

    @request_url.setter
    def request_url(self, url: str | None) -> None:
        self.slack.request_url = url

    # -- the workspace -----------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, *, is_admin: bool = False,
                 is_owner: bool = False, real_name: str = "") -> None:
        with self.store.lock:
            self.store.users[user_id] = User(user_id, name, real_name, is_admin, is_owner)

    def add_usergroup(self, group_id: str, members: list[str]) -> None:
        with self.store.lock:
            self.store.usergroups[group_id] = list(members)

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False,
                    bot_member: bool = True) -> None:
        with self.store.lock:
            self.store.channels[channel_id] = Channel(channel_id, name, is_private,
                                                      bot_member=bot_member)

    # -- faults ------------------------------------------------------------------------------

    def throttle(self, method: str, *, times: int = 1, retry_after_s: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and `Retry-After`."""
        self._add_fault(method, Fault(times, status=429, retry_after_s=retry_after_s))

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200) -> None:
        """Refuse the next `times` calls of `method` with Slack error `error`."""
        self._add_fault(method, Fault(times, status=status, error=error))

    def slow(self, method: str, delay_s: float, *, times: int = 1) -> None:
        """Answer the next `times` calls of `method` only after `delay_s` seconds."""
        self._add_fault(method, Fault(times, delay_s=delay_s))

    def _add_fault(self, method: str, fault: Fault) -> None:
        with self.store.lock:
            self.store.faults.setdefault(method, []).append(fault)

    # -- reading what happened ---------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every call answered so far (of one method, when given), oldest first."""
        with self.store.lock:
            return [c for c in self.store.calls if method is None or c.method == method]

    def failed_calls(self) -> list[Call]:
        """Calls answered with an error, 429s included."""
        return [call for call in self.calls() if not call.ok]

    def messages(self, channel: str | None = None, *, user: str | None = None,
                 include_deleted: bool = False) -> list[Message]:
        """Copies of the messages in `channel` (all channels when None), oldest first.

        `user` given: the public messages plus the ephemeral ones shown to that user.
        """
        with self.store.lock:
            found = [
                copy.deepcopy(m) for m in self.store.messages
                if (channel is None or m.channel == channel)
                and (include_deleted or not m.deleted)
                and (m.ephemeral_to is None or user is None or m.ephemeral_to == user)
            ]
        return found

    def message(self, channel: str, ts: str) -> Message | None:
        with self.store.lock:
            found = self.store.find_message(channel, ts)
            return copy.deepcopy(found) if found else None

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies to the message `ts` in `channel`, oldest first."""
        return [m for m in self.messages(channel) if m.thread_ts == ts and m.ts != ts]

    def view(self, view_id: str) -> View | None:
        with self.store.lock:
            found = self.store.views.get(view_id)
            return copy.deepcopy(found) if found else None

    def open_modal(self, user: str) -> View | None:
        """The modal on top of `user`'s screen, if any."""
        with self.store.lock:
            found = self._server.api.open_modal_of(user)
            return copy.deepcopy(found) if found else None

    def home(self, user: str) -> View | None:
        """The App Home view last published for `user`."""
        with self.store.lock:
            view_id = self.store.home_views.get(user)
            return copy.deepcopy(self.store.views[view_id]) if view_id else None

    def file(self, file_id: str) -> UploadedFile | None:
        with self.store.lock:
            found = self.store.files.get(file_id)
            return copy.deepcopy(found) if found else None

    def wait_for(self, probe: Callable[[], T | None], timeout_s: float = 10.0,
                 what: str = "condition") -> T:
        """Poll `probe` until it returns something truthy; the app works after its ack."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Slack: no {what} within {timeout_s:g}s")
            time.sleep(0.02)

    # -- Slack's side: deliveries to the app --------------------------------------------------

    def command(self, text: str, *, user: str, channel: str, command: str = "/vdr") -> Delivery:
        """`/vdr text` typed by `user` in `channel`."""
        return self.slack.command(text, user=user, channel=channel, command=command)

    def click(self, channel: str, ts: str, action_id: str, *, user: str,
              value: str | None = None) -> Delivery:
        """`user` clicks the element `action_id` of message `ts` (an option: `value`)."""
        return self.slack.click_message(channel, ts, user=user, action_id=action_id,
                                        value=value)

    def click_view(self, view_id: str, action_id: str, *, user: str, value: str | None = None,
                   values: dict[str, Any] | None = None) -> Delivery:
        """`user` clicks an element of a modal or Home view."""
        return self.slack.click_view(view_id, user=user, action_id=action_id, value=value,
                                     values=values)

    def submit(self, view_id: str, *, user: str, values: dict[str, Any] | None = None) -> Delivery:
        """`user` submits the modal; `values` by action_id or block_id, the rest as shown."""
        return self.slack.submit(view_id, user=user, values=values)

    def open_home(self, user: str) -> Delivery:
        """`user` opens the app's Home tab (an `app_home_opened` event)."""
        return self.slack.open_home(user)

    def redeliver(self, delivery: Delivery, retry_num: int = 1) -> Delivery:
        """Send the same body again, as Slack retries a delivery."""
        return self.slack.redeliver(delivery, retry_num)

    def send_raw(self, body: str, content_type: str, headers: dict[str, str]) -> Delivery:
        """Post `body` with exactly these signature headers (forged ones, in tests)."""
        return self.slack.send("raw", body, content_type, headers=headers)
