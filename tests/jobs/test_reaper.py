"""The reaper: tasks whose worker died are queued again, once, and live ones are left alone."""

from __future__ import annotations

from typing import Any

import pytest
from rq import Queue

from jobs._leases import held_lease
from jobs.config import EngineConfig
from jobs.plan import ExportSpec
from jobs.state import ACTIVE_JOBS, JobState
from jobs.tasks import enqueue_task, requeue_abandoned


def new_job(redis: Any, job_id: str = "job1") -> tuple[ExportSpec, JobState]:
    spec = ExportSpec(job_id=job_id, room_id="r1", room_name="Falcon", root_folder_id="f0",
                      room_folder="Falcon [r1]", local_root="/tmp/x", requested_by="U1")
    state = JobState(redis, job_id)
    state.save_spec(spec.model_dump())
    return spec, state


def planned_job(redis: Any, job_id: str = "job1") -> tuple[ExportSpec, JobState]:
    spec, state = new_job(redis, job_id)
    state.save_plan([[], []], [], {"files_total": 0, "bytes_total": 0})
    state.set_task("plan", "done")
    return spec, state


def queued_ids(redis: Any) -> list[str]:
    return list(Queue("vdr", connection=redis).job_ids)


def test_a_running_shard_without_lease_is_queued_again_and_only_once(redis_conn: Any) -> None:
    spec, state = planned_job(redis_conn)
    enqueue_task(redis_conn, spec, "shard:00000")
    enqueue_task(redis_conn, spec, "shard:00001")
    state.set_task("shard:00000", "running")  # its worker died: no lease
    state.set_task("shard:00001", "running")
    token = state.acquire_lease("shard:00001", 30)  # this one's worker is alive
    Queue("vdr", connection=redis_conn).empty()

    requeued = requeue_abandoned(redis_conn)
    again = requeue_abandoned(redis_conn)

    assert token is not None
    assert requeued == ["job1/shard:00000"]
    assert again == []  # queued now, with a live RQ job
    assert [job_id.split("-")[1] for job_id in queued_ids(redis_conn)] == ["shard"]
    assert state.tasks()["shard:00000"] == "queued"
    # The report tells of the restart, beside the files' own retries.
    assert state.retried() == [{"path": "job step shard:00000",
                                "reason": "its worker stopped; run again", "count": 1}]



def test_a_task_that_raised_waits_for_its_retry_and_is_not_taken_for_abandoned(
    redis_conn: Any,
) -> None:
    spec, state = new_job(redis_conn)
    enqueue_task(redis_conn, spec, "plan")  # its RQ job, which RQ runs again after a raise

    with pytest.raises(OSError), held_lease(state, "plan", EngineConfig()):
        raise OSError("the listing broke")

    assert state.tasks()["plan"] == "queued" and not state.lease_held("plan")
    assert requeue_abandoned(redis_conn) == []  # no copy beside the retry
    assert len(queued_ids(redis_conn)) == 1


def test_a_queued_task_whose_rq_job_vanished_is_queued_again(redis_conn: Any) -> None:
    spec, state = planned_job(redis_conn)
    for number in (0, 1):
        enqueue_task(redis_conn, spec, f"shard:0000{number}")
    Queue("vdr", connection=redis_conn).empty()  # e.g. lost between two steps

    requeued = requeue_abandoned(redis_conn)

    assert sorted(requeued) == ["job1/shard:00000", "job1/shard:00001"]
    assert len(queued_ids(redis_conn)) == 2


def test_a_job_whose_shards_are_over_gets_its_finalizer(redis_conn: Any) -> None:
    _, state = planned_job(redis_conn)
    state.set_task("shard:00000", "done")
    state.set_task("shard:00001", "failed")

    assert requeue_abandoned(redis_conn) == ["job1/finalize"]
    assert requeue_abandoned(redis_conn) == []  # claimed once


def test_periodic_passes_of_many_workers_look_once_per_interval(redis_conn: Any) -> None:
    _, state = planned_job(redis_conn)
    state.set_task("shard:00000", "running")

    first = requeue_abandoned(redis_conn, every_s=30)
    state.set_task("shard:00000", "running")
    second = requeue_abandoned(redis_conn, every_s=30)

    assert "job1/shard:00000" in first and second == []


def test_a_job_whose_state_expired_leaves_the_active_set(redis_conn: Any) -> None:
    redis_conn.sadd(ACTIVE_JOBS, "ghost")

    assert requeue_abandoned(redis_conn) == []
    assert not redis_conn.sismember(ACTIVE_JOBS, "ghost")
