"""`vdr rooms search|show|tree` with click's CliRunner against a live proxy on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from proxy import ProxyServer, RoomSpec, SyntheticBackend
from tests.fixtures.services import free_port
from vdr_client import VdrClient
from vdr_ops.cli import main
from vdr_ops.settings import get_settings

SPECS = [
    RoomSpec("Project Falcon", files=30, file_size=1000, folders=3, depth=2, owner="Ada Lovelace"),
    RoomSpec("Project Falcon II", files=5, file_size=10, status="archived", owner="Alan Turing"),
    RoomSpec("Falconry Ltd", files=3, file_size=10, owner="Grace Hopper"),
    RoomSpec("Heron [draft]", files=2, file_size=5, status="preparation", owner="Ada Lovelace"),
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment (no `.env`, no token) with wide output, settings re-read per test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VDR_API_TOKEN", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def live(
    env: pytest.MonkeyPatch,
    make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., SyntheticBackend],
) -> ProxyServer:
    server = make_proxy(synthetic_backend(specs=SPECS))
    env.setenv("VDR_API_URL", server.url)
    return server


def vdr(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_search_shows_every_room_with_its_columns(live: ProxyServer) -> None:
    with VdrClient(live.url) as client:
        rooms = list(client.search_rooms())

    result = vdr("rooms", "search")

    assert result.exit_code == 0, result.output
    for header in ("name", "id", "status", "owner", "size", "files", "last activity"):
        assert header in result.stdout
    for room in rooms:
        assert room.name in result.stdout
        assert room.id in result.stdout
    assert "Heron [draft]" in result.stdout  # brackets are data, not markup
    assert "4 rooms" in result.stdout


def test_search_filters_by_text_and_status(live: ProxyServer) -> None:
    result = vdr("rooms", "search", "falcon", "--status", "archived")

    assert result.exit_code == 0, result.output
    assert "Project Falcon II" in result.stdout
    assert "Falconry" not in result.stdout
    assert "1 room" in result.stdout


def test_search_by_owner_and_sort(live: ProxyServer) -> None:
    result = vdr("rooms", "search", "--owner", "Ada Lovelace", "--sort", "-name")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    heron = next(index for index, line in enumerate(lines) if "Heron" in line)
    falcon = next(index for index, line in enumerate(lines) if "Project Falcon " in line)
    assert falcon < heron  # descending by name: P before H
    assert "Grace Hopper" not in result.stdout


def test_search_says_when_the_limit_hides_rooms(live: ProxyServer) -> None:
    result = vdr("rooms", "search", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert "first 2 rooms shown; more match" in result.stdout


def test_search_refuses_an_unknown_status_before_calling(live: ProxyServer) -> None:
    result = vdr("rooms", "search", "--status", "deleted")

    assert result.exit_code == 2
    assert "deleted" in result.output


def test_show_by_name_prints_all_metadata(live: ProxyServer) -> None:
    with VdrClient(live.url) as client:
        room = client.find_room("Project Falcon")

    result = vdr("rooms", "show", "project falcon")

    assert result.exit_code == 0, result.output
    for text in (room.id, room.root_folder_id, room.etag, "Ada Lovelace", room.owner.email,
                 f"{room.size.total_bytes:,} bytes", f"{room.file_count:,}", "active"):
        assert text in result.stdout, text


def test_show_by_id(live: ProxyServer) -> None:
    with VdrClient(live.url) as client:
        room = client.find_room("Falconry")

    result = vdr("rooms", "show", room.id)

    assert result.exit_code == 0, result.output
    assert "Falconry Ltd" in result.stdout


def test_show_of_an_ambiguous_name_lists_the_candidates(live: ProxyServer) -> None:
    result = vdr("rooms", "show", "falcon")

    assert result.exit_code == 3
    assert "3 rooms match 'falcon'" in result.stderr
    for name in ("Project Falcon", "Project Falcon II", "Falconry Ltd"):
        assert name in result.stderr


def test_show_of_an_unknown_room_says_so(live: ProxyServer) -> None:
    result = vdr("rooms", "show", "albatross")

    assert result.exit_code == 3
    assert "no room matches 'albatross'" in result.stderr
    assert "vdr rooms search" in result.stderr


def test_tree_shows_folders_and_files_with_sizes(live: ProxyServer) -> None:
    with VdrClient(live.url) as client:
        room = client.find_room("Project Falcon")
        top = list(client.iter_children(room.root_folder_id))

    shallow = vdr("rooms", "tree", "Project Falcon", "--depth", "1")
    deep = vdr("rooms", "tree", "Project Falcon", "--depth", "3")

    assert shallow.exit_code == 0 and deep.exit_code == 0, shallow.output + deep.output
    assert "Project Falcon" in shallow.stdout and "30 files" in shallow.stdout
    for item in top:
        assert item.name in shallow.stdout
    assert "1.0 kB" in deep.stdout  # file sizes are shown
    assert len(deep.stdout.splitlines()) > len(shallow.stdout.splitlines())


def test_an_unreachable_proxy_names_the_url_and_how_to_start_one(env: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env.setenv("VDR_API_URL", url)

    result = vdr("rooms", "search")

    assert result.exit_code == 5
    assert url in result.stderr
    assert "vdr proxy" in result.stderr and "vdr demo" in result.stderr


def test_a_missing_token_points_at_vdr_api_token(
    env: pytest.MonkeyPatch,
    make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., SyntheticBackend],
) -> None:
    server = make_proxy(synthetic_backend(), token="the-proxy-token")
    env.setenv("VDR_API_URL", server.url)

    missing = vdr("rooms", "search")
    env.setenv("VDR_API_TOKEN", "a-wrong-token")
    get_settings.cache_clear()
    wrong = vdr("rooms", "show", "bench-small")
    env.setenv("VDR_API_TOKEN", "the-proxy-token")
    get_settings.cache_clear()
    right = vdr("rooms", "show", "bench-small")

    assert missing.exit_code == 4 and "set VDR_API_TOKEN" in missing.stderr
    assert wrong.exit_code == 4 and "refused the token in VDR_API_TOKEN" in wrong.stderr
    assert "a-wrong-token" not in wrong.output
    assert right.exit_code == 0, right.output


def test_piped_output_keeps_each_room_on_one_line_whatever_its_length(
    env: pytest.MonkeyPatch, make_proxy: Callable[..., ProxyServer],
    synthetic_backend: Callable[..., SyntheticBackend],
) -> None:
    long_name = "Project " + " ".join(["Kingfisher"] * 12)  # far wider than 80 columns
    server = make_proxy(synthetic_backend(specs=[RoomSpec(long_name, files=1, file_size=10)]))
    env.setenv("VDR_API_URL", server.url)
    env.delenv("COLUMNS")  # as in `vdr rooms search | grep ...`

    result = vdr("rooms", "search")

    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "Kingfisher" in line]
    assert long_name in row and "…" not in row


@pytest.mark.parametrize("argv", [["rooms", "show", ""], ["rooms", "tree", "  "], ["export", ""]])
def test_a_blank_room_is_a_usage_error_before_any_request(
    env: pytest.MonkeyPatch, argv: list[str]
) -> None:
    env.setenv("VDR_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: never asked

    result = vdr(*argv)

    assert result.exit_code == 2, result.output
    assert "give the room's id or its name" in result.output
