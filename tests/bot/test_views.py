"""Block Kit builders: hostile and oversized inputs still give payloads Slack accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from bot import blockkit, views
from bot.grammar import VERBS, Search
from jobs.runtime_settings import RuntimeSettings
from jobs.store import JobRecord, Report
from vdr_client import Room

NOW = datetime.now(UTC)
HOSTILE = "<!channel> *bold* <https://evil.example|click> & " + "x" * 5000


def room(i: int = 0, *, name: str | None = None, total: int = 5 * 1024**3) -> Room:
    return Room.model_validate({
        "id": f"r{i}", "name": name or f"Room {i}", "status": "active",
        "owner": {"id": "o1", "name": "Dana Owner", "email": "dana@example.test"},
        "created_at": NOW - timedelta(days=900), "last_activity_at": NOW - timedelta(days=400),
        "size": {"active_bytes": total, "deleted_bytes": 0, "total_bytes": total},
        "file_count": 1234, "folder_count": 56, "root_folder_id": f"f{i}", "etag": "e1",
    })


def job(i: int = 0, *, name: str = "Room", state: str = "running") -> JobRecord:
    return JobRecord(id=f"job{i}", kind="export", room_id=f"r{i}", room_name=name,
                     requested_by="U1", state=state,  # type: ignore[arg-type]
                     destinations=["/exports/room", "s3://bucket/prefix/room"],
                     origin={"channel": "C1", "ts": "1.2"}, created_at=NOW)


def report(i: int = 0, *, failures: int = 0, name: str = "Room") -> Report:
    return Report(
        id=f"rep{i}", job_id=f"job{i}", kind="export", room_id=f"r{i}", room_name=name,
        requested_by="U1", state="failed" if failures else "succeeded",
        destinations=["/exports/" + "d" * 600, "s3://b/" + "p" * 600], files_total=10_000,
        files_done=10_000 - failures, files_failed=failures, bytes_total=10**12,
        bytes_done=10**12, retries=42, duration_s=3725.0,
        failures=[{"path": "/deep/" * 100 + f"file{n}.pdf", "reason": "timeout " * 80}
                  for n in range(failures)],
        manifest_locations=["/exports/room/manifest.jsonl", "s3://b/room/manifest.jsonl"],
        error=HOSTILE if failures else None, created_at=NOW, finished_at=NOW,
    )


def progress(**kw: Any) -> Any:
    values = {"files_done": 120, "files_total": 4210, "bytes_done": 1024**3,
              "bytes_total": 9 * 1024**3, "rate_bps": 40 * 1024**2, "eta_s": 200.0}
    values.update(kw)
    return SimpleNamespace(**values)


def assert_message_ok(payload: dict[str, Any]) -> None:
    assert blockkit.message_problems(payload["text"], payload["blocks"]) == []
    assert payload["text"]


@pytest.mark.parametrize("topic", [None, *VERBS])
def test_help_for_every_topic_fits(topic: str | None) -> None:
    assert_message_ok(views.help_message(topic, problem=HOSTILE))


def test_search_page_of_hostile_rooms_fits_and_escapes() -> None:
    rooms = [room(i, name=HOSTILE) for i in range(25)]
    payload = views.search_results(Search(text=HOSTILE), rooms, page=3, first=31, session="s",
                                   has_next=True, price=0.25)
    assert_message_ok(payload)
    rows = [b for b in payload["blocks"] if b.get("accessory", {}).get("type") == "overflow"]
    assert len(rows) == views.SEARCH_PAGE_SIZE
    text = rows[0]["text"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    buttons = payload["blocks"][-1]["elements"]
    assert [b["value"] for b in buttons] == ["s:2", "s:4"]


def test_first_and_last_pages_have_one_paging_button() -> None:
    first = views.search_results(Search(), [room(1)], page=0, first=1, session="s",
                                 has_next=True)
    assert [b["value"] for b in first["blocks"][-1]["elements"]] == ["s:1"]
    last = views.search_results(Search(), [room(1)], page=2, first=21, session="s",
                                has_next=False)
    assert [b["value"] for b in last["blocks"][-1]["elements"]] == ["s:1"]
    assert "rooms 21–21" in last["blocks"][0]["text"]["text"]


def test_empty_search_says_so() -> None:
    payload = views.search_results(Search(text="zz"), [], page=0, first=1, session="s",
                                   has_next=False)
    assert "No rooms match" in payload["text"]


def test_room_with_an_overlong_id_gets_no_menu() -> None:
    long_id = room(1).model_copy(update={"id": "i" * 200})
    assert views.room_menu(long_id) is None
    assert_message_ok(views.message("x", views.room_rows([long_id])))


def test_room_details_and_cost() -> None:
    payload = views.room_details(room(1, name=HOSTILE, total=10 * 1024**3), 0.5)
    assert_message_ok(payload)
    assert "5.00 per month" in str(payload["blocks"])


def test_report_with_ten_thousand_failures_fits() -> None:
    payload = views.report_message(report(failures=10_000, name=HOSTILE))
    assert_message_ok(payload)
    body = str(payload["blocks"])
    assert "10,000 file(s) failed" in body and "9,985 more" in body
    assert "manifest.jsonl" in body


def test_lists_of_many_jobs_and_reports_are_cut() -> None:
    jobs = [job(i, name=HOSTILE) for i in range(200)]
    assert_message_ok(views.jobs_message(jobs, {j.id: progress() for j in jobs}))
    assert_message_ok(views.reports_message([report(i, name=HOSTILE) for i in range(200)],
                                            HOSTILE))


def test_job_message_while_running_and_when_done() -> None:
    running = views.job_message(job(1), progress())
    assert_message_ok(running)
    line = running["blocks"][1]["text"]["text"]
    assert line.startswith("*Running*") and "120/4,210 files" in line and "ETA" in line
    assert running["blocks"][-1]["elements"][0]["action_id"] == views.JOB_CANCEL
    done = views.job_message(job(1, state="succeeded"), progress(files_done=4210))
    assert all(b["type"] != "actions" for b in done["blocks"])


def test_home_with_everything_at_once_fits() -> None:
    jobs = [job(i, name=HOSTILE) for i in range(100)]
    view = views.home_view(jobs, {}, [report(i) for i in range(100)],
                           [room(i, name=HOSTILE) for i in range(100)], 0.25,
                           rooms_error=HOSTILE)
    assert blockkit.view_problems(view) == []


def test_export_modal_offers_s3_only_when_a_bucket_is_set() -> None:
    plain = RuntimeSettings(export_root="/exports")
    modal = views.export_modal(room(1, name=HOSTILE), plain, {"room_id": "r1"})
    assert blockkit.view_problems(modal) == []
    assert [b.get("block_id") for b in modal["blocks"]][1:] == [views.DESTINATIONS,
                                                                views.CONFIRM]
    with_s3 = RuntimeSettings(export_root="/exports", s3_bucket="legal", s3_prefix="vdr/")
    modal = views.export_modal(room(1, name="Project Falcon"), with_s3, {"room_id": "r1"})
    assert blockkit.view_problems(modal) == []
    prefix = next(b for b in modal["blocks"] if b.get("block_id") == views.S3_PREFIX)
    assert prefix["element"]["initial_value"] == "vdr/Project-Falcon"


def test_settings_modal_fits_with_long_lists() -> None:
    runtime = RuntimeSettings(export_root="/e" * 2000, admins=[f"U{i:08d}" for i in range(400)])
    assert blockkit.view_problems(views.settings_modal(runtime)) == []


def test_split_text_keeps_everything_within_the_limit() -> None:
    text = "\n".join(f"line {i} " + "y" * (i % 90) for i in range(2000))
    pieces = views.split_text(text, 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert "\n".join(pieces) == text
    assert views.split_text("z" * 7000, 3000) == ["z" * 3000, "z" * 3000, "z" * 1000]


@pytest.mark.parametrize(("count", "shown"), [(0, "0 B"), (1536, "1.5 KB"),
                                              (5 * 1024**3, "5.0 GB"), (3 * 1024**5, "3072.0 TB")])
def test_human_bytes(count: int, shown: str) -> None:
    assert views.human_bytes(count) == shown


@pytest.mark.parametrize(("seconds", "shown"), [(4, "4s"), (65, "1m 05s"), (3725, "1h 02m")])
def test_human_duration(seconds: float, shown: str) -> None:
    assert views.human_duration(seconds) == shown


PINGS = ("<!channel>", "<!here>", "<@U0EVIL>", "<https://evil.example|click>")
NASTY = "Deal " + " & ".join(PINGS)
"""A room (or search, or error) naming every kind of Slack link and mention."""


def every_mrkdwn_text(payload: Any) -> list[str]:
    """The message's `text` and every mrkdwn text inside it: what Slack parses for mentions."""
    found = [str(payload.get("text"))] if isinstance(payload.get("text"), str) else []
    stack = list(payload.get("blocks") or [])
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(str(node.get("text")))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_hostile_names_reach_no_text_field_unescaped() -> None:
    from bot import approvals
    from jobs.approvals import Approval, RequestFacts
    from jobs.guard import GuardVerdict

    facts = RequestFacts(status="active", owner=NASTY, total_bytes=10, deleted_bytes=0,
                         file_count=1, folder_count=1, last_activity_at=NOW,
                         price_per_gb_month=0.1, monthly_saving=0.0)
    approval = Approval(id="a1", action="purge", room_id="r1", room_name=NASTY, room_etag="e",
                        requested_by="U1", requested_at=NOW, expires_at=NOW, state="pending",
                        facts=facts)
    verdict = GuardVerdict(room_id="r1", room_name=NASTY, room_etag="e", ok=False,
                           problem=NASTY)
    payloads = [
        views.room_details(room(1, name=NASTY), 0.5),
        views.ambiguous_rooms(NASTY, [room(1, name=NASTY)], 2),
        views.search_results(Search(text=NASTY), [room(1, name=NASTY)], page=0, first=1,
                             session="s", has_next=False),
        views.job_message(job(name=NASTY), None),
        views.report_message(report(name=NASTY)),
        views.error_message(NASTY),
        views.help_message(None, problem=NASTY),
        approvals.approval_card(approval),
        approvals.refusal_message(room(1, name=NASTY), verdict, offer_override=True,
                                  channel="C1"),
    ]
    for payload in payloads:
        texts = every_mrkdwn_text(payload)
        assert any("&lt;!channel&gt;" in text for text in texts), texts
        for text in texts:
            assert not [ping for ping in PINGS if ping in text], text
            assert "&amp;lt;" not in text, text  # escaped once, not twice
