"""Search sessions: the filters and page cursors behind a result message's paging buttons.

A button's value holds at most 2000 characters and a cursor is opaque, so the buttons carry
only `session:page`; the filters and the cursor of every page reached so far live in Redis.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from typing import Any

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
        self._save(session, {"search": asdict(search), "user": user, "pages": [[None, 0]]})
        return session

    def search(self, session: str) -> Search | None:
        state = self._load(session)
        return Search(**state["search"]) if state else None

    def page(self, session: str, page: int) -> tuple[str | None, int] | None:
        """(cursor, index of its first room) of `page`; None when expired or never reached."""
        state = self._load(session)
        if state is None or not 0 <= page < len(state["pages"]):
            return None
        cursor, first = state["pages"][page]
        return cursor, first

    def record_next(self, session: str, page: int, next_cursor: str | None, shown: int) -> None:
        """Remember where page `page + 1` starts: the API's next cursor, after `shown` rooms."""
        state = self._load(session)
        if state is None or next_cursor is None or page >= len(state["pages"]):
            return
        pages = state["pages"][: page + 1]
        pages.append([next_cursor, pages[page][1] + shown])
        state["pages"] = pages
        self._save(session, state)

    def _load(self, session: str) -> dict[str, Any] | None:
        raw = self.redis.get(_PREFIX + session)
        return json.loads(raw) if raw else None

    def _save(self, session: str, state: dict[str, Any]) -> None:
        self.redis.set(_PREFIX + session, json.dumps(state), ex=SESSION_TTL_S)
