"""Defaults shared by every process, each in one place so settings and docs agree."""

from __future__ import annotations

PROXY_HOST = "127.0.0.1"
"""The proxy binds to loopback unless told otherwise."""

PROXY_PORT = 8700
"""The proxy's port when `--port` is not given; `VDR_API_URL` defaults to match."""

API_URL = f"http://{PROXY_HOST}:{PROXY_PORT}"
"""Where the client and jobs find the proxy when `VDR_API_URL` is unset."""

REDIS_URL = "redis://127.0.0.1:6379/0"
"""Redis for RQ queues, progress counters and the settings cache."""

DATABASE_URL = "sqlite:///vdr-ops.db"
"""SQLite file in the working folder when `DATABASE_URL` is unset."""

EXPORT_ROOT = "./exports"
"""Local export destination when neither the environment nor runtime settings name one."""

BOT_PORT = 3000
"""HTTP port of the Bolt app (`/slack/events`) when Socket Mode is off."""

QUEUE_NAME = "vdr"
"""The RQ queue export and deletion jobs go to."""
