"""Search, show and the export form over a real proxy serving 500 synthetic rooms."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis

from bot import blockkit, views
from bot.fake_slack import FakeSlack, Message
from jobs import api as jobs_api
from proxy import SyntheticBackend
from tests.fixtures.slack import CHANNEL, OPERATOR, VIEWER, grant_roles, serve_bot
from vdr_client import VdrClient


@pytest.fixture(scope="module")
def backend() -> SyntheticBackend:
    return SyntheticBackend(seed=11, rooms=500)


@pytest.fixture
def vdr(make_proxy: Callable[..., Any], backend: SyntheticBackend) -> Iterator[VdrClient]:
    server = make_proxy(backend)
    with VdrClient(server.url) as client:
        yield client


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def bot(fake_slack: FakeSlack, redis: Redis, sqlite_engine: Any, vdr: VdrClient,
        tmp_path: Any) -> Iterator[Any]:
    grant_roles(sqlite_engine, redis, export_root=str(tmp_path / "exports"))
    with serve_bot(fake_slack, redis=redis, engine=sqlite_engine, vdr=vdr) as deps:
        yield deps


def room_ids(message: Message | dict[str, Any]) -> list[str]:
    """Room ids of a result page, read from each row's overflow menu."""
    blocks = message.blocks if isinstance(message, Message) else message["blocks"]
    return [b["accessory"]["options"][0]["value"].split(":", 1)[1] for b in blocks
            if b.get("accessory", {}).get("action_id") == views.ROOM_MENU]


def search_message(slack: FakeSlack, user: str) -> Message:
    return slack.wait_for(lambda: next(iter(
        m for m in slack.messages(CHANNEL, user=user) if m.ephemeral_to == user and room_ids(m)
    ), None), what="search results")


def paging(message: Message) -> dict[str, str]:
    """action_id -> value of the page's Previous/Next buttons."""
    found = {}
    for block in message.blocks:
        for element in block.get("elements") or []:
            if element.get("action_id", "").startswith(views.SEARCH_PAGE):
                found[element["action_id"]] = element["value"]
    return found


def turn_page(slack: FakeSlack, message: Message, action_id: str, user: str) -> Message:
    edits = len(message.edits)
    delivery = slack.click(message.channel, message.ts, action_id, user=user)
    assert delivery.status == 200 and not delivery.late
    return slack.wait_for(lambda: (m := slack.message(message.channel, message.ts))
                          and len(m.edits) > edits and m, what="next page")


def all_versions_within_limits(message: Message) -> bool:
    versions = [*message.edits, {"text": message.text, "blocks": message.blocks}]
    return all(not blockkit.message_problems(v["text"], v["blocks"]) for v in versions)


def test_search_pages_through_500_rooms_within_block_kit_limits(
        fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    expected = [room.id for room in vdr.search_rooms(sort="name")]
    assert len(expected) == 500

    fake_slack.command("search", user=VIEWER, channel=CHANNEL)
    message = search_message(fake_slack, VIEWER)
    seen = room_ids(message)
    while f"{views.SEARCH_PAGE}:next" in paging(message):
        message = turn_page(fake_slack, message, f"{views.SEARCH_PAGE}:next", VIEWER)
        seen += room_ids(message)

    assert seen == expected
    assert len(message.edits) == 49
    assert "rooms 491–500" in message.blocks[0]["text"]["text"]
    assert all_versions_within_limits(message)
    assert fake_slack.failed_calls() == []

    back = turn_page(fake_slack, message, f"{views.SEARCH_PAGE}:prev", VIEWER)
    assert room_ids(back) == expected[480:490]


def test_filters_and_order_reach_the_proxy(fake_slack: FakeSlack, bot: Any,
                                           vdr: VdrClient) -> None:
    fake_slack.command("search status:archived inactive:1y sort:size", user=VIEWER,
                       channel=CHANNEL)
    message = search_message(fake_slack, VIEWER)
    expected = [r.id for r in vdr.search_rooms(status="archived", inactive_days=365,
                                               sort="-size")]
    assert expected and room_ids(message) == expected[: views.SEARCH_PAGE_SIZE]
    rooms = [vdr.get_room(room_id) for room_id in room_ids(message)]
    sizes = [room.size.total_bytes for room in rooms]
    assert sizes == sorted(sizes, reverse=True)
    assert {room.status for room in rooms} == {"archived"}


def test_a_search_with_no_match_says_so(fake_slack: FakeSlack, bot: Any) -> None:
    fake_slack.command("search zzzz-no-such-room", user=VIEWER, channel=CHANNEL)
    answer = fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                          if "No rooms match" in m.text], what="answer")
    assert answer


