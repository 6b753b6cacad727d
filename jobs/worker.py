"""`vdr worker`: an RQ worker on the jobs queue, plus a reaper for tasks whose worker died.

Any number of workers may run, on any number of machines sharing Redis (and, for local
exports, the export folder). RQ retries a task that raised; a worker killed outright (OOM,
SIGKILL, lost machine) is noticed through its task's lease, which stops being renewed: the
reaper, run by every worker at start and then every few seconds, queues such tasks again, and
the rerun skips what is already exported.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker

from jobs.s3_dest import warm_up_s3
from jobs.tasks import requeue_abandoned

__all__ = ["Reaper", "run_worker"]

log = logging.getLogger("vdr.jobs.worker")


class Reaper(threading.Thread):
    """Every `interval_s`, queue again the tasks whose worker died."""

    def __init__(self, redis_url: str, interval_s: float) -> None:
        super().__init__(name="vdr-reaper", daemon=True)
        self.redis = Redis.from_url(redis_url)  # its own connections: never shared across fork
        self.interval_s = interval_s
        self._halt = threading.Event()  # not `_stop`: threading.Thread has a method of that name

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            reap_once(self.redis, every_s=self.interval_s * 0.8)

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
    warm_up_s3()  # work horses fork from here and inherit the loaded service models
    reap_once(redis)
    worker_class = InProcessWorker if simple else ForkingWorker
    worker = worker_class([Queue(q, connection=redis) for q in queues], connection=redis, name=name)
    reaper = None if burst else Reaper(redis_url, reap_interval_s)
    if reaper is not None:
        reaper.start()
    try:
        return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
    finally:
        if reaper is not None:
            reaper.stop()
