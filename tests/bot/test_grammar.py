"""The /vdr grammar: every verb, every filter, and what bad input turns into."""

from __future__ import annotations

import pytest

from bot.grammar import (
    Cancel,
    EditSettings,
    Export,
    Help,
    Jobs,
    ReportDetail,
    Reports,
    Search,
    Show,
    parse,
    render_search,
)


@pytest.mark.parametrize("text", ["", "   ", "help"])
def test_empty_input_and_help_give_general_help(text: str) -> None:
    assert parse(text) == Help()


def test_help_with_a_topic_names_it() -> None:
    assert parse("help export") == Help(topic="export")
    assert parse("help nonsense") == Help()


def test_unknown_verb_gets_help_that_names_it() -> None:
    command = parse("archive Falcon")
    assert isinstance(command, Help)
    assert command.problem is not None and "`archive`" in command.problem


def test_search_text_and_every_filter() -> None:
    command = parse("search project falcon status:active owner:dana inactive:180d sort:size")
    assert command == Search(text="project falcon", status="active", owner="dana",
                             inactive_days=180, sort="-size")


def test_search_without_anything_lists_all_rooms_by_name() -> None:
    assert parse("search") == Search()


@pytest.mark.parametrize(("period", "days"), [
    ("90", 90), ("180d", 180), ("26w", 182), ("6m", 180), ("1y", 365), ("2Y", 730),
])
def test_inactive_periods_in_days_weeks_months_years(period: str, days: int) -> None:
    assert parse(f"search inactive:{period}") == Search(inactive_days=days)


@pytest.mark.parametrize(("word", "order"), [
    ("size", "-size"), ("-size", "size"), ("activity", "last_activity"),
    ("-activity", "-last_activity"), ("name", "name"), ("-name", "-name"),
    ("created", "created"),
])
def test_sort_words_map_to_api_orders(word: str, order: str) -> None:
    assert parse(f"search sort:{word}") == Search(sort=order)


@pytest.mark.parametrize("bad", ["status:closed", "inactive:soon", "inactive:0d", "sort:colour",
                                 "owner:", "inactive:12q"])
def test_malformed_filters_get_search_help_with_the_problem(bad: str) -> None:
    command = parse(f"search falcon {bad}")
    assert isinstance(command, Help)
    assert command.topic == "search"
    assert command.problem


def test_unknown_key_with_colon_is_search_text() -> None:
    assert parse("search Deal: Alpha") == Search(text="Deal: Alpha")


def test_quoted_room_names_and_curly_quotes() -> None:
    assert parse('show "Project Falcon"') == Show("Project Falcon")
    assert parse("show \u201cProject Falcon\u201d") == Show("Project Falcon")
    assert parse("export Project Falcon") == Export("Project Falcon")


def test_unbalanced_quote_is_just_a_character() -> None:
    assert parse('show O"Brien deal') == Show('O"Brien deal')


def test_verbs_are_case_insensitive() -> None:
    assert parse("SHOW Falcon") == Show("Falcon")


@pytest.mark.parametrize("text", ["show", "export", "cancel", "report"])
def test_verbs_needing_an_argument_explain_it(text: str) -> None:
    command = parse(text)
    assert isinstance(command, Help) and command.topic == text
    assert command.problem is not None and f"/vdr {text} <" in command.problem


def test_jobs_cancel_reports_report_settings() -> None:
    assert parse("jobs") == Jobs()
    assert parse("cancel j-123") == Cancel("j-123")
    assert parse("reports") == Reports()
    assert parse("reports Falcon") == Reports("Falcon")
    assert parse("report r-9") == ReportDetail("r-9")
    assert parse("settings") == EditSettings()


def test_verbs_without_arguments_refuse_extra_words() -> None:
    command = parse("jobs all")
    assert isinstance(command, Help) and command.topic == "jobs"


@pytest.mark.parametrize("text", [
    "search", "search falcon", "search status:archived sort:size",
    "search a b owner:x inactive:30d sort:-activity", "search sort:-name", "search sort:created",
])
def test_render_search_parses_back_to_the_same_search(text: str) -> None:
    search = parse(text)
    assert isinstance(search, Search)
    assert parse(render_search(search)) == search