def test_show_from_the_results_menu(fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    fake_slack.command("search", user=VIEWER, channel=CHANNEL)
    message = search_message(fake_slack, VIEWER)
    room_id = room_ids(message)[2]
    fake_slack.click(message.channel, message.ts, views.ROOM_MENU, user=VIEWER,
                     value=f"show:{room_id}")
    name = vdr.get_room(room_id).name
    details = fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                           if m.blocks and m.blocks[0]["type"] == "header"],
                                  what="room details")
    assert details[0].blocks[0]["text"]["text"] == name


def test_show_by_name_and_an_ambiguous_name(fake_slack: FakeSlack, bot: Any,
                                            vdr: VdrClient) -> None:
    room = next(vdr.search_rooms(sort="name"))
    fake_slack.command(f'show "{room.name}"', user=VIEWER, channel=CHANNEL)
    fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                 if m.blocks and m.blocks[0].get("type") == "header"],
                        what="room details")
    fake_slack.command("show Project", user=VIEWER, channel=CHANNEL)
    ambiguous = fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                             if "rooms match" in m.text], what="candidates")
    assert len(room_ids(ambiguous[0])) == views.LIST_MAX


def test_viewer_cannot_open_the_export_form(fake_slack: FakeSlack, bot: Any,
                                            vdr: VdrClient) -> None:
    room = next(vdr.search_rooms(sort="name"))
    fake_slack.command(f"export {room.id}", user=VIEWER, channel=CHANNEL)
    modal = fake_slack.wait_for(
        lambda: (v := fake_slack.open_modal(VIEWER)) and "operator" in str(v.body) and v,
        what="refusal in the modal")
    assert modal.body.get("submit") is None


def open_export_form(slack: FakeSlack, vdr: VdrClient) -> tuple[Any, Any]:
    room = next(vdr.search_rooms(sort="name"))
    delivery = slack.command(f"export {room.id}", user=OPERATOR, channel=CHANNEL)
    assert not delivery.late
    modal = slack.wait_for(lambda: (v := slack.open_modal(OPERATOR))
                           and v.body.get("callback_id") == views.EXPORT_MODAL and v,
                           what="export form")
    return room, modal


