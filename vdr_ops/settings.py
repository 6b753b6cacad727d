"""Process configuration from the environment (and an optional `.env` file).

Runtime settings that admins edit from Slack live in SQL (see `jobs`); these are the ones a
process needs before it can reach anything. Secrets are `SecretStr`, so a repr or a log line
never shows them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from vdr_ops import defaults


class Settings(BaseSettings):
    """Every environment variable vdr-ops reads; `.env.example` lists the same names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    vdr_api_url: str = Field(defaults.API_URL, description="Base URL of the proxy.")
    vdr_api_token: SecretStr | None = Field(None, description="Bearer token for the proxy.")
    redis_url: str = Field(defaults.REDIS_URL, description="Redis for RQ and progress.")
    database_url: str = Field(defaults.DATABASE_URL, description="SQLAlchemy URL.")
    export_root: Path = Field(Path(defaults.EXPORT_ROOT), description="Local export folder.")
    slack_bot_token: SecretStr | None = Field(None, description="xoxb- token of the app.")
    slack_signing_secret: SecretStr | None = Field(None, description="Signs Slack requests.")
    slack_app_token: SecretStr | None = Field(None, description="xapp- token: Socket Mode.")
    slack_api_url: str | None = Field(None, description="Web API base URL; unset: Slack's.")
    port: int = Field(defaults.BOT_PORT, description="HTTP port of `vdr bot`.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
