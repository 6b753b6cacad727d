"""Fixtures of the deletion tests: a directory of real rooms behind the proxy, SQL, Redis, and
`vdr worker` processes that run the deletion jobs, configured only by their environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from jobs import api as jobs_api
from jobs import store
from jobs.config import EngineConfig
from jobs.engine import Services
from proxy import DirectoryBackend, ProxyServer
from vdr_client import VdrClient

FINAL_STATES = ("succeeded", "failed", "cancelled")

REQUESTER = "U0OPER001"
"""The operator of `tests.fixtures.slack`, who asks for deletions."""


@dataclass
class World:
    """One test's services: the rooms on disk, the proxy over them, Redis, SQL."""

    root: Path
    exports: Path
    backend: Any
    proxy_url: str
    vdr: VdrClient
    redis: Redis
    redis_url: str
    engine: Any
    database_url: str

    def export(self, room_name: str) -> store.Report:
        """Export a room to the local folder in this process (the real engine), to its report."""
        services = Services(
            redis=self.redis, engine=self.engine, config=EngineConfig(fsync=False),
            client_factory=lambda **kw: VdrClient(self.proxy_url, **kw),
        )
        report = jobs_api.run_export(
            room_ref=room_name, requested_by=REQUESTER, redis=self.redis, engine=self.engine,
            client=self.vdr, local_root=str(self.exports), services=services,
        )
        assert report is not None and report.state == "succeeded", report
        return report

    def wait_for_job(self, job_id: str, timeout_s: float = 60) -> store.JobRecord:
        """The job once a worker has finished it (any final state)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = store.get_job(self.engine, job_id)
            if job is not None and job.state in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state if job else '?'} "
                                   f"after {timeout_s:g}s")
            time.sleep(0.05)


def start_worker(world: World, log_path: Path) -> subprocess.Popen[bytes]:
    """`vdr worker` in its own process, configured only by its environment.

    A long-running worker, as in production, stopped by its pid when the test ends: a burst
    worker's exit can hang for up to a minute in RQ's pub/sub teardown, which is not ours to
    test here.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("VDR_")}
    env.update(REDIS_URL=world.redis_url, DATABASE_URL=world.database_url,
               VDR_API_URL=world.proxy_url)
    vdr = Path(sys.executable).with_name("vdr")
    command = [str(vdr), "worker", "--simple", "--no-scheduler"]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=10)


@pytest.fixture
def world(
    directory_root: Path, make_proxy: Callable[..., ProxyServer], redis_url: str,
    sqlite_url: str, tmp_path: Path,
) -> Iterator[World]:
    backend = DirectoryBackend(directory_root)
    server = make_proxy(backend)
    redis = Redis.from_url(redis_url)
    engine = store.get_engine(sqlite_url)
    vdr = VdrClient(server.url)
    yield World(directory_root, tmp_path / "exports", backend, server.url, vdr, redis, redis_url,
                engine, sqlite_url)
    vdr.close()
    redis.close()
    backend.close()


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path (the backend's sidecar left out)."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".vdr" not in path.relative_to(root).parts
    }


def every_path(root: Path) -> list[str]:
    """Every file and folder under `root`, sidecar included."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
def worker(world: World, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `vdr worker` process on the world's Redis, SQL and proxy for the test's length."""
    process = start_worker(world, tmp_path / "worker.log")
    yield process
    stop_worker(process)
