"""The console driving the real app: what it draws, how controls are found, when lines fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.console import BotComplained, ConsoleError, WaitTimedOut
from tests.console.conftest import ConsoleRig


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_search_then_buttons_by_label_and_by_number(console: Any) -> None:
    rig: ConsoleRig = console()

    assert rig.run("/vdr search osprey", "press Show details in Refinancing") == 0

    text = rig.transcript()
    assert "Project Osprey" in text and "Osprey Refinancing" in text
    assert "Status" in text and "archived" in text  # the details of the room asked for
    reports = rig.session.screen.controls.find("Reports", within="Refinancing")
    rig.session.execute(str(reports.number))
    assert "No reports for" in rig.transcript()


def test_a_label_several_rows_share_must_be_narrowed(console: Any) -> None:
    rig: ConsoleRig = console()
    rig.session.execute("/vdr search osprey")

    ambiguous = r"2 controls are labelled 'Show details' \(\[\d+\], \[\d+\]\)"
    with pytest.raises(ConsoleError, match=ambiguous):
        rig.session.execute("press Show details")

    with pytest.raises(ConsoleError, match="nothing labelled"):
        rig.session.execute("press Show details in Kestrel")


def test_export_from_the_modal_to_the_report_in_the_thread(console: Any) -> None:
    rig: ConsoleRig = console()

    code = rig.run("/vdr export falcon", "check Confirm", "submit", "wait",
                   "expect Export report", "expect manifest.jsonl")

    text = rig.transcript()
    assert code == 0, text
    assert "(7) Confirm: ☐ Export" in text or "Confirm: ☐ Export" in text  # the form as opened
    assert "Confirm: ☑ Export" in text  # ... and as ticked
    assert "✎ vdr-ops  #deal-ops" in text and "(edited)" in text  # progress edits
    assert "↳ vdr-ops  #deal-ops" in text and "in the thread of" in text  # report in thread
    assert "📎 manifest.jsonl" in text
    [room_folder] = [p for p in rig.export_root.iterdir() if p.is_dir()]
    exported = files_under(room_folder)
    assert len([name for name in exported if name != "manifest.jsonl"]) == 24
    assert all(len(data) == 2048 for name, data in exported.items() if name != "manifest.jsonl")


def test_a_refused_form_fails_the_line_and_keeps_the_modal(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)
    rig.session.execute("/vdr export falcon")
    rig.session.execute("uncheck Destinations Local disk")

    with pytest.raises(BotComplained, match="destinations: Choose at least one destination"):
        rig.session.execute("submit")

    assert "⚠ Choose at least one destination" in rig.transcript()
    assert rig.workspace.fake.open_modal(rig.session.user) is not None
    rig.session.execute("close")
    assert rig.workspace.fake.open_modal(rig.session.user) is None


def test_a_script_stops_at_the_first_failed_line(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)

    code = rig.run("try /vdr show no-such-room", "/vdr show no-such-room", "/vdr help")

    text = rig.transcript()
    assert code == 1
    assert "(failed, as allowed: the app answered: ⚠ No room matches" in text
    assert "✗ line 2 failed: the app answered: ⚠ No room matches" in text
    assert "/vdr help [command]" not in text  # line 3 never ran


def test_unknown_lines_and_missing_things_fail_with_a_hint(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)

    for line, message in [("frobnicate", "unknown line"), ("submit", "has no modal open"),
                          ("press 99", r"no control \[99\]"), ("as nobody!", "nobody is called"),
                          ("wait soon", "not a number")]:
        with pytest.raises(ConsoleError, match=message):
            rig.session.execute(line)


def test_expect_waits_a_little_then_fails(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)
    rig.session.timing.expect_timeout_s = 0.5
    rig.session.execute("/vdr jobs")

    rig.session.execute("expect No jobs are queued or running")
    with pytest.raises(WaitTimedOut, match="did not show up"):
        rig.session.execute("expect Succeeded")


def test_expect_in_a_script_does_not_see_the_script_itself(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)
    rig.session.timing.expect_timeout_s = 0.5

    code = rig.run("/vdr jobs", "expect Succeeded")  # the echoed line says "Succeeded"

    assert code == 1
    assert "✗ line 2 failed: “Succeeded” did not show up" in rig.transcript()


def test_as_switches_the_acting_person_and_their_role_counts(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)

    code = rig.run("as vic", "/vdr search falcon", "try /vdr export falcon", "as dora",
                   "people")

    text = rig.transcript()
    assert code == 0, text
    assert "— you are now vic" in text
    assert "Project Falcon – Closing Set" in text  # a viewer may search ...
    assert "(failed, as allowed: the app answered:" in text  # ... but not export
    assert "— you are now dora (new here, with no role)" in text
    assert "dora" in text and "← you" in text


def test_app_home_shows_jobs_reports_and_stale_rooms(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)

    rig.session.execute("home")

    text = rig.transcript()
    assert "App Home of you" in text
    assert "Running jobs" in text and "Recent reports" in text
    assert "Rooms inactive the longest" in text and "Project Osprey" in text


def test_trash_asked_by_one_person_is_approved_by_another(console: Any) -> None:
    rig: ConsoleRig = console()
    room = rig.vdr.find_room("falcon")

    code = rig.run("/vdr trash falcon", "try press Approve", "as cleo", "press Approve", "wait",
                   "expect Trash report")

    text = rig.transcript()
    assert code == 0, text
    refusal = text.index("(failed, as allowed: the app answered: 🔒")  # not one's own request
    assert text.index("Approved by @cleo") > text.index("— you are now cleo") > refusal
    assert rig.vdr.get_room(room.id).status == "trashed"


def test_a_second_console_on_the_same_redis_still_gets_its_app_home(console: Any) -> None:
    first: ConsoleRig = console(worker=False)
    first.session.execute("home")
    first.workspace.stop()

    second: ConsoleRig = console(worker=False)
    second.session.execute("home")  # the app would drop a repeated event id as a retry

    assert "App Home of you" in second.transcript()


def test_wait_judges_only_what_happens_while_it_waits(console: Any) -> None:
    rig: ConsoleRig = console(worker=False)

    code = rig.run("try /vdr show no-such-room", "wait", "expect No room matches")

    assert code == 0, rig.transcript()


def test_granting_the_cast_roles_keeps_whoever_held_them(console: Any) -> None:
    from jobs.runtime_settings import load_runtime_settings, save_runtime_settings

    rig: ConsoleRig = console(worker=False)
    engine, redis = rig.workspace.engine, rig.workspace.redis
    current = load_runtime_settings(engine, redis)
    save_runtime_settings(engine, redis, current.model_copy(update={
        "admins": ["U0REALADM"], "viewers": ["U0REALVIEW"], "operators": []}), actor="test")

    rig.workspace.grant_cast_roles()
    rig.workspace.grant_cast_roles()

    granted = load_runtime_settings(engine, redis)
    assert granted.admins == ["U0REALADM", "U0CASTANA"]
    assert granted.viewers == ["U0REALVIEW", "U0CASTVIC"]
    assert granted.operators == ["U0CASTBEN"]
    assert "U0CASTCLEO" in granted.approver_group


def test_wait_ignores_jobs_nobody_here_started(console: Any) -> None:
    from jobs import api as jobs_api

    rig: ConsoleRig = console(worker=False)
    elsewhere = jobs_api.enqueue_export(room_ref="falcon", requested_by="cli",
                                        redis=rig.workspace.redis, engine=rig.workspace.engine,
                                        client=rig.vdr)

    rig.session.execute("wait 3")  # no worker runs: that job stays queued

    job = jobs_api.get_job(elsewhere.id, engine=rig.workspace.engine)
    assert job is not None and job.state == "queued"
