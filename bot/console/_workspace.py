"""The console's workspace: a fake Slack on loopback, the real Bolt app and the job watcher.

The app is the one `vdr bot` runs (`bot.app.create_app`), served over HTTP on a free loopback
port; the fake delivers signed requests to it and answers its Web API calls. A small cast of
people, each with a role, and one channel make the workspace; more people join with `as`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from redis import Redis
from slack_bolt import App

from bot.console.errors import ConsoleError
from bot.fake_slack import FakeSlack
from vdr_client import VdrClient
from vdr_ops.settings import Settings, get_settings

log = logging.getLogger("vdr.bot.console")

CHANNEL_ID = "C0DEALOPS"
CHANNEL_NAME = "deal-ops"
"""The channel the console types into unless told otherwise."""

EDIT_INTERVAL_S = 1.0
"""Progress edits in the console come faster than in Slack (3 s): nobody is rate-limited here."""


@dataclass(frozen=True)
class Person:
    name: str
    user_id: str
    role: str
    """admin, operator, approver or viewer: what `grant_cast_roles` gives them."""


CAST: tuple[Person, ...] = (
    Person("ana", "U0CASTANA", "admin"),
    Person("ben", "U0CASTBEN", "operator"),
    Person("cleo", "U0CASTCLEO", "approver"),
    Person("vic", "U0CASTVIC", "viewer"),
)
"""Who is in the console's workspace from the start."""

DEFAULT_PERSON = "ben"
"""The operator: may search, export and ask for deletions, but not approve them."""


class Workspace:
    """`with Workspace(redis=..., engine=..., vdr=...) as ws:` the app, served and reachable."""

    def __init__(self, *, redis: Redis, engine: sa.Engine, vdr: VdrClient,
                 settings: Settings | None = None, edit_interval_s: float = EDIT_INTERVAL_S,
                 watch_jobs: bool = True) -> None:
        self.fake = FakeSlack()
        self.redis, self.engine, self.vdr = redis, engine, vdr
        self.settings = _bot_settings(settings or get_settings(), self.fake)
        self.edit_interval_s = edit_interval_s
        self.watch_jobs = watch_jobs
        self.app: App | None = None
        self.listeners = ListenerTracker()
        self._stack: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Workspace:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from bot.app import create_app
        from bot.deps import Deps, slack_retry_handlers
        from bot.server import BotServer

        self.fake.start()
        self._stack.append(self.fake.stop)
        self._populate()
        client = self.fake.web_client(retry_handlers=slack_retry_handlers())
        self.deps = Deps(self.settings, client, self.redis, self.engine, self.vdr)
        self.app = create_app(deps=self.deps)
        self.listeners.install(self.app)
        self._stack.append(self.listeners.shutdown)
        server = _serve(BotServer, self.app)
        self._stack.append(server.stop)
        self.fake.request_url = server.url
        if self.watch_jobs:
            self._start_watcher()

    def _start_watcher(self) -> None:
        from bot.watcher import JobWatcher

        watcher = JobWatcher(self.deps, edit_interval_s=self.edit_interval_s, block_ms=200)
        watcher.start()
        self._stack.append(watcher.stop)

    def stop(self) -> None:
        while self._stack:
            closing = self._stack.pop()
            try:
                closing()
            except Exception:  # stopping the rest matters more than one part's complaint
                log.exception("console: error while stopping")

    def __enter__(self) -> Workspace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- people and places -------------------------------------------------------------------

    def _populate(self) -> None:
        for person in CAST:
            self.fake.add_user(person.user_id, person.name, real_name=person.name.capitalize())
        self.fake.add_channel(CHANNEL_ID, CHANNEL_NAME)

    def person(self, ref: str, *, create: bool = False) -> tuple[str, str]:
        """(user id, name) of the person named or identified by `ref`; new when `create`."""
        wanted = ref.strip().lstrip("@")
        with self.fake.store.lock:
            for user in self.fake.store.users.values():
                if not user.is_bot and wanted.casefold() in (user.name.casefold(),
                                                             user.id.casefold()):
                    return user.id, user.name
            taken = set(self.fake.store.users)
        if not create or not wanted.isidentifier():
            raise ConsoleError(f"nobody is called {ref!r}; people here: {', '.join(self.names())}")
        user_id = _new_user_id(wanted, taken)
        self.fake.add_user(user_id, wanted, real_name=wanted.capitalize())
        return user_id, wanted

    def names(self) -> list[str]:
        with self.fake.store.lock:
            return [u.name for u in self.fake.store.users.values() if not u.is_bot]

    def name_of(self, ref: str) -> str:
        """The display name of a user or channel id (the id itself when unknown)."""
        with self.fake.store.lock:
            user = self.fake.store.users.get(ref)
            if user is not None:
                return user.name
            channel = self.fake.store.channels.get(ref)
        if channel is None:
            return ref
        return f"{self.name_of(channel.name)} (direct message)" if channel.is_im else channel.name

    def channel(self, ref: str) -> str:
        """The id of channel `ref` (`#name`, name or id), created when new."""
        wanted = ref.strip().lstrip("#")
        with self.fake.store.lock:
            for channel in self.fake.store.channels.values():
                if wanted in (channel.id, channel.name):
                    return channel.id
            taken = set(self.fake.store.channels)
        if not wanted or not all(c.isalnum() or c in "-_" for c in wanted):
            raise ConsoleError(f"{ref!r} is not a channel name (letters, digits, - and _)")
        channel_id = _new_channel_id(wanted, taken)
        self.fake.add_channel(channel_id, wanted)
        return channel_id

    def grant_cast_roles(self) -> None:
        """Add the cast to the runtime settings' role lists (the demo's first step).

        Additive: whoever already holds a role keeps it. An empty viewers list means everyone
        may view, so the viewer is added only to a list that names people.
        """
        from jobs.runtime_settings import load_runtime_settings, save_runtime_settings

        current = load_runtime_settings(self.engine, self.redis)
        fields = {"admin": "admins", "operator": "operators", "approver": "approver_group",
                  "viewer": "viewers"}
        update: dict[str, list[str]] = {}
        for role, name in fields.items():
            held: list[str] = list(getattr(current, name))
            if role == "viewer" and not held:
                continue
            cast = [p.user_id for p in CAST if p.role == role and p.user_id not in held]
            update[name] = held + cast
        if any(update[name] != getattr(current, name) for name in update):
            save_runtime_settings(self.engine, self.redis, current.model_copy(update=update),
                                  actor="vdr console")


