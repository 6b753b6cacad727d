"""`vdr demo`: the whole product on one machine — proxy, worker and console in one process tree.

Nothing to set up first; each part takes the first embedded default that works:

- rooms: the sub-folders of `--root PATH` (real files, served by the directory backend), else a
  synthetic set with one small room, "Project Falcon – Closing Set", to export in seconds;
- SQL: SQLite in `.vdr-demo/`, always (DATABASE_URL is not used: the demo grants made-up
  people roles and rewrites runtime settings);
- Redis: the one at REDIS_URL when it is on this machine and answers, else a `redis-server`
  this demo starts on a free loopback port, else fakeredis inside this process;
- worker: `vdr worker` as a child process on a real Redis, a thread here on fakeredis;
- destinations: EXPORT_ROOT (`./exports`), plus S3 only when `--s3-bucket` is given (boto3
  finds its endpoint and credentials in its own AWS_* settings).

The children (redis-server, the worker) run in sessions of their own, so Ctrl-C reaches the
demo alone, which stops them in order; on Linux they also get SIGTERM if the demo dies hard.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import click
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console

from vdr_ops.settings import get_settings

log = logging.getLogger("vdr.demo")

STATE_DIR = ".vdr-demo"
"""The demo's own folder in the working directory: database, logs, a started Redis's files."""

FALCON = "Project Falcon – Closing Set"
"""The synthetic set's small room, the one `examples/first-look.vdr` exports."""

SYNTHETIC_SEED = 1
SYNTHETIC_ROOMS = 12
"""The synthetic set: this many generated rooms (realistic, too big to export in a demo) ..."""

FALCON_FILES = 120
FALCON_MEAN_SIZE = 48 * 1024
"""... plus Falcon: about 6 MB in 120 files."""

REDIS_START_TIMEOUT_S = 10.0
CHILD_STOP_TIMEOUT_S = 5.0
"""A child gets this long after each polite signal before a firmer one."""

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None


@click.command()
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Serve the sub-folders of this folder as rooms (real files; the directory "
                   "backend keeps its state in PATH/.vdr/). Default: a synthetic set.")
@click.option("--script", type=click.File("r", encoding="utf-8"), default=None,
              metavar="FILE", help="Run the console lines of FILE ('-': standard input) "
                                   "and exit; the exit status is 1 when a line fails.")
@click.option("--as", "person", default="ben", show_default=True, metavar="NAME",
              help="Who types first: ana (admin), ben (operator), cleo (approver), vic (viewer).")
@click.option("--redis", "redis_mode", default="auto", show_default=True,
              type=click.Choice(["auto", "url", "server", "fake"]),
              help="Which Redis: auto tries REDIS_URL when it is on this machine, then a "
                   "redis-server of our own, then fakeredis; url takes REDIS_URL wherever.")
@click.option("--s3-bucket", default=None, metavar="BUCKET",
              help="Also offer S3 as a destination: this bucket, reached by boto3's own "
                   "settings (AWS_PROFILE, AWS_ENDPOINT_URL_S3, ...).")
