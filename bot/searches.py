"""Search sessions: the filters and page cursors behind a result message's paging buttons.

A button's value holds at most 2000 characters and a cursor is opaque, so the buttons carry
only `session:page`; the filters and the cursor of every page reached so far live in Redis.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict

from redis import Redis

from bot.grammar import Search

SESSION_TTL_S = 24 * 3600
"""A result message's buttons keep working for a day."""

_PREFIX = "vdr:bot:search:"


class SearchSessions:
    """Stores searches and the cursor of each page in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def start(self, search: Search, user: str) -> str:
        session = secrets.token_urlsafe(9)
        self._save(session, {"search": asdict(search), "user": user, "cursors": [None]})
        return session

    def search(self, session: str) -> Search | None:
        state = self._load(session)
        return Search(**state["search"]) if state else None

    def cursor(self, session: str, page: int) -> tuple[bool, str | None]:
        """(known, cursor) of `page`; unknown when the session expired or the page is unreached."""
        state = self._load(session)
        if state is None or not 0 <= page < len(state["cursors"]):
            return False, None
        return True, state["cursors"][page]

    def record_next(self, session: str, page: int, next_cursor: str | None) -> None:
        """Remember the cursor of page `page + 1`, as the API returned it with page `page`."""
        state = self._load(session)
        if state is None or next_cursor is None:
            return
        cursors = state["cursors"][: page + 1]
        cursors.append(next_cursor)
        state["cursors"] = cursors
        self._save(session, state)

    def _load(self, session: str) -> dict | None:
        raw = self.redis.get(_PREFIX + session)
        return json.loads(raw) if raw else None

    def _save(self, session: str, state: dict) -> None:
        self.redis.set(_PREFIX + session, json.dumps(state), ex=SESSION_TTL_S)
