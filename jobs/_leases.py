"""Leases: which process runs which task of a job, renewed while it runs.

A task (plan, a shard, finalize) runs only in the process holding its lease in Redis. The
holder renews it every third of the lease time from a thread of its own, which also watches
the job's cancel flag; a process that dies stops renewing, the lease expires, and the reaper
(`jobs.tasks.requeue_abandoned`) queues the task again. A task that raises is marked queued
again before its lease goes: RQ retries it, and the reaper must not take it for a dead one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from jobs.config import EngineConfig
from jobs.state import JobState, shard_task

__all__ = ["MAX_TASK_ATTEMPTS", "LeaseKeeper", "claim_shards", "held_lease", "requeued"]

log = logging.getLogger("vdr.jobs.export")

MAX_TASK_ATTEMPTS = 5
"""A task started this many times (crashes, killed workers) is given up as failed."""


def claim_shards(state: JobState, numbers: Sequence[int], config: EngineConfig) -> dict[str, str]:
    """Leases of the shards this process may run: task name -> lease token."""
    held: dict[str, str] = {}
    for number in numbers:
        task = shard_task(number)
        if state.tasks().get(task) in ("done", "failed"):
            continue
        token = state.acquire_lease(task, config.lease_s)
        if token is None:
            continue
        if state.count_attempt(task) > MAX_TASK_ATTEMPTS:
            log.error("job %s: %s started too often, giving up", state.job_id, task)
            state.set_task(task, "failed")
            state.release_lease(task, token)
            continue
        state.set_task(task, "running")
        held[task] = token
    return held


class LeaseKeeper(threading.Thread):
    """Renews this process's leases and watches the cancel flag, off the transfer threads."""

    def __init__(self, state: JobState, leases: dict[str, str], config: EngineConfig) -> None:
        super().__init__(name=f"vdr-keeper-{state.job_id}", daemon=True)
        self.state = state
        self.leases = dict(leases)
        self.config = config
        self.stop = threading.Event()
        self.lost = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        renew_every = self.config.lease_s / 3
        last_renewal = time.monotonic()
        while not self._closed.wait(min(0.5, renew_every)):
            if self.state.cancel_requested():
                self.stop.set()
            if time.monotonic() - last_renewal >= renew_every:
                self._renew()
                last_renewal = time.monotonic()

    def release(self, task: str) -> None:
        with self._lock:
            token = self.leases.pop(task, None)
        if token is not None:
            self.state.release_lease(task, token)

    def close(self) -> None:
        self._closed.set()
        self.join()
        for task in list(self.leases):
            self.release(task)

    def _renew(self) -> None:
        with self._lock:
            leases = dict(self.leases)
        for task, token in leases.items():
            if not self.state.renew_lease(task, token, self.config.lease_s):
                log.warning("job %s: lease of %s lost; stopping here", self.state.job_id, task)
                self.lost.set()
                self.stop.set()


@contextmanager
def held_lease(state: JobState, task: str, config: EngineConfig) -> Iterator[bool]:
    """Hold `task`'s lease (renewed in the background) for the block; False if taken."""
    token = state.acquire_lease(task, config.lease_s)
    if token is None:
        yield False
        return
    state.count_attempt(task)
    if state.tasks().get(task) != "done":
        state.set_task(task, "running")
    keeper = LeaseKeeper(state, {task: token}, config)
    keeper.start()
    try:
        yield True
    except BaseException:
        requeued(state, [task])
        raise
    finally:
        keeper.close()


def requeued(state: JobState, tasks: Sequence[str]) -> None:
    """Mark the tasks among `tasks` still running as queued: they raised, and wait for RQ's
    retry. Called while their leases are still held, so the reaper never sees them running
    without one (which is how a dead worker's task looks)."""
    current = state.tasks()
    for task in tasks:
        if current.get(task) == "running":
            state.set_task(task, "queued")
