"""Drawing Block Kit in a terminal, and finding what was drawn: pure, no services."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from bot import views
from bot.console._controls import Controls, Place, fold
from bot.console._mrkdwn import to_text
from bot.console._render import Renderer
from bot.console._screen import complaint_of
from bot.console.errors import ConsoleError

NAMES = {"U1": "ana", "C1": "deal-ops"}


def name_of(ref: str) -> str:
    return NAMES.get(ref, ref)


def plain(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(renderable)
    return out.getvalue()


@pytest.mark.parametrize(("mrkdwn", "shown"), [
    ("*Succeeded* in 4s", "Succeeded in 4s"),
    ("job `3c5a_571c` by <@U1>", "job 3c5a_571c by @ana"),
    ("see <#C1> and <https://example.test/x|the docs>", "see #deal-ops and the docs"),
    ("<!here> <!subteam^S1|@legal> <https://example.test/y>", "@here @legal https://example.test/y"),
    ("a snake_case_name and 2*3*4 stay", "a snake_case_name and 2*3*4 stay"),
    ("R&amp;D &lt;draft&gt; _really_ ~old~", "R&D <draft> really old"),
    (":package: *Export of Falcon*", "📦 Export of Falcon"),
    ("```two\nlines```", "two\nlines"),
])
def test_mrkdwn_is_shown_as_slack_shows_it(mrkdwn: str, shown: str) -> None:
    assert to_text(mrkdwn, name_of).plain == shown


def test_mrkdwn_styles_follow_the_marks() -> None:
    text = to_text("plain *bold _both_* `code`", name_of)

    styles = {text.plain[span.start:span.end]: str(span.style) for span in text.spans}

    assert styles["bold "] == "bold"
    assert styles["both"] == "bold italic"
    assert styles["code"] == "cyan"


def test_every_control_gets_a_number_that_stays_valid() -> None:
    controls = Controls()
    renderer = Renderer(controls, name_of)
    message = views.help_message()
    menu = {"type": "overflow", "action_id": "room_menu", "options": [
        views.option("Show details", "show:r1"), views.option("Export…", "export:r1")]}
    blocks = [views.section("*Falcon*", menu),
              views.actions(views.button("Next ▶", "search_page:next", "s:1"))]

    first = plain(renderer.message(Text("x"), "t", blocks, Place("C1", "1.0")))
    second = plain(renderer.message(Text("y"), message["text"], message["blocks"],
                                    Place("C1", "2.0")))

    assert "⋯ [1] Show details  [2] Export…" in first and "[3] Next ▶" in first
    assert "/vdr help [command]" in second
    assert len(controls) == 3  # help has no controls
    assert controls.get(2).value == "export:r1" and controls.get(2).action_id == "room_menu"
    assert controls.get(3).value == "s:1"


def test_labels_are_found_loosely_and_narrowed_by_their_row() -> None:
    controls = Controls()
    renderer = Renderer(controls, name_of)
    rows = [views.section(f"*{name}*", views.button("Export…", "room_export", name))
            for name in ("Falcon", "Osprey")]
    renderer.message(Text("x"), "t", rows, Place("C1", "1.0"))

    assert controls.find("export...", within="osprey").value == "Osprey"
    assert controls.find("EXP", within="Falcon").value == "Falcon"
    assert controls.find("2").value == "Osprey"
    with pytest.raises(ConsoleError, match=r"2 controls are labelled 'Export…' \(\[1\], \[2\]\)"):
        controls.find("Export…")


def test_the_latest_message_wins_when_a_label_repeats_across_messages() -> None:
    controls = Controls()
    renderer = Renderer(controls, name_of)
    for ts in ("1.0", "2.0"):
        row = [views.actions(views.button("Next ▶", "search_page:next", ts))]
        renderer.message(Text("x"), "t", row, Place("C1", ts))

    assert controls.find("next").place == Place("C1", "2.0")


def test_forms_show_the_draft_over_initial_values_and_errors_under_fields() -> None:
    controls = Controls()
    renderer = Renderer(controls, name_of)
    modal = {"type": "modal", "title": views.plain("Export room"), "submit": views.plain("Go"),
             "blocks": [
                 {"type": "input", "block_id": "dest", "label": views.plain("Destinations"),
                  "element": {"type": "checkboxes", "action_id": "dest",
                              "options": [views.option("Local disk", "local"),
                                          views.option("Amazon S3", "s3")],
                              "initial_options": [views.option("Local disk", "local")]}},
                 {"type": "input", "block_id": "prefix", "label": views.plain("S3 prefix"),
                  "element": {"type": "plain_text_input", "action_id": "prefix",
                              "initial_value": "deals"}},
             ]}

    drawn = plain(renderer.view(modal, Place(view_id="V1"), title="Export room",
                                draft={"dest": ["s3"], "prefix": "deals/falcon"},
                                errors={"dest": "No S3 bucket is configured"}))

    assert "(1) Destinations: ☐ Local disk   ☑ Amazon S3" in drawn
    assert "⚠ No S3 bucket is configured" in drawn
    assert "(2) S3 prefix: “deals/falcon”" in drawn
    assert "submit → Go   close → Close" in drawn


def plain_of(text: Text | None) -> str | None:
    return None if text is None else text.plain


def test_complaints_are_warnings_errors_and_refusals_only() -> None:
    assert plain_of(complaint_of("", views.error_message("No room matches x")["blocks"])) == \
        "⚠ No room matches x"
    assert plain_of(complaint_of("", views.notice(":lock: Operators only.")["blocks"])) == \
        "🔒 Operators only."
    assert plain_of(complaint_of(":x: failed", [])) == "❌ failed"
    assert complaint_of("", views.notice(":package: Export queued")["blocks"]) is None
    assert complaint_of("", views.help_message()["blocks"]) is None


def test_fold_ignores_case_accents_ellipses_and_quotes() -> None:
    assert fold("  “Export…” ") == fold('"export..."') == 'export...'
    assert fold("Chloé") == "chloe"


@pytest.mark.parametrize(("line", "parsed"), [
    ("Export… in Falcon", ("Export…", "Falcon")),
    ("Show details", ("Show details", None)),
    ('"Sign in now"', ("Sign in now", None)),
    ('"Sign in now" in Falcon II', ("Sign in now", "Falcon II")),
    ("Export in 'Project in Mind'", ("Export", "Project in Mind")),
])
def test_press_reads_a_label_and_the_row_it_is_in(line: str, parsed: tuple[str, Any]) -> None:
    from bot.console._session import _split_within

    assert _split_within(line) == parsed


def test_the_public_surface_is_what_it_says() -> None:
    import bot.console

    assert sorted(bot.console.__all__) == sorted(
        name for name in vars(bot.console) if not name.startswith("_") and name != "annotations"
        and not isinstance(vars(bot.console)[name], type(bot.console)))
    for name in bot.console.__all__:
        assert getattr(bot.console, name) is not None


@pytest.mark.parametrize(("name", "shown"), [
    ("Esc\x1b[31mRED\x1b[0m Room", "Esc␛[31mRED␛[0m Room"),
    ("Deal ..\\evil\nroom", "Deal ..\\evil␊room"),
    ("[bold red]Rich[/] \u202eroom", "[bold red]Rich[/] \\u202eroom"),
])
def test_room_names_never_reach_the_terminal_as_control_codes_or_markup(name: str,
                                                                        shown: str) -> None:
    controls = Controls()
    renderer = Renderer(controls, name_of)
    room = views.room_details(hostile_room(name), 0.5)
    out = io.StringIO()
    terminal = Console(file=out, width=100, color_system="truecolor", force_terminal=True)

    terminal.print(renderer.message(Text("app"), room["text"], room["blocks"], Place("C1", "1")))
    from jobs.runtime_settings import RuntimeSettings

    modal = views.export_modal(hostile_room(name), RuntimeSettings(export_root="/x"), {})
    terminal.print(renderer.view(modal,
                                 Place(view_id="V1"), title="Export"))

    drawn = out.getvalue()
    assert "\x1b[31mRED" not in drawn and "\u202e" not in drawn
    assert shown in drawn  # the header, and the modal's title line


def test_a_refusal_quotes_the_app_with_names_and_bold_not_markup() -> None:
    refusal = views.notice(":lock: <@U1> needs the *operator* role for this.")

    complaint = complaint_of("", refusal["blocks"], name_of)

    assert complaint is not None
    assert complaint.plain == "🔒 @ana needs the operator role for this."
    bold = [complaint.plain[s.start:s.end] for s in complaint.spans if "bold" in str(s.style)]
    assert bold == ["operator"]
    error = ConsoleError(complaint.plain, shown=complaint)
    assert plain(Text.assemble("✗ ", error.as_text())) == \
        "✗ 🔒 @ana needs the operator role for this.\n"


def hostile_room(name: str) -> Any:
    from datetime import UTC, datetime

    from vdr_client import Room

    now = datetime.now(UTC)
    return Room.model_validate({
        "id": "r1", "name": name, "status": "active",
        "owner": {"id": "o1", "name": name, "email": "o@example.test"},
        "created_at": now, "last_activity_at": now,
        "size": {"active_bytes": 1, "deleted_bytes": 0, "total_bytes": 1},
        "file_count": 1, "folder_count": 1, "root_folder_id": "f1", "etag": "e1",
    })
