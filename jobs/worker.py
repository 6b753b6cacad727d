"""`vdr worker`: an RQ worker on the jobs queue, plus a reaper for tasks whose worker died.

Any number of workers may run, on any number of machines sharing Redis (and, for local
exports, the export folder). RQ retries a task that raised; a worker killed outright (OOM,
SIGKILL, lost machine) is noticed through its task's lease, which stops being renewed: the
reaper, run by every worker at start and then every few seconds, queues such tasks again, and
the rerun skips what is already exported.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.intermediate_queue import IntermediateQueue
from rq.job import JobStatus

from jobs.s3_dest import warm_up_s3
from jobs.tasks import requeue_abandoned

__all__ = ["Reaper", "recover_intermediate", "run_worker"]

log = logging.getLogger("vdr.jobs.worker")

_PR_SET_PDEATHSIG = 1
"""prctl option: the signal a process gets when its parent dies (Linux)."""

INTERMEDIATE_GRACE_S = 1.0
"""A job seen this long in RQ's intermediate list without starting was taken by a dead worker."""


def _die_with_parent() -> None:
    """In a forked child (RQ's scheduler, a work horse): die when the worker dies. Else a
    SIGKILLed worker leaves its scheduler alive, holding the worker's Redis socket and its
    blocking dequeue, which then swallows the next job into RQ's intermediate list."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed worker
        return
    if os.getppid() == 1:
        os._exit(1)  # the worker died between the fork and the prctl


_fork_hook_installed = False


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed:
        os.register_at_fork(after_in_child=_die_with_parent)
        _fork_hook_installed = True


class Reaper(threading.Thread):
    """Every `interval_s`, queue again the tasks whose worker died."""

    def __init__(self, redis_url: str, interval_s: float, queues: list[str]) -> None:
        super().__init__(name="vdr-reaper", daemon=True)
        self.queues = queues
        self.redis = Redis.from_url(redis_url)  # its own connections: never shared across fork
        self.interval_s = interval_s
        self._halt = threading.Event()  # not `_stop`: threading.Thread has a method of that name

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            reap_once(self.redis, every_s=self.interval_s * 0.8)
            _recover_quietly(self.redis, self.queues)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.interval_s + 5)
        self.redis.close()


class _QuickPubSub:
    """RQ listens for commands (stop a job, shut down) on a pub/sub channel in a thread that
    wakes every 60 s; closing it at shutdown waits for that wake-up, so a stopped worker hung
    for up to a minute. The same listener, woken every second, stops at once."""

    pubsub: Any
    pubsub_thread: Any
    connection: Redis
    pubsub_channel_name: str
    handle_payload: Any
    _pubsub_exception_handler: Any

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class ForkingWorker(_QuickPubSub, Worker):
    """RQ's worker (each job in a forked work horse) that stops promptly."""


class InProcessWorker(_QuickPubSub, SimpleWorker):
    """RQ's worker running jobs in its own process, that stops promptly."""


def reap_once(redis: Redis, *, every_s: float | None = None) -> list[str]:
    """One pass of the reaper; Redis trouble is logged, never fatal to the worker.

    A worker starting up always looks (`every_s` None); the periodic passes of all workers
    together look once per `every_s`.
    """
    try:
        requeued = requeue_abandoned(redis, every_s=every_s)
    except RedisError as error:
        log.warning("reaper could not check for abandoned tasks: %s", error)
        return []
    if requeued:
        log.warning("requeued abandoned tasks: %s", ", ".join(requeued))
    return requeued


def recover_intermediate(redis: Redis, queues: list[str], *, grace_s: float = 0) -> list[str]:
    """Put back on their queue the RQ jobs a dead worker took but never started.

    RQ moves a job to `<queue>:intermediate` as a worker takes it, and out again as the job
    starts; RQ itself looks there only every 10 minutes and gives such a job up as failed
    after one. A job still there, not started, after `grace_s` was taken by a process that is
    gone. Returns the RQ job ids put back.
    """
    seen = {name: _stuck(redis, name) for name in queues}
    if grace_s:
        time.sleep(grace_s)
    recovered = []
    for name, first in seen.items():
        queue = Queue(name, connection=redis)
        for rq_id in first & _stuck(redis, name):
            if redis.lrem(queue.intermediate_queue_key, 1, rq_id):  # one worker wins each
                redis.lpush(queue.key, rq_id)  # RQ takes from the left: it runs next
                recovered.append(rq_id)
    if recovered:
        log.warning("put back jobs a dead worker had taken: %s", ", ".join(recovered))
    return recovered


def _stuck(redis: Redis, name: str) -> set[str]:
    """Jobs in the queue's intermediate list that are still only queued (RQ leaves started
    and even finished jobs there when a worker serves several queues: those stay put)."""
    queue = Queue(name, connection=redis)
    taken = IntermediateQueue(queue.key, connection=redis).get_job_ids()
    stuck = set()
    for rq_id in taken:
        job = queue.fetch_job(rq_id)
        if job is not None and job.get_status() == JobStatus.QUEUED:
            stuck.add(rq_id)
    return stuck


def _recover_quietly(redis: Redis, queues: list[str]) -> None:
    try:
        recover_intermediate(redis, queues, grace_s=INTERMEDIATE_GRACE_S)
    except RedisError as error:
        log.warning("could not check RQ's intermediate lists: %s", error)


def run_worker(
    *,
    redis_url: str,
    queues: list[str],
    burst: bool = False,
    simple: bool = False,
    name: str | None = None,
    with_scheduler: bool = True,
    reap_interval_s: float = 10.0,
) -> bool:
    """Work the queues until stopped (or, with `burst`, until they are empty)."""
    redis = Redis.from_url(redis_url)
    _install_fork_hook()
    warm_up_s3()  # work horses fork from here and inherit the loaded service models
    reap_once(redis)
    _recover_quietly(redis, queues)
    worker_class = InProcessWorker if simple else ForkingWorker
    worker = worker_class([Queue(q, connection=redis) for q in queues], connection=redis, name=name)
    reaper = None if burst else Reaper(redis_url, reap_interval_s, queues)
    if reaper is not None:
        reaper.start()
    try:
        return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
    finally:
        if reaper is not None:
            reaper.stop()