@click.option("--s3-prefix", default="vdr-demo", show_default=True, metavar="PREFIX",
              help="Key prefix of exports in the bucket.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(STATE_DIR), show_default=True, help="The demo's own folder.")
def demo(root: Path | None, script: IO[str] | None, person: str, redis_mode: str,
         s3_bucket: str | None, s3_prefix: str, state_dir: Path) -> None:
    """Run proxy, worker and console together, with embedded defaults.

    Rooms are synthetic unless --root names a folder of folders; SQLite lives in .vdr-demo/;
    Redis is the one at REDIS_URL, else a redis-server started here, else fakeredis; exports
    go to EXPORT_ROOT (./exports). Ctrl-C stops everything.
    """
    out = Console(highlight=False)
    # A shell starts background jobs (CI runners, `cmd &`) with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: Ctrl-C would then never reach us. Take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with contextlib.ExitStack() as stack:
            code = _run(stack, out, root=root, redis_mode=redis_mode, state_dir=state_dir,
                        s3=(s3_bucket, s3_prefix), script=script, person=person)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: the children die with us
        code = 130
    out.print("vdr demo: stopped.", style="dim")
    sys.exit(code)


def _run(stack: contextlib.ExitStack, out: Console, *, root: Path | None, redis_mode: str,
         state_dir: Path, s3: tuple[str | None, str], script: IO[str] | None,
         person: str) -> int:
    """Start everything, hand over to the console; the exit status. `stack` stops it all."""
    try:
        parts = start(stack, root=root, redis_mode=redis_mode, state_dir=state_dir, s3=s3,
                      out=out)
        return parts.console(script, person)
    except KeyboardInterrupt:
        out.print("\nvdr demo: stopping…", style="dim")
        return 130
    except DemoError as error:
        out.print(f"vdr demo: {error}", style="bold red", markup=False)
        return 2


class DemoError(Exception):
    """A part of the demo could not start; the message says which and what to do."""


# -- the parts ---------------------------------------------------------------------------------


@dataclass
class Parts:
    """The running demo: what the console needs, and what to tell the person at the keyboard."""

    redis: Redis
    engine: Any
    proxy_url: str
    out: Console
    stack: contextlib.ExitStack

    def console(self, script: IO[str] | None, person: str) -> int:
        from bot.console import Workspace
        from bot.console.cli import run
        from vdr_client import VdrClient

        vdr = self.stack.enter_context(VdrClient(self.proxy_url))
        workspace = self.stack.enter_context(
            Workspace(redis=self.redis, engine=self.engine, vdr=vdr, settings=get_settings()))
        workspace.grant_cast_roles()
        return run(workspace, script=script, person=person, out=self.out)


def start(stack: contextlib.ExitStack, *, root: Path | None, redis_mode: str, state_dir: Path,
          s3: tuple[str | None, str], out: Console) -> Parts:
    """Start every part but the console, each stopped by `stack` in reverse order."""
    state_dir.mkdir(parents=True, exist_ok=True)
    _log_to(state_dir / "demo.log")
    proxy = _proxy(root)  # bound now, so its URL is known; served once the rest is ready
    _configure_environment(state_dir, proxy.url)
    redis, redis_url, redis_label = _redis(stack, redis_mode, state_dir)
    engine = _database()
    _runtime_settings(engine, redis, s3)
    stack.enter_context(proxy)
    worker_label = _worker(stack, redis, redis_url, state_dir)  # stopped before the proxy
    _say_what_runs(out, root, proxy.url, redis_label, worker_label, engine)
    return Parts(redis, engine, proxy.url, out, stack)


def _proxy(root: Path | None) -> Any:
    from proxy import DirectoryBackend, ProxyServer, RoomSpec, SyntheticBackend, build_app

    if root is not None:
        backend: Any = DirectoryBackend(root)
    else:
        falcon = RoomSpec(FALCON, files=FALCON_FILES, mean_size=FALCON_MEAN_SIZE,
                          owner="Anna Schmidt")
        backend = SyntheticBackend(seed=SYNTHETIC_SEED, rooms=SYNTHETIC_ROOMS, specs=[falcon])
    return ProxyServer(build_app(backend))


def _configure_environment(state_dir: Path, proxy_url: str) -> None:
    """Point this process's settings (and the children's) at the demo's parts."""
    settings = get_settings()
    os.environ["VDR_API_URL"] = proxy_url
    os.environ.pop("VDR_API_TOKEN", None)  # the demo's proxy runs open, on loopback only
    # Always the demo's own database: it grants made-up people roles and rewrites settings.
    os.environ["DATABASE_URL"] = f"sqlite:///{(state_dir / 'vdr.db').absolute()}"
    os.environ["EXPORT_ROOT"] = str(Path(settings.export_root).absolute())
    get_settings.cache_clear()


def _database() -> Any:
    from jobs.store import get_engine

    return get_engine(get_settings().database_url)


def _runtime_settings(engine: Any, redis: Redis, s3: tuple[str | None, str]) -> None:
    """Exports go to EXPORT_ROOT, and to S3 only when a bucket was given."""
    from jobs.runtime_settings import load_runtime_settings, save_runtime_settings

    bucket, prefix = s3
    current = load_runtime_settings(engine, redis)
    updated = current.model_copy(update={"export_root": str(get_settings().export_root),
                                         "s3_bucket": bucket, "s3_prefix": prefix})
    save_runtime_settings(engine, redis, updated, actor="vdr demo")


# -- Redis -------------------------------------------------------------------------------------


def _redis(stack: contextlib.ExitStack, mode: str,
           state_dir: Path) -> tuple[Redis, str | None, str]:
    """(connection, URL or None for fakeredis, a line saying which)."""
    url = get_settings().redis_url
    # auto takes only a Redis on this machine: the demo writes its settings cache and queues
    # there, which a deployment's Redis elsewhere must not get. `--redis url` takes any.
    if (mode == "url" or (mode == "auto" and _is_local(url))) and _answers(url):
        return stack.enter_context(Redis.from_url(url)), url, f"Redis at {_safe(url)}"
    if mode == "url":
        raise DemoError(f"no Redis answers at REDIS_URL ({_safe(url)})")
    binary = shutil.which("redis-server")
    if mode in ("auto", "server") and binary:
        url = _start_redis_server(stack, binary, state_dir)
        os.environ["REDIS_URL"] = url
        get_settings.cache_clear()
        return stack.enter_context(Redis.from_url(url)), url, f"redis-server started at {url}"
    if mode == "server":
        raise DemoError("no redis-server on PATH; install Redis or use --redis fake")
    import fakeredis

    return fakeredis.FakeRedis(), None, "fakeredis (in this process; nothing kept)"


def _is_local(url: str) -> bool:
    """True for a Redis URL on this machine: a Unix socket or a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    host = parts.hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0) as probe:
            return bool(probe.ping())
    except (RedisError, OSError, ValueError):
        return False


def _start_redis_server(stack: contextlib.ExitStack, binary: str, state_dir: Path) -> str:
    port = _free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", str(state_dir.absolute()), "--protected-mode", "yes"]
    log_file = stack.enter_context(open(state_dir / "redis.log", "ab"))
    child = _spawn(command, log_file, os.environ.copy())
    stack.callback(_stop_child, child, "redis-server", [signal.SIGTERM, signal.SIGKILL])
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while not _answers(url):
        if child.poll() is not None or time.monotonic() > deadline:
            raise DemoError(f"redis-server did not start; see {state_dir / 'redis.log'}")
        time.sleep(0.05)
    return url


# -- the worker --------------------------------------------------------------------------------


def _worker(stack: contextlib.ExitStack, redis: Redis, redis_url: str | None,
            state_dir: Path) -> str:
    if redis_url is None:
        worker = ThreadWorker(redis).start()
        stack.callback(worker.stop)
        # What runs here keeps its state in this process's fakeredis: it ends with the demo.
        stack.callback(_cancel_running_jobs, redis)
        return "a worker thread in this process"
    log_file = stack.enter_context(open(state_dir / "worker.log", "ab"))
    child = _spawn([*_vdr_command(), "worker", "--simple"], log_file, os.environ.copy())
    # RQ's worker stops after its job on the first SIGINT, at once on the second.
    stack.callback(_stop_child, child, "vdr worker",
                   [signal.SIGINT, signal.SIGINT, signal.SIGKILL])
    return f"vdr worker (pid {child.pid}, log {state_dir / 'worker.log'})"


class ThreadWorker:
    """An RQ worker in a thread of this process: the only kind fakeredis can serve.

    RQ's own worker loop wants the main thread (signal handlers, SIGALRM timeouts), so this
    one takes jobs in short bursts with timer-based timeouts and leaves signals alone.
    """

    def __init__(self, redis: Redis, queue: str | None = None, idle_s: float = 0.2) -> None:
        from rq import Queue, SimpleWorker
        from rq.timeouts import TimerDeathPenalty

        from vdr_ops.defaults import QUEUE_NAME

        class _Worker(SimpleWorker):
            death_penalty_class = TimerDeathPenalty

            def _install_signal_handlers(self) -> None:
                """The demo's main thread owns the signals."""

            def subscribe(self) -> None:
                """No command channel: nothing outside this process commands this worker (and
                redis-py's pub/sub thread can hang the end of every burst on a real Redis)."""

            def unsubscribe(self) -> None:
                """Nothing was subscribed."""

        self._worker = _Worker([Queue(queue or QUEUE_NAME, connection=redis)], connection=redis)
        self.idle_s = idle_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vdr-demo-worker", daemon=True)

    def start(self) -> ThreadWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
            except Exception:  # a broken burst must not end the demo's only worker
                log.exception("demo worker: burst failed")
            self._stop.wait(self.idle_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current burst (a running export stops sooner when cancelled)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)


def _cancel_running_jobs(redis: Redis) -> None:
    from jobs import api
    from jobs.errors import JobsError
    from jobs.store import get_engine

    engine = get_engine(get_settings().database_url)
    for job in api.list_jobs(engine=engine, active_only=True, limit=100):
        with contextlib.suppress(JobsError, RedisError):
            api.cancel_job(job.id, actor="vdr demo (stopping)", redis=redis, engine=engine)


# -- children ----------------------------------------------------------------------------------


def _vdr_command() -> list[str]:
    """How to run `vdr` in a child: the venv's script, else this interpreter."""
    script = Path(sys.executable).parent / "vdr"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from vdr_ops.cli import main; main()"]


def _spawn(command: list[str], log_file: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo dies, even by SIGKILL (Linux).

    Runs between fork and exec while other threads of the demo hold whatever locks they
    hold, so it only makes one C call through a library handle loaded beforehand.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_child(child: subprocess.Popen[bytes], name: str, signals: list[int]) -> None:
    """Send `signals` one after the other until the child has exited; reap it."""
    for number in signals:
        if child.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, number)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=CHILD_STOP_TIMEOUT_S)
    if child.poll() is None:
        log.warning("%s (pid %d) did not stop", name, child.pid)


# -- small things ------------------------------------------------------------------------------


def _say_what_runs(out: Console, root: Path | None, proxy_url: str, redis_label: str,
                   worker_label: str, engine: Any) -> None:
    from bot.console._mrkdwn import visible

    rooms = f"the folders of {root} as rooms" if root else \
        f"{SYNTHETIC_ROOMS + 1} synthetic rooms (the small one: “{FALCON}”)"
    lines = [
        f"proxy     {proxy_url} serving {rooms}",
        f"redis     {redis_label}",
        f"worker    {worker_label}",
        f"database  {engine.url.render_as_string(hide_password=True)}",
        f"exports   {get_settings().export_root}",
    ]
    out.print("vdr demo", style="bold")
    for line in lines:
        out.print("  " + visible(line), style="dim", markup=False)  # paths are anyone's


def _log_to(path: Path) -> None:
    """Everything from INFO up to the demo's log file; the terminal stays the console's."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too many
    root.setLevel(min(root.level or logging.WARNING, logging.INFO))
    for stream_handler in root.handlers:
        if isinstance(stream_handler, logging.StreamHandler) and stream_handler is not handler:
            stream_handler.setLevel(max(stream_handler.level, logging.ERROR))


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
