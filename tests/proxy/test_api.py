"""Every call of the canonical API, over real HTTP, once per backend."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.proxy.conftest import all_items, walk
from vdr_client import Capabilities, ErrorBody, Item, Operation, Page, Room


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = ErrorBody.model_validate(response.json())
    if code:
        assert body.error.code == code


def rooms(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/v1/rooms", params=params)
    assert response.status_code == 200, response.text
    return [Room.model_validate(room).model_dump(mode="json") for room in response.json()["items"]]


def first_room(http: httpx.Client) -> dict[str, Any]:
    return rooms(http, sort="name")[0]


def files_of(http: httpx.Client, room: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        path: item
        for path, item in walk(http, room["root_folder_id"]).items()
        if item["type"] == "file"
    }


def test_capabilities_describe_what_the_backend_does(http: httpx.Client) -> None:
    capabilities = Capabilities.model_validate(http.get("/v1/capabilities").json())

    assert capabilities.hash_algorithms == ["sha256"]
    assert capabilities.supports_range and capabilities.supports_restore
    assert capabilities.room_purge == "native"
    assert capabilities.max_page_size >= 100


def test_room_search_pages_through_every_room_once(http: httpx.Client) -> None:
    everything = rooms(http, limit=1000)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = Page[Room].model_validate(http.get("/v1/rooms", params=params).json())
        seen.extend(room.id for room in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert sorted(seen) == sorted(room["id"] for room in everything)
    assert len(set(seen)) == len(seen)


def test_room_search_filters_and_sorts(http: httpx.Client) -> None:
    everything = rooms(http, limit=1000)
    by_name = [room["name"] for room in rooms(http, sort="name")]
    by_size = [room["size"]["total_bytes"] for room in rooms(http, sort="-size")]
    target = everything[0]

    assert by_name == sorted(by_name, key=str.casefold)
    assert [room["name"] for room in rooms(http, sort="-name")] == by_name[::-1]
    assert by_size == sorted(by_size, reverse=True)
    assert target["id"] in [room["id"] for room in rooms(http, query=target["name"][1:].upper())]
    assert rooms(http, query="no room is called this") == []
    assert {room["status"] for room in rooms(http, status="active")} <= {"active"}
    assert target["id"] in [room["id"] for room in rooms(http, owner=target["owner"]["email"])]
    assert rooms(http, inactive_days=100_000) == []
    assert rooms(http, inactive_days=10**17) == []  # past the calendar: empty, not a crash


def test_inactive_days_keeps_rooms_quiet_for_that_long(http: httpx.Client) -> None:
    now = datetime.now(UTC)
    for room in rooms(http, inactive_days=3):
        assert datetime.fromisoformat(room["last_activity_at"]) <= now - timedelta(days=3)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"limit": "1.5"},
        {"sort": "bogus"},
        {"sort": ""},
        {"status": "deleted"},
        {"status": ""},
        {"inactive_days": "-3"},
        {"inactive_days": "soon"},
        {"cursor": ""},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJvIjoxfQ"},
    ],
)
def test_room_search_refuses_bad_parameters(http: httpx.Client, params: dict[str, str]) -> None:
    assert_error(http.get("/v1/rooms", params=params), 400, "bad_request")


def test_limit_above_the_maximum_is_capped(http: httpx.Client) -> None:
    assert http.get("/v1/rooms", params={"limit": 10**9}).status_code == 200


def test_get_room_matches_search_and_sends_its_etag(http: httpx.Client) -> None:
    room = first_room(http)
    response = http.get(f"/v1/rooms/{room['id']}")

    assert response.status_code == 200
    assert response.json() == room
    assert response.headers["etag"] == f'"{room["etag"]}"'


@pytest.mark.parametrize("room_id", ["nope", "..", "rm00", "r" + "a" * 40, "%2e%2e"])
def test_unknown_room_is_404(http: httpx.Client, room_id: str) -> None:
    assert_error(http.get(f"/v1/rooms/{room_id}"), 404, "not_found")


def test_tree_matches_the_room_counts_and_sizes(http: httpx.Client) -> None:
    for room in rooms(http):
        tree = walk(http, room["root_folder_id"])
        files = [item for item in tree.values() if item["type"] == "file"]
        folders = [item for item in tree.values() if item["type"] == "folder"]

        assert len(files) == room["file_count"]
        assert len(folders) == room["folder_count"]
        assert sum(item["size"] for item in files) == room["size"]["active_bytes"]
        for item in tree.values():
            Item.model_validate(item)


def test_small_pages_list_the_same_items_as_one_big_page(http: httpx.Client) -> None:
    room = first_room(http)
    folder = next(
        item for item in all_items(http, room["root_folder_id"]) if item["type"] == "folder"
    )

    assert all_items(http, folder["id"], limit=2) == all_items(http, folder["id"], limit=1000)


def test_a_cursor_only_works_for_its_own_folder(http: httpx.Client) -> None:
    room = first_room(http)
    folders = [
        item for item in walk(http, room["root_folder_id"]).values() if item["type"] == "folder"
    ]
    page = http.get(f"/v1/folders/{room['root_folder_id']}/children", params={"limit": 1}).json()

    assert page["next_cursor"]
    other = http.get(
        f"/v1/folders/{folders[-1]['id']}/children", params={"cursor": page["next_cursor"]}
    )
    assert_error(other, 400, "bad_request")


def test_content_matches_the_advertised_hash(http: httpx.Client) -> None:
    room = first_room(http)
    for item in list(files_of(http, room).values())[:20]:
        response = http.get(f"/v1/files/{item['id']}/content")

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert int(response.headers["content-length"]) == item["size"] == len(response.content)
        assert hashlib.sha256(response.content).hexdigest() == item["hashes"]["sha256"]


def _big_file(http: httpx.Client) -> dict[str, Any]:
    room = first_room(http)
    return max(files_of(http, room).values(), key=lambda item: item["size"])


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-", 10, None),
        ("bytes=-5", -5, None),
        ("bytes=100-199", 100, 199),
        ("bytes=1-99999999999", 1, None),
    ],
)
def test_range_answers_206_with_content_range(
    http: httpx.Client, header: str, start: int, end: int | None
) -> None:
    item = _big_file(http)
    whole = http.get(f"/v1/files/{item['id']}/content").content
    size = len(whole)
    first = start if start >= 0 else size + start
    last = size - 1 if end is None else end

    response = http.get(f"/v1/files/{item['id']}/content", headers={"Range": header})

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert response.content == whole[first : last + 1]
    assert int(response.headers["content-length"]) == last - first + 1


def test_range_beyond_the_end_is_416(http: httpx.Client) -> None:
    item = _big_file(http)
    response = http.get(
        f"/v1/files/{item['id']}/content", headers={"Range": f"bytes={item['size']}-"}
    )

    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{item['size']}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=5-2", "bytes=x-"])
def test_ranges_we_do_not_honour_get_the_whole_file(http: httpx.Client, header: str) -> None:
    item = _big_file(http)
    response = http.get(f"/v1/files/{item['id']}/content", headers={"Range": header})

    assert response.status_code == 200
    assert len(response.content) == item["size"]


def test_if_range_of_another_version_sends_the_whole_file(http: httpx.Client) -> None:
    item = _big_file(http)
    url = f"/v1/files/{item['id']}/content"
    etag = http.get(url, headers={"Range": "bytes=0-0"}).headers["etag"]

    same = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    other = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})

    assert same.status_code == 206 and len(same.content) == 10
    assert other.status_code == 200 and len(other.content) == item["size"]


def test_head_sends_headers_without_body(http: httpx.Client) -> None:
    item = _big_file(http)
    response = http.head(f"/v1/files/{item['id']}/content")

    assert response.status_code == 200
    assert int(response.headers["content-length"]) == item["size"]
    assert response.content == b""


def test_content_of_a_folder_or_unknown_id_is_404(http: httpx.Client) -> None:
    room = first_room(http)
    assert_error(http.get(f"/v1/files/{room['root_folder_id']}/content"), 404)
    assert_error(http.get("/v1/files/fi0123456789/content"), 404)
    assert_error(http.get(f"/v1/folders/{room['id']}/children"), 404)


def operation(response: httpx.Response, kind: str, target: str) -> Operation:
    assert response.status_code == 202, response.text
    result = Operation.model_validate(response.json())
    assert (result.kind, result.target_id, result.state) == (kind, target, "succeeded")
    assert response.headers["location"] == f"/v1/operations/{result.id}"
    return result


def test_trash_restore_and_operations(http: httpx.Client) -> None:
    room = first_room(http)
    url = f"/v1/rooms/{room['id']}"

    trashed = operation(http.post(f"{url}:trash"), "trash", room["id"])
    assert http.get(url).json()["status"] == "trashed"
    assert http.get(f"/v1/operations/{trashed.id}").json() == trashed.model_dump(mode="json")
    operation(http.post(f"{url}:trash"), "trash", room["id"])  # a second click changes nothing

    operation(http.post(f"{url}:restore"), "restore", room["id"])
    restored = http.get(url).json()
    assert restored["status"] == room["status"]
    assert restored["etag"] == room["etag"]


def test_purge_needs_a_trashed_room_and_its_etag(http: httpx.Client) -> None:
    room = first_room(http)
    url = f"/v1/rooms/{room['id']}"

    assert_error(http.post(f"{url}:purge", headers={"If-Match": room["etag"]}), 409, "conflict")
    operation(http.post(f"{url}:trash"), "trash", room["id"])
    assert_error(http.post(f"{url}:purge"), 412, "precondition_failed")
    assert_error(http.post(f"{url}:purge", headers={"If-Match": '"stale"'}), 412)
    assert http.get(url).status_code == 200

    operation(
        http.post(f"{url}:purge", headers={"If-Match": f'"{room["etag"]}"'}), "purge", room["id"]
    )
    assert_error(http.get(url), 404)
    assert room["id"] not in [found["id"] for found in rooms(http)]
    assert_error(http.post(f"{url}:restore"), 404)


def test_item_trash_and_purge_update_the_room(http: httpx.Client) -> None:
    room = first_room(http)
    tree = walk(http, room["root_folder_id"])
    leaf_folder = max(
        (item for item in tree.values() if item["type"] == "folder"),
        key=lambda item: (len(all_items(http, item["id"])) > 0, item["name"]),
    )
    children = all_items(http, leaf_folder["id"])
    victim = next(item for item in children if item["type"] == "file")

    operation(http.post(f"/v1/items/{victim['id']}:trash"), "trash", victim["id"])
    after = http.get(f"/v1/rooms/{room['id']}").json()
    assert victim["id"] not in [item["id"] for item in all_items(http, leaf_folder["id"])]
    assert after["file_count"] == room["file_count"] - 1
    assert after["size"]["deleted_bytes"] == room["size"]["deleted_bytes"] + victim["size"]
    assert after["size"]["active_bytes"] == room["size"]["active_bytes"] - victim["size"]
    assert after["etag"] != room["etag"]
    assert_error(http.get(f"/v1/files/{victim['id']}/content"), 404)

    operation(http.post(f"/v1/items/{victim['id']}:purge"), "purge", victim["id"])
    purged = http.get(f"/v1/rooms/{room['id']}").json()
    assert purged["size"]["deleted_bytes"] == room["size"]["deleted_bytes"]
    assert_error(http.post(f"/v1/items/{victim['id']}:purge"), 404)


def test_folders_are_purged_bottom_up(http: httpx.Client) -> None:
    room = first_room(http)
    folder = next(
        item for item in all_items(http, room["root_folder_id"]) if item["type"] == "folder"
    )
    below = walk(http, folder["id"])

    assert_error(http.post(f"/v1/items/{folder['id']}:purge"), 409, "conflict")
    assert_error(http.post(f"/v1/items/{room['root_folder_id']}:purge"), 409)
    assert_error(http.post(f"/v1/items/{room['root_folder_id']}:trash"), 409)

    deepest_first = sorted(
        below.items(), key=lambda pair: (pair[1]["type"] != "file", -pair[0].count("/"))
    )
    for _, item in deepest_first:
        operation(http.post(f"/v1/items/{item['id']}:purge"), "purge", item["id"])
    operation(http.post(f"/v1/items/{folder['id']}:purge"), "purge", folder["id"])

    after = http.get(f"/v1/rooms/{room['id']}").json()
    files = sum(1 for item in below.values() if item["type"] == "file")
    assert after["file_count"] == room["file_count"] - files
    assert after["folder_count"] == room["folder_count"] - 1 - (len(below) - files)
    assert after["size"]["deleted_bytes"] == 0


def test_unknown_operation_item_and_path(http: httpx.Client) -> None:
    assert_error(http.get("/v1/operations/op-unknown"), 404, "not_found")
    assert_error(http.post("/v1/items/nothing:trash"), 404, "not_found")
    assert_error(http.get("/v1/no/such/path"), 404, "not_found")


def test_wrong_method_is_405_with_allow(http: httpx.Client) -> None:
    room = first_room(http)
    response = http.get(f"/v1/rooms/{room['id']}:trash")

    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    allow = http.delete(f"/v1/rooms/{room['id']}").headers["allow"]
    assert sorted(allow.split(", ")) == ["GET", "HEAD"]


def test_forged_cursors_with_bad_positions_are_400(http: httpx.Client) -> None:
    # The cursor's checksum key is in the source, so anyone can mint a well-formed cursor:
    # what it says must still be checked (a negative offset once meant an endless loop).
    from proxy.backends._common import encode_cursor

    room = first_room(http)
    folder = room["root_folder_id"]
    for payload in (
        {"f": folder, "o": -5},
        {"f": folder, "o": "1"},
        {"f": folder, "o": None},
        {"f": folder, "r": "x", "n": "zz"},
        {"q": "0", "o": -1},
    ):
        cursor = encode_cursor(payload)
        response = http.get(f"/v1/folders/{folder}/children", params={"cursor": cursor})
        assert_error(response, 400, "bad_request")
        assert_error(http.get("/v1/rooms", params={"cursor": cursor}), 400)
