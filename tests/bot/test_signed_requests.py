"""The app served over HTTP, driven by requests signed as Slack signs them.

The fake Slack plays both sides: it signs and posts slash commands, clicks, submissions and
events to the app on 127.0.0.1, and answers the app's Web API calls through a real WebClient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import pytest
from redis import Redis

from bot.fake_slack import FakeSlack
from jobs.runtime_settings import load_runtime_settings
from tests.fixtures.services import free_port
from tests.fixtures.slack import ADMIN, CHANNEL, OPERATOR, OUTSIDER, VIEWER, grant_roles, serve_bot
from vdr_client import VdrClient


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def offline_vdr() -> Iterator[VdrClient]:
    """A client of a proxy that is not running (nothing listens on the port)."""
    from vdr_client import RetryPolicy

    client = VdrClient(f"http://127.0.0.1:{free_port()}",
                       retry=RetryPolicy(attempts=1, deadline_s=2.0))
    yield client
    client.close()


@pytest.fixture
def bot(fake_slack: FakeSlack, redis: Redis, sqlite_engine: Any,
        offline_vdr: VdrClient) -> Iterator[Any]:
    grant_roles(sqlite_engine, redis)
    with serve_bot(fake_slack, redis=redis, engine=sqlite_engine, vdr=offline_vdr) as deps:
        yield deps


def ephemeral_to(slack: FakeSlack, user: str, count: int = 1) -> list[Any]:
    """Wait for `count` ephemeral messages to `user`; the app answers after its ack."""
    def shown() -> list[Any]:
        found = [m for m in slack.messages(user=user) if m.ephemeral_to == user]
        return found if len(found) >= count else []
    return slack.wait_for(shown, what=f"{count} ephemeral message(s) to {user}")


def settled(seconds: float = 0.3) -> None:
    """Give the app's listener threads time to do anything they (wrongly) might."""
    time.sleep(seconds)


def test_help_is_the_acknowledgement_itself(fake_slack: FakeSlack, bot: Any) -> None:
    delivery = fake_slack.command("help", user=VIEWER, channel=CHANNEL)
    assert delivery.status == 200 and not delivery.late
    assert "/vdr search" in str(delivery.json()["blocks"])
    assert "/vdr search" in str(ephemeral_to(fake_slack, VIEWER)[0].blocks)


def test_unknown_input_gets_help_that_names_it(fake_slack: FakeSlack, bot: Any) -> None:
    delivery = fake_slack.command("archive everything", user=VIEWER, channel=CHANNEL)
    assert "I don't know `archive`" in delivery.json()["text"]


def _command_body(slack: FakeSlack, text: str, user: str) -> str:
    trigger = slack.slack._trigger(user)
    return urlencode({"command": "/vdr", "text": text, "user_id": user, "user_name": "x",
                      "channel_id": CHANNEL, "team_id": slack.store.team_id,
                      "trigger_id": trigger, "api_app_id": "A0FAKEAPP",
                      "response_url": slack.slack._response_url(CHANNEL, user, None)})


