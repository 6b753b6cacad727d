"""Safe names: properties over arbitrary text, and the hostile names seen in real rooms."""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.naming import MAX_COMPONENT_BYTES, assign_names, fold, safe_component

names = st.text(min_size=0, max_size=400)
sibling_lists = st.lists(
    st.tuples(st.uuids().map(str), names), max_size=25, unique_by=lambda entry: entry[0]
)

HOSTILE = [
    "..", ".", "../../etc/passwd", "a/b", "a\\b", "nul\0byte", "tab\there", "CON", "con.txt",
    "Lpt1.tar.gz", "COM\u00b9", "trailing. . ", "   ", "", "report\u202egpj.exe",
    "e\u0301t\u00e9", "x" * 300, "é" * 200 + ".pdf", "line\nbreak", "what?.docx", "<>:|*\"",
]


def assert_safe(component: str) -> None:
    assert component not in ("", ".", "..")
    assert len(component.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert unicodedata.is_normalized("NFC", component)
    assert not component.endswith((".", " "))
    assert not any(char in component for char in '/\\<>:"|?*')
    assert not any(unicodedata.category(char) in ("Cc", "Cs") for char in component)
    assert component.split(".")[0].strip(" ").lower() not in {"con", "prn", "aux", "nul"}


@given(names)
@settings(max_examples=400)
def test_every_name_maps_to_a_safe_component(name: str) -> None:
    assert_safe(safe_component(name))


@given(names)
@settings(max_examples=300)
def test_safe_component_is_idempotent(name: str) -> None:
    once = safe_component(name)
    assert safe_component(once) == once


@given(sibling_lists)
@settings(max_examples=200)
def test_siblings_never_share_a_name_even_ignoring_case(entries: list[tuple[str, str]]) -> None:
    result = assign_names(entries, reserved=["manifest.jsonl"])

    assert set(result) == {key for key, _ in entries}
    folded = [fold(name) for name in result.values()]
    assert len(set(folded)) == len(folded)
    assert fold("manifest.jsonl") not in folded
    for name in result.values():
        assert_safe(name)


@given(sibling_lists, st.randoms())
@settings(max_examples=100)
def test_assignment_does_not_depend_on_listing_order(
    entries: list[tuple[str, str]], rnd: random.Random
) -> None:
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert assign_names(shuffled) == assign_names(entries)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_inside_the_export_root(tmp_path: Path, name: str) -> None:
    component = safe_component(name)
    target = (tmp_path / component).resolve()

    assert_safe(component)
    assert target.parent == tmp_path.resolve()
    target.write_bytes(b"x")  # the file system accepts it
    assert os.listdir(tmp_path) == [component]


def test_names_that_differ_only_in_case_or_normalisation_are_told_apart() -> None:
    entries = [("1", "Report.PDF"), ("2", "report.pdf"), ("3", "e\u0301.txt"), ("4", "\u00e9.txt")]

    result = assign_names(entries)

    assert result["1"] == "Report.PDF"  # first in (name, id) order keeps the plain name
    assert result["2"].startswith("report~") and result["2"].endswith(".pdf")
    assert len({fold(name) for name in result.values()}) == 4


def test_a_file_already_named_like_a_suffixed_twin_does_not_collide() -> None:
    twin = assign_names([("1", "a.txt"), ("2", "A.txt")])["1"]
    entries = [("1", "a.txt"), ("2", "A.txt"), ("3", twin)]

    result = assign_names(entries)

    assert len({fold(name) for name in result.values()}) == 3


def test_long_names_keep_their_extension_and_stay_distinct() -> None:
    first, second = safe_component("a" * 300 + ".pdf"), safe_component("a" * 301 + ".pdf")

    assert first.endswith(".pdf") and second.endswith(".pdf")
    assert first != second
    assert len(first.encode()) <= MAX_COMPONENT_BYTES


def test_reserved_windows_names_get_a_prefix() -> None:
    assert safe_component("CON") == "_CON"
    assert safe_component("nul.tar.gz") == "_nul.tar.gz"
    assert safe_component("console") == "console"