class ListenerTracker:
    """Counts Bolt listeners still running after their ack, so the console knows when the
    app has finished answering a line.

    Bolt acknowledges a request and carries on in its listener executor; it offers no public
    hook for "that listener has returned", so the console swaps in an executor that counts.
    Without Bolt's runner (a future Bolt), the console falls back to waiting for quiet.
    """

    def __init__(self) -> None:
        self._executor = _CountingExecutor()

    def install(self, app: App) -> None:
        runner = getattr(app, "_listener_runner", None)
        lazy = getattr(runner, "lazy_listener_runner", None)
        if runner is None or not hasattr(runner, "listener_executor"):
            log.debug("Bolt's listener runner not found; settling on quiet only")
            return
        runner.listener_executor = self._executor
        if lazy is not None and hasattr(lazy, "executor"):
            lazy.executor = self._executor

    @property
    def busy(self) -> int:
        return self._executor.busy

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=8, thread_name_prefix="vdr-console-listener")
        self._count_lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        with self._count_lock:
            return self._busy

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._count_lock:
            self._busy += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any] | None) -> None:
        with self._count_lock:
            self._busy -= 1


def _bot_settings(base: Settings, fake: FakeSlack) -> Settings:
    """The process settings with Slack's three pointed at the fake workspace."""
    return base.model_copy(update={
        "slack_bot_token": SecretStr(fake.bot_token),
        "slack_signing_secret": SecretStr(fake.signing_secret),
        "slack_api_url": fake.api_url,
        "slack_app_token": None,
    })


def _serve(server_class: Any, app: App, attempts: int = 3) -> Any:
    """The app served on a free loopback port (another process may take a port first)."""
    for _ in range(attempts - 1):
        try:
            return server_class(app, _free_port()).start()
        except RuntimeError:
            log.info("console: the app's port was taken; trying another")
    return server_class(app, _free_port()).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_user_id(name: str, taken: set[str]) -> str:
    return _new_slack_id("U0", name, 7, taken)


def _new_channel_id(name: str, taken: set[str]) -> str:
    return _new_slack_id("C0", name, 8, taken)


def _new_slack_id(prefix: str, name: str, stem_length: int, taken: set[str]) -> str:
    """A readable Slack-style id made from `name`, numbered on when it is already taken."""
    stem = prefix + "".join(c for c in name.upper() if c.isalnum())[:stem_length]
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}{n}"
    return candidate