def test_export_form_checks_its_fields(fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    _, modal = open_export_form(fake_slack, vdr)
    unconfirmed = fake_slack.submit(modal.id, user=OPERATOR)
    assert unconfirmed.json() == {"response_action": "errors",
                                  "errors": {views.CONFIRM: "Tick the box to confirm the export."}}
    nowhere = fake_slack.submit(modal.id, user=OPERATOR,
                                values={views.DESTINATIONS: [], views.CONFIRM: ["yes"]})
    assert views.DESTINATIONS in nowhere.json()["errors"]
    assert jobs_api.list_jobs(engine=bot.engine) == []


def test_export_submission_queues_one_job_and_posts_its_message(
        fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    room, modal = open_export_form(fake_slack, vdr)
    submitted = fake_slack.submit(modal.id, user=OPERATOR, values={views.CONFIRM: ["yes"]})
    assert submitted.status == 200 and not submitted.late

    again = fake_slack.redeliver(submitted, retry_num=1)
    assert again.status == 200

    job_message = fake_slack.wait_for(lambda: [
        m for m in fake_slack.messages(CHANNEL) if m.ephemeral_to is None and m.edits
        and "job `" in str(m.blocks)], what="job message")
    jobs = jobs_api.list_jobs(engine=bot.engine)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.room_id, job.requested_by) == (room.id, OPERATOR)
    assert job.origin == {"channel": CHANNEL, "ts": job_message[0].ts}
    assert job.idempotency_key == f"slack:{modal.id}:{modal.hash}"
    assert len([m for m in fake_slack.messages(CHANNEL) if m.ephemeral_to is None]) == 1


def test_a_copy_that_slips_past_the_dedupe_still_queues_one_job(
        fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    _, modal = open_export_form(fake_slack, vdr)
    submitted = fake_slack.submit(modal.id, user=OPERATOR, values={views.CONFIRM: ["yes"]})
    fake_slack.wait_for(lambda: jobs_api.list_jobs(engine=bot.engine), what="job")
    for key in bot.redis.keys("vdr:bot:seen:*"):  # as if Redis had lost every claim
        bot.redis.delete(key)

    copy = fake_slack.redeliver(submitted)
    assert copy.status == 200

    def settled_messages() -> list[Message]:
        public = [m for m in fake_slack.messages(CHANNEL, include_deleted=True)
                  if m.ephemeral_to is None]
        return public if len(public) == 2 and any(m.deleted for m in public) else []

    fake_slack.wait_for(settled_messages, what="the copy's message deleted")
    assert len(jobs_api.list_jobs(engine=bot.engine)) == 1


def queued_job(slack: FakeSlack, deps: Any, vdr: VdrClient) -> Any:
    _, modal = open_export_form(slack, vdr)
    slack.submit(modal.id, user=OPERATOR, values={views.CONFIRM: ["yes"]})
    jobs = slack.wait_for(lambda: jobs_api.list_jobs(engine=deps.engine), what="job")
    ts = jobs[0].origin["ts"]
    slack.wait_for(lambda: "Cancel job" in str(slack.message(CHANNEL, ts).blocks),  # type: ignore[union-attr]
                   what="job message with its Cancel button")
    return jobs[0]


def test_cancel_from_the_job_message_then_read_its_report(fake_slack: FakeSlack, bot: Any,
                                                          vdr: VdrClient) -> None:
    job = queued_job(fake_slack, bot, vdr)
    ts = job.origin["ts"]

    fake_slack.click(CHANNEL, ts, views.JOB_CANCEL, user=VIEWER)
    refused = ephemeral_answers(fake_slack, VIEWER, "operator")
    assert refused and jobs_api.get_job(job.id, engine=bot.engine).state == "queued"

    fake_slack.click(CHANNEL, ts, views.JOB_CANCEL, user=OPERATOR)
    ephemeral_answers(fake_slack, OPERATOR, "is cancelled")
    assert jobs_api.get_job(job.id, engine=bot.engine).state == "cancelled"
    fake_slack.wait_for(lambda: "Cancel job" not in str(fake_slack.message(CHANNEL, ts).blocks),  # type: ignore[union-attr]
                        what="job message without its Cancel button")

    fake_slack.command("reports", user=VIEWER, channel=CHANNEL)
    listing = fake_slack.wait_for(lambda: [m for m in fake_slack.messages(user=VIEWER)
                                           if "report(s)" in m.text], what="report list")[0]
    fake_slack.click(CHANNEL, listing.ts, views.REPORT_SHOW, user=VIEWER)
    shown = ephemeral_answers(fake_slack, VIEWER, "cancelled")
    assert "Export report" in str(shown[-1].blocks)
    fake_slack.command(f"report {job.id}", user=VIEWER, channel=CHANNEL)
    fake_slack.wait_for(lambda: len(ephemeral_answers(fake_slack, VIEWER, "cancelled")) == 2,
                        what="the report by job id")


def ephemeral_answers(slack: FakeSlack, user: str, needle: str) -> list[Message]:
    return slack.wait_for(lambda: [m for m in slack.messages(user=user)
                                   if m.ephemeral_to == user and needle in m.text],
                          what=f"an answer about {needle!r}")


def test_app_home_lists_stale_rooms_with_cost_and_exports_from_there(
        fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    job = queued_job(fake_slack, bot, vdr)
    fake_slack.open_home(OPERATOR)
    home = fake_slack.wait_for(lambda: fake_slack.home(OPERATOR), what="App Home")
    text = str(home.body["blocks"])
    assert job.id in text and "/month" in text
    stalest = next(vdr.search_rooms(sort="last_activity"))
    assert room_ids(home.body)[0] == stalest.id
    assert blockkit.view_problems(home.body) == []

    fake_slack.click_view(home.id, views.ROOM_MENU, user=OPERATOR, value=f"export:{stalest.id}")
    modal = fake_slack.wait_for(lambda: (v := fake_slack.open_modal(OPERATOR))
                                and v.body.get("callback_id") == views.EXPORT_MODAL and v,
                                what="export form from App Home")
    assert views.metadata(modal.body)["room_id"] == stalest.id


def test_a_submission_by_someone_without_the_role_queues_nothing(
        fake_slack: FakeSlack, bot: Any, vdr: VdrClient) -> None:
    _, modal = open_export_form(fake_slack, vdr)
    delivery = fake_slack.submit(modal.id, user=VIEWER, values={views.CONFIRM: ["yes"]})
    assert delivery.status == 200
    fake_slack.wait_for(lambda: [m for m in fake_slack.messages()
                                 if m.channel.startswith("D") and "operator" in m.text],
                        what="refusal by direct message")
    assert jobs_api.list_jobs(engine=bot.engine) == []
    assert [m for m in fake_slack.messages(CHANNEL) if m.ephemeral_to is None] == []
