"""The console against the real app: fake Slack over HTTP, the Bolt app served on loopback, the
proxy over a synthetic backend, real Redis and SQLite, and an RQ worker thread on that Redis.

`console(...)` yields a `Session` whose output is captured as plain text (`transcript()`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.console import Session, Timing, Workspace
from proxy import RoomSpec, SyntheticBackend
from vdr_client import VdrClient

ROOMS = [
    RoomSpec("Project Falcon – Closing Set", files=24, file_size=2048, folders=3, depth=2),
    RoomSpec("Project Osprey", files=6, file_size=512),
    RoomSpec("Osprey Refinancing", files=4, file_size=512, status="archived"),
]
"""Small rooms: two share "Osprey", so labels can be ambiguous."""

FAST = Timing(quiet_s=0.15, line_timeout_s=20.0, expect_timeout_s=5.0, wait_timeout_s=40.0)


@dataclass
class ConsoleRig:
    session: Session
    workspace: Workspace
    vdr: VdrClient
    export_root: Path
    output: io.StringIO

    def transcript(self) -> str:
        return self.output.getvalue()

    def run(self, *lines: str) -> int:
        return self.session.run_script(lines)


@pytest.fixture
def console_env(redis_conn: Any, sqlite_url: str, sqlite_engine: Any, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch, make_proxy: Any) -> Iterator[dict[str, Any]]:
    """Proxy, settings and environment shared by the app and the in-process jobs code."""
    from vdr_ops.settings import Settings, get_settings

    proxy = make_proxy(SyntheticBackend(seed=3, rooms=0, specs=ROOMS))
    export_root = tmp_path / "exports"
    for name, value in {"VDR_API_URL": proxy.url, "DATABASE_URL": sqlite_url,
                        "EXPORT_ROOT": str(export_root)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VDR_API_TOKEN", raising=False)
    get_settings.cache_clear()
    settings = Settings(_env_file=None)
    yield {"proxy": proxy, "settings": settings, "export_root": export_root,
           "redis": redis_conn, "engine": sqlite_engine}
    get_settings.cache_clear()


@pytest.fixture
def console(console_env: dict[str, Any]) -> Iterator[Callable[..., ConsoleRig]]:
    """Factory: `console(person="ben", worker=True)` → a session on a started workspace."""
    from vdr_ops.demo import ThreadWorker

    with ExitStack() as stack:

        def make(person: str = "ben", *, worker: bool = True) -> ConsoleRig:
            vdr = stack.enter_context(VdrClient(console_env["proxy"].url))
            workspace = stack.enter_context(Workspace(
                redis=console_env["redis"], engine=console_env["engine"], vdr=vdr,
                settings=console_env["settings"]))
            workspace.grant_cast_roles()
            if worker:
                stack.callback(ThreadWorker(console_env["redis"], idle_s=0.05).start().stop)
            output = io.StringIO()
            out = Console(file=output, width=110, color_system=None, emoji=True)
            session = Session(workspace, out, person=person, timing=FAST)
            return ConsoleRig(session, workspace, vdr, console_env["export_root"], output)

        yield make
