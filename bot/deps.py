"""What the handlers need from the outside world, gathered in one object tests can build.

`Deps.from_settings` is what `vdr bot` uses; tests and the console pass their own Web API
client (pointed at the fake Slack), Redis, SQL engine and VDR client instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from redis import Redis
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.roles import Roles
from bot.searches import SearchSessions
from jobs.runtime_settings import RuntimeSettings, load_runtime_settings
from vdr_client import VdrClient
from vdr_ops.settings import Settings

SLACK_RATE_LIMIT_RETRIES = 5
"""429s from Slack are waited out (Retry-After) this many times before a call gives up."""


def web_client(settings: Settings) -> WebClient:
    """The Web API client of `vdr bot`: SLACK_BOT_TOKEN, SLACK_API_URL, 429s waited out."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_url or WebClient.BASE_URL
    return WebClient(token=token, base_url=base_url, retry_handlers=slack_retry_handlers())


def slack_retry_handlers() -> list[RetryHandler]:
    """Retry dropped connections once and every 429 after its Retry-After."""
    return [ConnectionErrorRetryHandler(),
            RateLimitErrorRetryHandler(max_retry_count=SLACK_RATE_LIMIT_RETRIES)]


@dataclass
class Deps:
    """The app's collaborators; one per process, shared by every handler thread."""

    settings: Settings
    client: WebClient
    redis: Redis
    engine: sa.Engine
    vdr: VdrClient
    roles: Roles = field(init=False)
    searches: SearchSessions = field(init=False)

    def __post_init__(self) -> None:
        self.roles = Roles(self.client, self.redis, self.runtime)
        self.searches = SearchSessions(self.redis)

    def runtime(self) -> RuntimeSettings:
        """The runtime settings now (Redis-cached copy of the SQL row)."""
        return load_runtime_settings(self.engine, self.redis)

    @classmethod
    def from_settings(cls, settings: Settings) -> Deps:
        from jobs.store import get_engine

        return cls(settings, web_client(settings), Redis.from_url(settings.redis_url),
                   get_engine(settings.database_url), VdrClient.from_settings(settings))
