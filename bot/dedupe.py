"""Each delivery from Slack is handled once, however many times Slack sends it.

Slack re-sends an event it thinks went unanswered (with `X-Slack-Retry-Num`), and a proxy or
a double click can deliver an interaction twice. Every delivery has an id that its copies
share — `event_id` for events, `trigger_id` for commands, clicks and submissions — and the
first process to `SET NX` that id in Redis handles it; the others acknowledge and drop it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from slack_bolt import BoltResponse

log = logging.getLogger("vdr.bot.dedupe")

SEEN_TTL_S = 3600
"""How long a delivery id is remembered; Slack's last retry comes about five minutes in."""

PREFIX = "vdr:bot:seen:"
"""Redis key prefix of claimed delivery ids."""


def delivery_key(body: dict[str, Any]) -> str | None:
    """The id every copy of this delivery shares, or None when it has none."""
    if body.get("type") == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"
    trigger_id = body.get("trigger_id")
    if trigger_id:
        return f"trigger:{body.get('type') or 'command'}:{trigger_id}"
    return None


def claim(redis: Redis, key: str, ttl_s: int = SEEN_TTL_S) -> bool:
    """True for the first caller with `key` (within `ttl_s`), False for every later one.

    When Redis cannot answer, the delivery is handled: running twice is the lesser evil than
    dropping a user's command (and jobs carry their own idempotency key).
    """
    try:
        return bool(redis.set(PREFIX + key, b"1", nx=True, ex=ttl_s))
    except RedisError as error:
        log.warning("dedupe unavailable, handling %s anyway: %s", key, error)
        return True


def middleware(redis: Redis) -> Callable[..., BoltResponse | None]:
    """A Bolt global middleware that acknowledges and drops repeated deliveries."""

    def drop_repeats(body: dict[str, Any], next: Callable[[], BoltResponse]) -> BoltResponse | None:
        key = delivery_key(body)
        if key is not None and not claim(redis, key):
            log.info("dropped a repeated delivery %s", key)
            return BoltResponse(status=200, body="")
        return next()

    return drop_repeats
