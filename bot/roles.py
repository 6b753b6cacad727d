"""Who may do what: viewer < operator < approver < admin, from user ids and user groups.

Runtime settings list, per role, Slack user ids (`U…`, `W…`) and user group ids (`S…`). Group
members come from `usergroups.users.list`, cached in Redis for a few minutes so a click never
waits on Slack twice. With no viewers listed everyone may view; with no admins listed, the
workspace's own admins and owners (`users.info`) are the app's admins, so a fresh install can
be configured by the person who installed it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import PermissionDenied

if TYPE_CHECKING:
    from jobs.runtime_settings import RuntimeSettings

log = logging.getLogger("vdr.bot.roles")

CACHE_TTL_S = 300
"""How long group members and workspace-admin flags are trusted before asking Slack again."""

_PREFIX = "vdr:bot:roles:"


class Role(IntEnum):
    """Roles in increasing power; each includes the ones below it."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Roles:
    """Resolves a Slack user's role from the runtime settings, expanding user groups."""

    def __init__(self, client: WebClient, redis: Redis | None,
                 load_settings: Callable[[], RuntimeSettings]) -> None:
        self.client = client
        self.redis = redis
        self.load_settings = load_settings

    def role_of(self, user: str) -> Role:
        settings = self.load_settings()
        if self._listed(user, settings.admins) or (
            not settings.admins and self._workspace_admin(user)
        ):
            return Role.ADMIN
        if self._listed(user, settings.approver_group):
            return Role.APPROVER
        if self._listed(user, settings.operators):
            return Role.OPERATOR
        if not settings.viewers or self._listed(user, settings.viewers):
            return Role.VIEWER
        return Role.NONE

    def is_approver(self, user: str) -> bool:
        """True when `user` is listed in the approver group (directly or by user group)."""
        return self._listed(user, self.load_settings().approver_group)

    def require(self, user: str, needed: Role) -> Role:
        """The user's role, or PermissionDenied when it is below `needed`."""
        role = self.role_of(user)
        if role < needed:
            log.info("user %s (%s) denied an action needing %s", user, role.label, needed.label)
            raise PermissionDenied(user, needed.label)
        return role

    def _listed(self, user: str, entries: Iterable[str]) -> bool:
        for entry in entries:
            entry = entry.strip()
            if entry == user or (entry.startswith("S") and user in self._members(entry)):
                return True
        return False

    def _members(self, group: str) -> set[str]:
        cached = self._cache_get(f"group:{group}")
        if cached is not None:
            return set(cached)
        try:
            members = list(self.client.usergroups_users_list(usergroup=group)["users"])
        except SlackApiError as error:
            log.warning("members of user group %s unknown (%s); treated as empty",
                        group, error.response.get("error"))
            return set()
        self._cache_put(f"group:{group}", members)
        return set(members)

    def _workspace_admin(self, user: str) -> bool:
        cached = self._cache_get(f"admin:{user}")
        if cached is not None:
            return bool(cached)
        try:
            info = self.client.users_info(user=user)["user"]
        except SlackApiError as error:
            log.warning("users.info of %s failed (%s)", user, error.response.get("error"))
            return False
        is_admin = bool(info.get("is_admin") or info.get("is_owner"))
        self._cache_put(f"admin:{user}", is_admin)
        return is_admin

    def _cache_get(self, key: str) -> Any:
        if self.redis is None:
            return None
        try:
            raw = self.redis.get(_PREFIX + key)
        except RedisError as error:
            log.warning("role cache unreadable: %s", error)
            return None
        return json.loads(raw) if raw is not None else None

    def _cache_put(self, key: str, value: Any) -> None:
        if self.redis is None:
            return
        try:
            self.redis.set(_PREFIX + key, json.dumps(value), ex=CACHE_TTL_S)
        except RedisError as error:
            log.warning("role cache not written: %s", error)
