"""The fake Slack Web API, driven by a real slack_sdk WebClient over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.fake_slack import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_channel("C1", "deals")
        fake.add_user("U1", "ana")
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return slack.web_client()


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_post_update_and_thread_are_kept_with_edit_history(slack: FakeSlack,
                                                          client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="v1", blocks=[_section("v1")])["ts"]
    client.chat_update(channel="C1", ts=ts, text="v2", blocks=[_section("v2")])
    client.chat_postMessage(channel="C1", thread_ts=ts, text="reply")

    parent = slack.message("C1", ts)
    assert parent is not None and parent.text == "v2"
    assert [edit["text"] for edit in parent.edits] == ["v1"]
    assert [m.text for m in slack.thread("C1", ts)] == ["reply"]
    assert [c.method for c in slack.calls()] == ["chat.postMessage", "chat.update",
                                                 "chat.postMessage"]


def test_oversized_blocks_fail_like_slack(slack: FakeSlack, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x", blocks=[_section("y" * 3001)])
    assert caught.value.response["error"] == "invalid_blocks"
    assert "json-pointer:/blocks/0/text/text" in caught.value.response["response_metadata"][
        "messages"][0]
    assert slack.messages("C1") == []
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        client.chat_postMessage(channel="C1", text="x", blocks=[_section("s")] * 51)


def test_wrong_token_is_refused(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-wrong", base_url=slack.api_url).auth_test()


def test_unknown_channel_and_private_channel_without_the_bot(slack: FakeSlack,
                                                             client: WebClient) -> None:
    slack.add_channel("G1", "secret", is_private=True, bot_member=False)
    for channel in ("C404", "G1"):
        with pytest.raises(SlackApiError, match="channel_not_found"):
            client.chat_postMessage(channel=channel, text="x")


def test_posting_to_a_user_id_opens_the_direct_message(slack: FakeSlack,
                                                       client: WebClient) -> None:
    answer = client.chat_postMessage(channel="U1", text="hello")
    assert answer["channel"].startswith("D")
    assert slack.messages(answer["channel"])[0].text == "hello"


def test_429_with_retry_after_is_honoured_by_the_retry_handler(slack: FakeSlack) -> None:
    client = slack.web_client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    ts = client.chat_postMessage(channel="C1", text="v1")["ts"]
    slack.throttle("chat.update", times=2, retry_after_s=1)

    started = time.monotonic()
    client.chat_update(channel="C1", ts=ts, text="v2")

    assert time.monotonic() - started >= 2.0
    assert [c.status for c in slack.calls("chat.update")] == [429, 429, 200]
    assert slack.message("C1", ts).text == "v2"  # type: ignore[union-attr]


def test_429_without_a_retry_handler_surfaces(slack: FakeSlack, client: WebClient) -> None:
    slack.throttle("chat.postMessage", retry_after_s=7)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="x")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"


def test_injected_errors_and_delays(slack: FakeSlack, client: WebClient) -> None:
    slack.fail("chat.postMessage", "fatal_error")
    with pytest.raises(SlackApiError, match="fatal_error"):
        client.chat_postMessage(channel="C1", text="x")
    client.chat_postMessage(channel="C1", text="second works")
    slack.slow("auth.test", 0.3)
    started = time.monotonic()
    client.auth_test()
    assert time.monotonic() - started >= 0.3


def test_v2_upload_lands_in_the_thread(slack: FakeSlack, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="job")["ts"]
    content = b'{"path": "a.pdf"}\n' * 100
    answer = client.files_upload_v2(channel="C1", thread_ts=ts, content=content,
                                    filename="manifest.jsonl", title="Manifest")
    stored = slack.file(answer["file"]["id"])
    assert stored is not None and stored.content == content and stored.completed
    assert [c.method for c in slack.calls()][-3:] == [
        "files.getUploadURLExternal", "(upload)", "files.completeUploadExternal"]
    assert slack.thread("C1", ts)[0].files == [stored.id]


def test_upload_of_another_length_than_announced_is_refused(slack: FakeSlack,
                                                            client: WebClient) -> None:
    answer = client.files_getUploadURLExternal(filename="m.jsonl", length=10)
    response = httpx.post(answer["upload_url"], content=b"short")
    assert response.status_code == 400


def test_views_need_a_live_trigger_and_check_hashes(slack: FakeSlack, client: WebClient) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "T"},
             "blocks": [_section("one")]}
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        client.views_open(trigger_id="made-up", view=modal)
    trigger = slack.slack._trigger("U1")
    view = client.views_open(trigger_id=trigger, view=modal)["view"]
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        client.views_open(trigger_id=trigger, view=modal)  # a trigger works once
    updated = client.views_update(view_id=view["id"], hash=view["hash"],
                                  view=dict(modal, blocks=[_section("two")]))["view"]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=view["id"], hash=view["hash"], view=modal)
    assert updated["hash"] != view["hash"]
    assert slack.open_modal("U1").body["blocks"][0]["text"]["text"] == "two"  # type: ignore[union-attr]


def test_expired_trigger_is_refused() -> None:
    with FakeSlack(trigger_ttl_s=0.05) as slack:
        slack.add_user("U1", "ana")
        trigger = slack.slack._trigger("U1")
        time.sleep(0.1)
        modal = {"type": "modal", "title": {"type": "plain_text", "text": "T"},
                 "blocks": [_section("one")]}
        with pytest.raises(SlackApiError, match="expired_trigger_id"):
            slack.web_client().views_open(trigger_id=trigger, view=modal)


def test_home_publish_and_oversized_view(slack: FakeSlack, client: WebClient) -> None:
    home = {"type": "home", "blocks": [_section("hello")]}
    client.views_publish(user_id="U1", view=home)
    assert slack.home("U1").body["blocks"] == home["blocks"]  # type: ignore[union-attr]
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_publish(user_id="U1", view={"type": "home", "blocks": [_section("s")] * 101})


def test_users_and_usergroups(slack: FakeSlack, client: WebClient) -> None:
    slack.add_user("U2", "boss", is_admin=True)
    slack.add_usergroup("S1", ["U1", "U2"])
    assert client.users_info(user="U2")["user"]["is_admin"] is True
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S404")
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U404")


def test_response_url_replaces_the_original_and_allows_five_uses(slack: FakeSlack) -> None:
    url = slack.slack._response_url("C1", "U1", None)
    for n in range(5):
        assert httpx.post(url, json={"text": f"answer {n}"}).status_code == 200
    assert httpx.post(url, json={"text": "sixth"}).text == "used_url"
    ephemeral = slack.messages("C1", user="U1")
    assert [m.text for m in ephemeral] == [f"answer {n}" for n in range(5)]
    assert all(m.ephemeral_to == "U1" for m in ephemeral)

    source = ephemeral[0]
    url = slack.slack._response_url("C1", "U1", ("C1", source.ts))
    httpx.post(url, json={"text": "replaced", "replace_original": True})
    assert slack.message("C1", source.ts).text == "replaced"  # type: ignore[union-attr]
    bad = httpx.post(url, json={"text": "x", "blocks": [_section("y" * 3001)]})
    assert bad.status_code == 400 and bad.text == "invalid_blocks"
