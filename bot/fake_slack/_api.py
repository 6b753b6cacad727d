"""The Web API methods the app uses, answered from the fake workspace's state.

Each method takes the merged request parameters (query, form or JSON body) and returns Slack's
answer; a refusal raises `ApiFailure` with Slack's error code, which the server turns into
`{"ok": false, "error": ...}` exactly as Slack does (HTTP 200, the error in the body).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from bot import blockkit
from bot.fake_slack._store import Channel, Message, Store, UploadedFile, View

APP_ID = "A0FAKEAPP"
BOT_ID = "B0FAKEBOT"

TRIGGER_TTL_S = 3.0
"""Slack lets an app open a modal with a trigger_id for three seconds."""


class ApiFailure(Exception):
    """Slack's refusal of a call: `error` is its code, `messages` the details it gives."""

    def __init__(self, error: str, messages: list[str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []


def _json_param(value: Any, name: str) -> Any:
    """Blocks and views arrive as JSON text in form posts and as objects in JSON posts."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ApiFailure("invalid_arguments", [f"{name} is not valid JSON"]) from exc
    return value


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise ApiFailure("invalid_arguments", [f"[ERROR] missing required field: {name}"])
    return value


class WebApi:
    """Slack's Web API methods over one `Store`; `upload_base` is where uploads go."""

    def __init__(self, store: Store, upload_base: str, trigger_ttl_s: float = TRIGGER_TTL_S):
        self.store = store
        self.upload_base = upload_base
        self.trigger_ttl_s = trigger_ttl_s
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.delete": self.chat_delete,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.getPermalink": self.chat_get_permalink,
            "views.open": self.views_open,
            "views.push": self.views_push,
            "views.update": self.views_update,
            "views.publish": self.views_publish,
            "files.getUploadURLExternal": self.files_get_upload_url,
            "files.completeUploadExternal": self.files_complete_upload,
            "users.info": self.users_info,
            "usergroups.users.list": self.usergroups_users_list,
            "conversations.info": self.conversations_info,
            "conversations.open": self.conversations_open,
            "conversations.history": self.conversations_history,
            "conversations.replies": self.conversations_replies,
        }

    # -- auth, users, groups ---------------------------------------------------------------

    def auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake-workspace.slack.test/", "team": "Fake Workspace",
                "user": "vdr-ops", "team_id": self.store.team_id,
                "user_id": self.store.bot_user_id, "bot_id": BOT_ID,
                "is_enterprise_install": False}

    def users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.store.users.get(_required(params, "user"))
        if user is None:
            raise ApiFailure("user_not_found")
        return {"ok": True, "user": user.as_api(self.store.team_id)}

    def usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        members = self.store.usergroups.get(_required(params, "usergroup"))
        if members is None:
            raise ApiFailure("no_such_subteam")
        return {"ok": True, "users": list(members)}

    # -- channels and messages ---------------------------------------------------------------

    def _channel(self, channel_id: str, *, posting: bool = False) -> Channel:
        store = self.store
        if channel_id.startswith(("U", "W")) and channel_id in store.users:
            return self._im_with(channel_id)
        channel = store.channels.get(channel_id)
        if channel is None or (channel.is_private and not channel.bot_member):
            raise ApiFailure("channel_not_found")
        if posting and channel.is_im and not channel.bot_member:
            raise ApiFailure("not_in_channel")
        return channel

    def _im_with(self, user_id: str) -> Channel:
        channel_id = "D" + user_id[1:]
        channel = self.store.channels.get(channel_id)
        if channel is None:
            channel = Channel(channel_id, user_id, is_im=True, members={user_id})
            self.store.channels[channel_id] = channel
        return channel

    def _content(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        text = params.get("text") or ""
        blocks = _json_param(params.get("blocks"), "blocks") or []
        if not text and not blocks:
            raise ApiFailure("no_text")
        if len(text) > blockkit.MESSAGE_TEXT_MAX:
            raise ApiFailure("msg_too_long")
        problems = blockkit.message_problems(text, blocks)
        if problems:
            raise ApiFailure("invalid_blocks", problems)
        return text, blocks

    def _thread_root(self, channel: str, thread_ts: str | None) -> str | None:
        if not thread_ts:
            return None
        parent = self.store.find_message(channel, str(thread_ts))
        if parent is None:
            raise ApiFailure("thread_not_found")
        return parent.thread_ts or parent.ts

    def chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel = self._channel(_required(params, "channel"), posting=True)
            text, blocks = self._content(params)
            thread_ts = self._thread_root(channel.id, params.get("thread_ts"))
            message = Message(channel.id, self.store.new_ts(), self.store.bot_user_id, text,
                              blocks, thread_ts)
            self.store.messages.append(message)
            return {"ok": True, "channel": channel.id, "ts": message.ts,
                    "message": message.as_api()}

    def chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel, message = self._own_message(params, "cant_update_message")
            text, blocks = self._content(params)
            message.edits.append({"text": message.text, "blocks": message.blocks,
                                  "replaced_at": self.store.new_ts()})
            message.text, message.blocks = text, blocks
            return {"ok": True, "channel": channel.id, "ts": message.ts, "text": text,
                    "message": message.as_api()}

    def chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel, message = self._own_message(params, "cant_delete_message")
            message.deleted = True
            return {"ok": True, "channel": channel.id, "ts": message.ts}

    def _own_message(self, params: dict[str, Any], not_ours: str) -> tuple[Channel, Message]:
        """The channel and the bot's own message that `params` name (Slack lets an app change
        only what it posted: anything else fails with `not_ours`)."""
        channel = self._channel(_required(params, "channel"))
        message = self.store.find_message(channel.id, str(_required(params, "ts")))
        if message is None:
            raise ApiFailure("message_not_found")
        if message.user != self.store.bot_user_id:
            raise ApiFailure(not_ours)
        return channel, message

    def chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel = self._channel(_required(params, "channel"), posting=True)
            user = _required(params, "user")
            if user not in self.store.users:
                raise ApiFailure("user_not_found")
            text, blocks = self._content(params)
            message = Message(channel.id, self.store.new_ts(), self.store.bot_user_id, text,
                              blocks, params.get("thread_ts"), ephemeral_to=user)
            self.store.messages.append(message)
            return {"ok": True, "message_ts": message.ts}

    def chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel = self._channel(_required(params, "channel"))
            ts = str(_required(params, "message_ts"))
            if self.store.find_message(channel.id, ts) is None:
                raise ApiFailure("message_not_found")
            link = f"https://fake-workspace.slack.test/archives/{channel.id}/p{ts.replace('.', '')}"
            return {"ok": True, "channel": channel.id, "permalink": link}

    def conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            return {"ok": True, "channel": self._channel(_required(params, "channel")).as_api()}

    def conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = str(_required(params, "users")).split(",")
        if len(users) != 1 or users[0] not in self.store.users:
            raise ApiFailure("user_not_found")
        with self.store.lock:
            return {"ok": True, "channel": self._im_with(users[0]).as_api()}

    def conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel = self._channel(_required(params, "channel"))
            top = [m for m in self.store.messages if m.channel == channel.id and not m.deleted
                   and m.ephemeral_to is None and m.thread_ts is None]
            limit = int(params.get("limit") or 100)
            newest_first = sorted(top, key=lambda m: m.ts, reverse=True)
            return {"ok": True, "messages": [m.as_api() for m in newest_first[:limit]],
                    "has_more": len(newest_first) > limit}

    def conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            channel = self._channel(_required(params, "channel"))
            root = self._thread_root(channel.id, _required(params, "ts"))
            thread = [m for m in self.store.messages if m.channel == channel.id
                      and not m.deleted and m.ephemeral_to is None
                      and (m.ts == root or m.thread_ts == root)]
            return {"ok": True, "messages": [m.as_api() for m in thread], "has_more": False}

    # -- views -------------------------------------------------------------------------------

    def _view_body(self, params: dict[str, Any]) -> dict[str, Any]:
        body = _json_param(_required(params, "view"), "view")
        problems = blockkit.view_problems(body)
        if problems:
            raise ApiFailure("invalid_arguments", problems)
        return dict(body)

    def _use_trigger(self, trigger_id: str) -> str:
        issued = self.store.triggers.pop(trigger_id, None)
        if issued is None:
            raise ApiFailure("invalid_trigger_id")
        issued_at, user = issued
        if time.time() - issued_at > self.trigger_ttl_s:
            raise ApiFailure("expired_trigger_id")
        return user

    def _new_view(self, body: dict[str, Any], user: str, root: str | None,
                  previous: str | None) -> View:
        view_id = self.store.new_id("V")
        view = View(view_id, body["type"], user, body, _hash(body), root or view_id, previous)
        self.store.views[view_id] = view
        return view

    def _answer(self, view: View) -> dict[str, Any]:
        return {"ok": True, "view": view.as_api(self.store.team_id, APP_ID, BOT_ID)}

    def views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            body = self._view_body(params)
            if body["type"] != "modal":
                raise ApiFailure("invalid_arguments", ["views.open takes a modal"])
            user = self._use_trigger(str(_required(params, "trigger_id")))
            return self._answer(self._new_view(body, user, None, None))

    def views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            body = self._view_body(params)
            user = self._use_trigger(str(_required(params, "trigger_id")))
            below = self.open_modal_of(user)
            if below is None:
                raise ApiFailure("not_found")
            return self._answer(self._new_view(body, user, below.root_view_id, below.id))

    def views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            body = self._view_body(params)
            view = self._find_view(params)
            given_hash = params.get("hash")
            if given_hash and given_hash != view.hash:
                raise ApiFailure("hash_conflict")
            view.history.append(view.body)
            view.body, view.hash = body, _hash(body, len(view.history))
            return self._answer(view)

    def views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            body = self._view_body(params)
            if body["type"] != "home":
                raise ApiFailure("invalid_arguments", ["views.publish takes a home view"])
            user = str(_required(params, "user_id"))
            if user not in self.store.users:
                raise ApiFailure("user_not_found")
            view_id = self.store.home_views.get(user)
            if view_id is None:
                view = self._new_view(body, user, None, None)
                self.store.home_views[user] = view.id
                return self._answer(view)
            view = self.store.views[view_id]
            given_hash = params.get("hash")
            if given_hash and given_hash != view.hash:
                raise ApiFailure("hash_conflict")
            view.history.append(view.body)
            view.body, view.hash = body, _hash(body, len(view.history))
            return self._answer(view)

    def _find_view(self, params: dict[str, Any]) -> View:
        view_id, external_id = params.get("view_id"), params.get("external_id")
        if not view_id and not external_id:
            raise ApiFailure("invalid_arguments", ["view_id or external_id is required"])
        for view in self.store.views.values():
            if view.closed:
                continue
            if view.id == view_id or (external_id and view.body.get("external_id") == external_id):
                return view
        raise ApiFailure("not_found")

    def open_modal_of(self, user: str) -> View | None:
        """The modal on top of `user`'s stack, if one is open."""
        modals = [v for v in self.store.views.values()
                  if v.user == user and v.type == "modal" and not v.closed]
        return modals[-1] if modals else None

    # -- files (the v2 upload: get URL, upload bytes, complete) -------------------------------

    def files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = str(_required(params, "filename"))
        try:
            length = int(_required(params, "length"))
        except ValueError as exc:
            raise ApiFailure("invalid_arguments", ["length must be an integer"]) from exc
        with self.store.lock:
            file_id = self.store.new_id("F")
            self.store.files[file_id] = UploadedFile(file_id, filename, length)
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.upload_base}/{file_id}"}

    def receive_upload(self, file_id: str, content: bytes) -> tuple[int, str]:
        """The upload URL's POST: (HTTP status, body text)."""
        with self.store.lock:
            record = self.store.files.get(file_id)
            if record is None or record.completed:
                return 404, "file_not_found"
            if len(content) != record.length:
                return 400, f"length mismatch: announced {record.length}, got {len(content)}"
            record.content = content
        return 200, f"OK - {len(content)}"

    def files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = _json_param(_required(params, "files"), "files")
        channel_id = params.get("channel_id") or params.get("channels")
        with self.store.lock:
            records = [self._uploaded(entry) for entry in entries]
            if channel_id:
                self._share(records, str(channel_id), params)
            return {"ok": True, "files": [record.as_api() for record in records]}

    def _uploaded(self, entry: dict[str, Any]) -> UploadedFile:
        record = self.store.files.get(str(entry.get("id")))
        if record is None or record.content is None:
            raise ApiFailure("file_not_found")
        record.title = entry.get("title") or record.filename
        record.completed = True
        return record

    def _share(self, records: list[UploadedFile], channel_id: str, params: dict[str, Any]) -> None:
        channel = self._channel(channel_id, posting=True)
        thread_ts = self._thread_root(channel.id, params.get("thread_ts"))
        message = Message(channel.id, self.store.new_ts(), self.store.bot_user_id,
                          params.get("initial_comment") or "", [], thread_ts,
                          files=[record.id for record in records])
        self.store.messages.append(message)
        for record in records:
            record.channel, record.thread_ts = channel.id, thread_ts


def _hash(body: dict[str, Any], version: int = 0) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"{int(time.time())}.{version}{digest}"
