"""Retries: which answers are retried, how long the client waits, and when it gives up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.client._fakes import (
    CAPABILITIES,
    FakeTime,
    Handler,
    make_client,
    operation_json,
    room_json,
)
from vdr_client import (
    BadRequest,
    DeadlineExceeded,
    IntegrityError,
    NotFound,
    RateLimited,
    RetryEvent,
    RetryPolicy,
    ServerError,
    TransportError,
    Unauthorized,
    parse_retry_after,
)


def scripted(*answers: httpx.Response | Exception) -> tuple[list[httpx.Request], Handler]:
    """A handler that plays `answers` in order, then repeats the last one."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handler


def ok_room() -> httpx.Response:
    return httpx.Response(200, json=room_json("r1", "Project Falcon"))


def error(status: int, code: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "no"}}, headers=headers)


# -- Retry-After ---------------------------------------------------------------------------


def test_retry_after_in_seconds_is_parsed() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0


def test_retry_after_as_http_date_is_seconds_from_now() -> None:
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)

    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(42.0)
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True),
                             now=now.timestamp()) == 0.0


def test_unreadable_retry_after_is_ignored() -> None:
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_429_waits_exactly_what_retry_after_says() -> None:
    time = FakeTime()
    seen, handler = scripted(error(429, "rate_limited", **{"Retry-After": "3"}), ok_room())
    client = make_client(handler, time=time, policy=RetryPolicy(base_delay_s=5, deadline_s=60))

    room = client.get_room("r1")

    assert room.name == "Project Falcon"
    assert len(seen) == 2
    assert time.sleeps == [3.0]


def test_retry_after_as_http_date_is_honoured() -> None:
    time = FakeTime()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    _, handler = scripted(error(503, **{"Retry-After": when}), ok_room())
    client = make_client(handler, time=time, policy=RetryPolicy(deadline_s=60))

    client.get_room("r1")

    assert 17 < time.sleeps[0] <= 20


def test_retry_after_from_the_error_body_when_no_header() -> None:
    time = FakeTime()
    body = {"error": {"code": "rate_limited", "message": "slow down", "retry_after_s": 1.5}}
    _, handler = scripted(httpx.Response(429, json=body), ok_room())
    client = make_client(handler, time=time)

    client.get_room("r1")

    assert time.sleeps == [1.5]


# -- backoff, attempts and deadline --------------------------------------------------------


def test_the_exact_wait_in_the_body_wins_over_the_rounded_header() -> None:
    time = FakeTime()
    body = {"error": {"code": "rate_limited", "message": "slow down", "retry_after_s": 0.2}}
    _, handler = scripted(httpx.Response(429, json=body, headers={"Retry-After": "1"}), ok_room())
    client = make_client(handler, time=time)

    client.get_room("r1")

    assert time.sleeps == [0.2]


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0)
    rng = random.Random(7)

    for retry_number, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [policy.backoff_s(retry_number, rng) for _ in range(300)]
        assert 0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # really spread over the whole range
        assert min(delays) < ceiling * 0.2


def test_5xx_without_retry_after_backs_off_within_the_ceiling() -> None:
    time = FakeTime()
    policy = RetryPolicy(attempts=6, base_delay_s=1.0, max_delay_s=4.0, deadline_s=600)
    _, handler = scripted(error(500), error(502), error(503), error(504), ok_room())
    client = make_client(handler, time=time, policy=policy)

    client.get_room("r1")

    assert len(time.sleeps) == 4
    for delay, ceiling in zip(time.sleeps, [1.0, 2.0, 4.0, 4.0], strict=True):
        assert 0 <= delay <= ceiling


def test_attempts_run_out_and_the_last_error_is_raised() -> None:
    time = FakeTime()
    seen, handler = scripted(error(503, "unavailable"))
    client = make_client(handler, time=time, policy=RetryPolicy(attempts=4, deadline_s=600))

    with pytest.raises(ServerError) as raised:
        client.get_room("r1")

    assert len(seen) == 4
    assert raised.value.status_code == 503
    assert raised.value.code == "unavailable"


def test_rate_limited_is_raised_when_attempts_run_out() -> None:
    _, handler = scripted(error(429, **{"Retry-After": "0"}))
    client = make_client(handler, time=FakeTime(), policy=RetryPolicy(attempts=3))

    with pytest.raises(RateLimited):
        client.capabilities()


def test_deadline_stops_retrying_before_it_is_passed() -> None:
    time = FakeTime()
    seen, handler = scripted(error(429, **{"Retry-After": "4"}))
    client = make_client(handler, time=time, policy=RetryPolicy(attempts=100, deadline_s=10))

    with pytest.raises(DeadlineExceeded) as raised:
        client.get_room("r1")

    assert sum(time.sleeps) <= 10
    assert len(seen) == 3  # waits 4 + 4, a third wait would pass the deadline
    assert isinstance(raised.value.__cause__, RateLimited)
    assert "429" in str(raised.value)


def test_a_retry_after_beyond_the_deadline_is_not_slept() -> None:
    time = FakeTime()
    _, handler = scripted(error(503, **{"Retry-After": "3600"}))
    client = make_client(handler, time=time, policy=RetryPolicy(deadline_s=60))

    with pytest.raises(DeadlineExceeded):
        client.get_room("r1")

    assert time.sleeps == []


def test_deadline_exceeded_is_a_transport_error() -> None:
    assert issubclass(DeadlineExceeded, TransportError)