@pytest.mark.parametrize("tamper", ["forged", "old", "missing", "malformed", "future"])
def test_bad_signature_gets_401_does_nothing_and_logs_no_body(
        fake_slack: FakeSlack, bot: Any, tamper: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = _command_body(fake_slack, "settings", ADMIN)
    if tamper == "forged":
        headers = fake_slack.slack.sign(body)
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    elif tamper == "old":
        headers = fake_slack.slack.sign(body, timestamp=int(time.time()) - 6 * 60)
    elif tamper == "future":
        headers = fake_slack.slack.sign(body, timestamp=int(time.time()) + 6 * 60)
    elif tamper == "malformed":
        headers = fake_slack.slack.sign(body)
        headers["X-Slack-Request-Timestamp"] = "abc"
    else:
        headers = {}
    calls_before = len(fake_slack.calls())

    delivery = fake_slack.send_raw(body, "application/x-www-form-urlencoded", headers)

    assert delivery.status == 401
    settled()
    assert fake_slack.calls()[calls_before:] == []
    assert fake_slack.open_modal(ADMIN) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused a request" in logged
    assert "response_url" not in logged and "trigger_id" not in logged
    assert parse_qs(body)["response_url"][0] not in unquote(logged)


def test_correctly_signed_copy_of_the_same_body_is_served(fake_slack: FakeSlack,
                                                          bot: Any) -> None:
    body = _command_body(fake_slack, "settings", ADMIN)
    delivery = fake_slack.send_raw(body, "application/x-www-form-urlencoded",
                                   fake_slack.slack.sign(body))
    assert delivery.status == 200
    fake_slack.wait_for(lambda: fake_slack.open_modal(ADMIN), what="settings modal")


def test_a_retried_delivery_runs_once(fake_slack: FakeSlack, bot: Any) -> None:
    first = fake_slack.command("jobs", user=VIEWER, channel=CHANNEL)
    again = fake_slack.redeliver(first, retry_num=1)
    assert first.status == again.status == 200
    ephemeral_to(fake_slack, VIEWER)
    settled()
    assert len(fake_slack.calls("(response_url)")) == 1
    assert "No jobs are queued or running" in ephemeral_to(fake_slack, VIEWER)[0].text


def test_settings_are_for_admins_only(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.command("settings", user=OPERATOR, channel=CHANNEL)
    answer = ephemeral_to(fake_slack, OPERATOR)[0]
    assert "needs the *admin* role" in answer.text
    assert fake_slack.open_modal(OPERATOR) is None


def test_admin_edits_runtime_settings_in_a_modal(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.command("settings", user=ADMIN, channel=CHANNEL)
    modal = fake_slack.wait_for(lambda: fake_slack.open_modal(ADMIN), what="settings modal")

    refused = fake_slack.submit(modal.id, user=ADMIN, values={"concurrency": "lots"})
    assert refused.json()["response_action"] == "errors"
    assert "concurrency" in refused.json()["errors"]
    assert fake_slack.open_modal(ADMIN) is not None

    saved = fake_slack.submit(modal.id, user=ADMIN, values={
        "concurrency": "8", "s3_bucket": "legal-archive", "price_per_gb_month": "0.5",
        "operators": f"{OPERATOR}, S0LEGAL",
    })
    assert saved.status == 200 and saved.json() is None
    assert fake_slack.open_modal(ADMIN) is None
    dm = fake_slack.wait_for(lambda: [m for m in fake_slack.messages() if
                                      m.channel.startswith("D") and "Settings saved" in m.text],
                             what="confirmation DM")
    assert "`s3_bucket`" in dm[0].text
    runtime = load_runtime_settings(bot.engine, bot.redis)
    assert (runtime.concurrency, runtime.s3_bucket, runtime.price_per_gb_month) == (
        8, "legal-archive", 0.5)
    assert runtime.operators == [OPERATOR, "S0LEGAL"]


def test_roles_come_from_user_groups_and_are_cached(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.add_usergroup("S0LEGAL", [OUTSIDER])
    grant_roles(bot.engine, bot.redis, operators=["S0LEGAL"], viewers=[])
    for n in (1, 2):
        fake_slack.command("cancel job-that-is-not-there", user=OUTSIDER, channel=CHANNEL)
        answers = ephemeral_to(fake_slack, OUTSIDER, n)
        assert "role" not in answers[-1].text
    assert len(fake_slack.calls("usergroups.users.list")) == 1


def test_outsider_is_refused_when_viewers_are_listed(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.command("jobs", user=OUTSIDER, channel=CHANNEL)
    assert "needs the *viewer* role" in ephemeral_to(fake_slack, OUTSIDER)[0].text


def test_workspace_admins_are_admins_until_admins_are_named(fake_slack: FakeSlack,
                                                             bot: Any) -> None:
    fake_slack.add_user("U0BOSS001", "boss", is_owner=True)
    grant_roles(bot.engine, bot.redis, admins=[], viewers=[])
    fake_slack.command("settings", user="U0BOSS001", channel=CHANNEL)
    fake_slack.wait_for(lambda: fake_slack.open_modal("U0BOSS001"), what="settings modal")
    fake_slack.command("settings", user=OUTSIDER, channel=CHANNEL)
    assert "admin" in ephemeral_to(fake_slack, OUTSIDER)[0].text


def test_an_unreachable_proxy_is_explained(fake_slack: FakeSlack, bot: Any) -> None:
    delivery = fake_slack.command("search falcon", user=VIEWER, channel=CHANNEL)
    assert not delivery.late
    assert "cannot be reached" in ephemeral_to(fake_slack, VIEWER)[0].text


def test_throttled_views_open_is_waited_out(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.throttle("views.open", times=1, retry_after_s=1)
    fake_slack.command("settings", user=ADMIN, channel=CHANNEL)
    fake_slack.wait_for(lambda: fake_slack.open_modal(ADMIN), what="settings modal")
    assert [c.status for c in fake_slack.calls("views.open")] == [429, 200]


def test_app_home_shows_jobs_reports_and_the_rooms_problem(fake_slack: FakeSlack,
                                                           bot: Any) -> None:
    fake_slack.open_home(VIEWER)
    home = fake_slack.wait_for(lambda: fake_slack.home(VIEWER), what="App Home")
    text = str(home.body["blocks"])
    for heading in ("Running jobs", "Recent reports", "Rooms inactive the longest"):
        assert heading in text
    assert "Rooms could not be listed" in text


def test_a_repeated_home_event_is_handled_once(fake_slack: FakeSlack, bot: Any) -> None:
    first = fake_slack.open_home(VIEWER)
    fake_slack.redeliver(first, retry_num=1)
    fake_slack.redeliver(first, retry_num=2)
    fake_slack.wait_for(lambda: fake_slack.home(VIEWER), what="App Home")
    settled()
    assert len(fake_slack.calls("views.publish")) == 1
