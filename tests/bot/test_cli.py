"""`vdr bot` as an operator starts it: a separate process configured by its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.fake_slack import FakeSlack
from tests.fixtures.services import free_port
from tests.fixtures.slack import CHANNEL, VIEWER

VDR = str(Path(sys.executable).with_name("vdr"))


def bot_env(slack: FakeSlack, redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(SLACK_BOT_TOKEN=slack.bot_token, SLACK_SIGNING_SECRET=slack.signing_secret,
               SLACK_API_URL=slack.api_url, REDIS_URL=redis_url,
               DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
               VDR_API_URL=f"http://127.0.0.1:{free_port()}")
    return env


@pytest.fixture
def running_bot(fake_slack: FakeSlack, redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([VDR, "bot", "--host", "127.0.0.1", "--port", str(port)],
                               env=bot_env(fake_slack, redis_url, tmp_path), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process)
        fake_slack.request_url = f"{base}/slack/events"
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def wait_until_healthy(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vdr bot exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).text == "ok":
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("vdr bot did not become healthy within 30 s")


def test_vdr_bot_serves_signed_commands_over_http(fake_slack: FakeSlack,
                                                  running_bot: str) -> None:
    delivery = fake_slack.command("help", user=VIEWER, channel=CHANNEL)
    assert delivery.status == 200 and "/vdr search" in delivery.response_text
    fake_slack.command("jobs", user=VIEWER, channel=CHANNEL)
    fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                 if "No jobs" in m.text], what="answer to /vdr jobs")
    unsigned = httpx.post(f"{running_bot}/slack/events", content=b"command=/vdr&text=help",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401


def test_vdr_bot_says_which_credential_is_missing(fake_slack: FakeSlack, redis_url: str,
                                                  tmp_path: Path) -> None:
    env = bot_env(fake_slack, redis_url, tmp_path)
    del env["SLACK_SIGNING_SECRET"]
    done = subprocess.run([VDR, "bot"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in done.stderr


def test_vdr_bot_starts_without_warnings_and_refuses_bad_timestamps_quietly(
        fake_slack: FakeSlack, redis_url: str, tmp_path: Path) -> None:
    env = bot_env(fake_slack, redis_url, tmp_path)
    env["VDR_LOG_LEVEL"] = "DEBUG"  # whatever the operator turns up, no body may show
    port = free_port()
    process = subprocess.Popen([VDR, "bot", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    body = "command=/vdr&text=secret-words&response_url=https%3A%2F%2Fhooks.example%2Fleak"
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        answers = [httpx.post(f"http://127.0.0.1:{port}/slack/events", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + "0" * 64,
        }).status_code for timestamp in ("abc", "-1", str(int(time.time())))]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)

    assert answers == [401, 401, 401]
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    assert len(warnings) == 3 and all("refused a request" in line for line in warnings), output
    assert "As you gave" not in output
    assert "Traceback" not in output and "invalid literal" not in output
    assert "secret-words" not in output and "hooks.example" not in output