@pytest.mark.parametrize(
    ("status", "raised"),
    [(400, BadRequest), (401, Unauthorized), (403, Unauthorized), (404, NotFound)],
)
def test_client_errors_are_never_retried(status: int, raised: type[Exception]) -> None:
    time = FakeTime()
    seen, handler = scripted(error(status, "nope"), ok_room())
    client = make_client(handler, time=time)

    with pytest.raises(raised):
        client.get_room("r1")

    assert len(seen) == 1
    assert time.sleeps == []


def test_a_server_that_will_never_do_it_is_not_asked_again() -> None:
    seen, handler = scripted(error(501, "not_implemented"), ok_room())

    with pytest.raises(ServerError):
        make_client(handler, time=FakeTime()).get_room("r1")

    assert len(seen) == 1


def test_on_retry_sees_every_retry_with_its_reason() -> None:
    events: list[RetryEvent] = []
    _, handler = scripted(
        error(429, **{"Retry-After": "0.25"}),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset by peer"),
        error(503),
        ok_room(),
    )
    client = make_client(handler, time=FakeTime(), on_retry=events.append)

    client.get_room("r1")

    assert [event.reason for event in events] == [
        "429", "connection refused", "connection reset", "503"
    ]
    assert [event.attempt for event in events] == [2, 3, 4, 5]
    assert events[0].delay_s == 0.25
    assert {(event.method, event.path) for event in events} == {("GET", "/v1/rooms/r1")}


def test_connection_errors_are_retried_then_reported_as_transport_errors() -> None:
    seen, handler = scripted(httpx.ConnectError("connection refused"))
    client = make_client(handler, time=FakeTime(), policy=RetryPolicy(attempts=3))

    with pytest.raises(TransportError) as raised:
        client.get_room("r1")

    assert len(seen) == 3
    assert not isinstance(raised.value, DeadlineExceeded)
    assert "connection refused" in str(raised.value)


def test_post_actions_are_retried_because_they_are_idempotent() -> None:
    time = FakeTime()
    seen, handler = scripted(
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(202, json=operation_json("op1")),
    )
    client = make_client(handler, time=time)

    operation = client.trash_room("r1")

    assert operation.id == "op1"
    assert [request.method for request in seen] == ["POST", "POST"]
    assert seen[0].url.path == "/v1/rooms/r1:trash"


def test_purge_sends_if_match_on_every_attempt() -> None:
    purge = httpx.Response(202, json=operation_json("op", kind="purge"))
    seen, handler = scripted(error(503), purge)
    client = make_client(handler, time=FakeTime())

    client.purge_room("r1", '"etag-7"')

    assert [request.headers["If-Match"] for request in seen] == ['"etag-7"', '"etag-7"']


def test_truncated_json_is_retried_as_a_cut_body() -> None:
    events: list[RetryEvent] = []
    seen, handler = scripted(httpx.Response(200, content=b'{"id": "r1", "na'), ok_room())
    client = make_client(handler, time=FakeTime(), on_retry=events.append)

    assert client.get_room("r1").id == "r1"
    assert [event.reason for event in events] == ["cut body"]


def test_a_body_cut_while_reading_is_retried_as_a_cut_body() -> None:
    from tests.client._fakes import BrokenStream

    events: list[RetryEvent] = []
    cut = httpx.Response(200, headers={"Content-Length": "900"}, stream=BrokenStream(b"{" * 100))
    _, handler = scripted(cut, ok_room())
    client = make_client(handler, time=FakeTime(), on_retry=events.append)

    assert client.get_room("r1").id == "r1"
    assert [event.reason for event in events] == ["cut body"]


def test_an_answer_of_the_wrong_shape_is_an_integrity_error_not_retried() -> None:
    seen, handler = scripted(httpx.Response(200, json={"id": "r1"}), ok_room())
    client = make_client(handler, time=FakeTime())

    with pytest.raises(IntegrityError):
        client.get_room("r1")

    assert len(seen) == 1


def test_an_error_without_the_canonical_body_still_maps_by_status() -> None:
    _, handler = scripted(httpx.Response(404, text="<html>gone</html>"))
    client = make_client(handler, time=FakeTime())

    with pytest.raises(NotFound) as raised:
        client.get_room("r1")

    assert "gone" in str(raised.value)


def test_wait_operation_polls_until_done() -> None:
    time = FakeTime()
    answers = [operation_json("op1", "pending"), operation_json("op1", "running"),
               operation_json("op1", "succeeded")]
    _, handler = scripted(*(httpx.Response(200, json=body) for body in answers))
    client = make_client(handler, time=time)

    operation = client.wait_operation("op1")

    assert operation.state == "succeeded"
    assert len(time.sleeps) == 2


def test_wait_operation_gives_up_after_its_timeout() -> None:
    time = FakeTime()
    _, handler = scripted(httpx.Response(200, json=operation_json("op1", "running")))
    client = make_client(handler, time=time)

    with pytest.raises(DeadlineExceeded, match="still running"):
        client.wait_operation("op1", timeout_s=5)

    assert time.now - 1000.0 <= 5


def test_capabilities_are_fetched_once() -> None:
    seen, handler = scripted(httpx.Response(200, json=CAPABILITIES))
    client = make_client(handler)

    first, second = client.capabilities(), client.capabilities()

    assert first is second
    assert len(seen) == 1
