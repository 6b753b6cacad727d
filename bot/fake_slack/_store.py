"""The fake workspace's state: users, groups, channels, messages, views, files and every call.

One lock guards it all; the HTTP server's threads and the test (or console) read and write it
concurrently. Objects handed out are the stored ones, so read them under `store.lock` or take
the copies the `FakeSlack` facade returns.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class User:
    id: str
    name: str
    real_name: str = ""
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False

    def as_api(self, team_id: str) -> dict[str, Any]:
        real_name = self.real_name or self.name
        return {
            "id": self.id, "team_id": team_id, "name": self.name, "real_name": real_name,
            "deleted": False, "is_admin": self.is_admin, "is_owner": self.is_owner,
            "is_bot": self.is_bot, "tz": "UTC",
            "profile": {"real_name": real_name, "display_name": self.name,
                        "email": f"{self.name}@example.test"},
        }


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool = False
    is_im: bool = False
    bot_member: bool = True
    members: set[str] = field(default_factory=set)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "is_channel": not self.is_im and not self.is_private,
            "is_group": self.is_private, "is_im": self.is_im, "is_private": self.is_private,
            "is_member": self.bot_member,
        }


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    files: list[str] = field(default_factory=list)
    ephemeral_to: str | None = None
    deleted: bool = False
    edits: list[dict[str, Any]] = field(default_factory=list)
    """Earlier versions, oldest first: each {"text", "blocks", "replaced_at"}."""

    def as_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user,
                               "text": self.text, "blocks": copy.deepcopy(self.blocks)}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.files:
            out["files"] = [{"id": file_id} for file_id in self.files]
        if self.edits:
            out["edited"] = {"ts": self.edits[-1]["replaced_at"]}
        return out


@dataclass
class View:
    id: str
    type: str
    user: str
    body: dict[str, Any]
    hash: str
    root_view_id: str
    previous_view_id: str | None = None
    closed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier bodies, oldest first."""

    def as_api(self, team_id: str, app_id: str, bot_id: str) -> dict[str, Any]:
        out = copy.deepcopy(self.body)
        out.update({
            "id": self.id, "team_id": team_id, "app_id": app_id, "bot_id": bot_id,
            "hash": self.hash, "root_view_id": self.root_view_id,
            "previous_view_id": self.previous_view_id, "state": {"values": {}},
        })
        out.setdefault("private_metadata", "")
        out.setdefault("callback_id", "")
        out.setdefault("external_id", "")
        return out


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    title: str = ""
    content: bytes | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None

    def as_api(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.filename, "title": self.title or self.filename,
                "size": len(self.content or b""), "mimetype": "application/octet-stream"}


@dataclass(frozen=True)
class Call:
    """One request the fake answered: a Web API method, an upload or a response_url post."""

    method: str
    params: dict[str, Any]
    status: int
    ok: bool
    error: str | None
    at: float
    """When the request arrived (epoch seconds), before any injected delay."""


@dataclass
class Fault:
    """An injected answer for the next `times` calls of one method."""

    times: int
    status: int = 200
    error: str | None = None
    retry_after_s: int | None = None
    delay_s: float = 0.0


@dataclass
class ResponseUrl:
    """A response_url handed out with a delivery; Slack allows five uses in thirty minutes."""

    token: str
    channel: str
    user: str
    source: tuple[str, str] | None  # (channel, ts) of the message the action came from
    issued_at: float
    uses: int = 0


class Store:
    """Everything the fake workspace holds, behind one re-entrant lock."""

    def __init__(self, team_id: str, bot_user_id: str) -> None:
        self.lock = threading.RLock()
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.users: dict[str, User] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: list[Message] = []
        self.views: dict[str, View] = {}
        self.home_views: dict[str, str] = {}
        self.files: dict[str, UploadedFile] = {}
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.triggers: dict[str, tuple[float, str]] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        # Slack's ids never repeat, and apps dedupe deliveries by them for an hour in stores
        # that outlive one fake (Redis): start every instance at the current millisecond.
        self._ids = itertools.count(int(time.time() * 1000) % 0xF0000000)
        self._last_ts = 0.0

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def new_ts(self) -> str:
        """A message timestamp, strictly increasing like Slack's."""
        with self.lock:
            now = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = now
            return f"{now:.6f}"

    def find_message(self, channel: str, ts: str) -> Message | None:
        for message in self.messages:
            if message.channel == channel and message.ts == ts and not message.deleted:
                return message
        return None

    def take_fault(self, method: str) -> Fault | None:
        """The injected answer for this call of `method`, if one is pending."""
        with self.lock:
            queue = self.faults.get(method) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def record(self, method: str, params: dict[str, Any], status: int, body: dict[str, Any],
               at: float | None = None) -> None:
        """Remember one answered request; `at` is when it arrived (default: now)."""
        call = Call(method, params, status, bool(body.get("ok")), body.get("error"),
                    time.time() if at is None else at)
        with self.lock:
            self.calls.append(call)
