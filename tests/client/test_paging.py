"""Cursor paging, room lookup by reference, id quoting, and keeping the token secret."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.client._fakes import CAPABILITIES, Handler, make_client, room_json
from vdr_client import AmbiguousRoom, BadRequest, IntegrityError, NotFound, VdrClient

ROOM_NAMES = ["Project Falcon", "Project Falcon II", "Falconry Ltd", "Heron", "heron",
              "Osprey Holdings", "Kestrel"]


def rooms_api(names: list[str], page_size: int = 3) -> tuple[list[httpx.Request], Handler]:
    """A tiny canonical API: rooms filtered by `query` (substring), paged by opaque cursors."""
    seen: list[httpx.Request] = []
    rooms = [room_json(f"r{index}", name) for index, name in enumerate(names)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/v1/capabilities":
            return httpx.Response(200, json={**CAPABILITIES, "max_page_size": page_size})
        if path.startswith("/v1/rooms/"):
            wanted = path.rsplit("/", 1)[1]
            for room in rooms:
                if room["id"] == wanted:
                    return httpx.Response(200, json=room)
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        query = request.url.params.get("query", "").lower()
        matching = [room for room in rooms if query in room["name"].lower()]
        start = int(request.url.params.get("cursor", "c0")[1:])
        limit = int(request.url.params.get("limit", page_size))
        end = start + limit
        cursor = f"c{end}" if end < len(matching) else None
        return httpx.Response(200, json={"items": matching[start:end], "next_cursor": cursor})

    return seen, handler


def test_search_rooms_follows_every_cursor() -> None:
    seen, handler = rooms_api(ROOM_NAMES, page_size=3)
    client = make_client(handler)

    names = [room.name for room in client.search_rooms()]

    assert names == ROOM_NAMES
    pages = [request for request in seen if request.url.path == "/v1/rooms"]
    assert [request.url.params.get("cursor") for request in pages] == [None, "c3", "c6"]
    assert {request.url.params["limit"] for request in pages} == {"3"}


def test_search_rooms_page_sends_only_the_filters_given() -> None:
    seen, handler = rooms_api(ROOM_NAMES)
    client = make_client(handler)

    page = client.search_rooms_page(query="falcon", status="active", inactive_days=90, limit=2)

    assert [room.name for room in page.items] == ["Project Falcon", "Project Falcon II"]
    assert page.next_cursor == "c2"
    assert dict(seen[0].url.params) == {
        "query": "falcon", "status": "active", "sort": "name", "inactive_days": "90", "limit": "2"
    }


def test_iter_children_follows_cursors() -> None:
    items = [
        {"id": f"i{n}", "type": "file", "name": f"{n}.pdf", "parent_id": "f1", "size": n,
         "modified_at": "2024-01-01T00:00:00Z", "version": "1", "etag": "e", "hashes": {}}
        for n in range(7)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json=CAPABILITIES)
        assert request.url.path == "/v1/folders/f1/children"
        start = int(request.url.params.get("cursor", "0"))
        end = start + int(request.url.params["limit"])
        cursor = str(end) if end < len(items) else None
        return httpx.Response(200, json={"items": items[start:end], "next_cursor": cursor})

    assert [item.id for item in make_client(handler).iter_children("f1")] == [
        f"i{n}" for n in range(7)
    ]


def test_a_repeated_cursor_raises_instead_of_looping_forever() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/capabilities":
            return httpx.Response(200, json=CAPABILITIES)
        return httpx.Response(200, json={"items": [room_json("r1", "A")], "next_cursor": "same"})

    with pytest.raises(IntegrityError, match="repeated cursor"):
        list(make_client(handler).search_rooms())


def test_find_room_by_id() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    assert make_client(handler).find_room("r5").name == "Osprey Holdings"


def test_find_room_by_exact_name_ignoring_case_even_when_others_contain_it() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    assert make_client(handler).find_room("project falcon").id == "r0"


def test_find_room_by_a_unique_part_of_a_name() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    assert make_client(handler).find_room("osprey").id == "r5"


def test_find_room_strips_the_reference() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    assert make_client(handler).find_room("  falcon ii ").id == "r1"


def test_find_room_with_several_partial_matches_lists_the_candidates() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    with pytest.raises(AmbiguousRoom) as raised:
        make_client(handler).find_room("falcon")

    names = {room.name for room in raised.value.candidates}
    assert names == {"Project Falcon", "Project Falcon II", "Falconry Ltd"}
    assert raised.value.total == 3
    assert "Falconry Ltd" in str(raised.value)
    assert isinstance(raised.value, BadRequest)


def test_find_room_with_two_exact_names_differing_in_case_is_ambiguous() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    with pytest.raises(AmbiguousRoom) as raised:
        make_client(handler).find_room("HERON")

    assert sorted(room.id for room in raised.value.candidates) == ["r3", "r4"]


def test_find_room_without_any_match_is_not_found() -> None:
    _, handler = rooms_api(ROOM_NAMES)

    with pytest.raises(NotFound, match="no room matches 'albatross'"):
        make_client(handler).find_room("albatross")


def test_ids_are_one_encoded_path_segment() -> None:
    seen, handler = rooms_api(ROOM_NAMES)
    client = make_client(handler)

    for hostile in ["..", "../../etc/passwd", "a/b", "x?y=1#z", "sp ace"]:
        with pytest.raises(NotFound):
            client.get_room(hostile)

    paths = [request.url.raw_path.decode() for request in seen]
    assert paths == [
        "/v1/rooms/%2E%2E",
        "/v1/rooms/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/v1/rooms/a%2Fb",
        "/v1/rooms/x%3Fy%3D1%23z",
        "/v1/rooms/sp%20ace",
    ]


def test_an_empty_id_is_refused_before_any_request() -> None:
    seen, handler = rooms_api(ROOM_NAMES)

    with pytest.raises(BadRequest):
        make_client(handler).get_room("")

    assert seen == []


def test_the_token_is_sent_but_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vdr.client")  # whatever an earlier test set on "vdr"
    seen, handler = rooms_api(ROOM_NAMES)
    client = make_client(handler, token="s3cr3t-token")

    client.get_room("r1")
    with pytest.raises(NotFound) as raised:
        client.get_room("nope")

    assert seen[0].headers["Authorization"] == "Bearer s3cr3t-token"
    assert "s3cr3t-token" not in repr(client)
    assert "s3cr3t-token" not in caplog.text
    assert "s3cr3t-token" not in str(raised.value)
    assert any(record.name == "vdr.client" for record in caplog.records)


def test_no_authorization_header_without_a_token() -> None:
    seen, handler = rooms_api(ROOM_NAMES)

    make_client(handler, token=None).get_room("r1")

    assert "Authorization" not in seen[0].headers


def test_from_settings_reads_url_and_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vdr_ops.settings import Settings

    monkeypatch.setenv("VDR_API_URL", "http://127.0.0.1:1/base/")
    monkeypatch.setenv("VDR_API_TOKEN", "tok-from-env")

    client = VdrClient.from_settings(Settings())

    assert client.base_url == "http://127.0.0.1:1/base"
    assert client._auth_headers() == {"Authorization": "Bearer tok-from-env"}
    assert "tok-from-env" not in repr(client)
    client.close()
