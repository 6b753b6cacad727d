"""The synthetic backend: deterministic, exact, lazy, realistic, and hostile on request."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from proxy import ProxyServer, RoomSpec, SyntheticBackend
from proxy.backends import ConflictError, hostile_names
from proxy.backends._base import RoomQuery
from proxy.backends.synthetic import BLOCK
from tests.proxy.conftest import all_items, walk


def everything(backend: SyntheticBackend) -> list[Any]:
    return backend.search_rooms(RoomQuery(), None, 1000).items


def listing(backend: SyntheticBackend, folder_id: str) -> list[Any]:
    return backend.list_children(folder_id, None, 1000).items


def content(
    backend: SyntheticBackend, file_id: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join(backend.open_content(file_id, start, end).chunks)


def test_the_same_seed_gives_the_same_rooms_items_and_bytes() -> None:
    first, second = SyntheticBackend(seed=42, rooms=15), SyntheticBackend(seed=42, rooms=15)
    rooms = everything(first)

    assert rooms == everything(second)
    for room in rooms[:3]:
        top = listing(first, room.root_folder_id)
        assert top == listing(second, room.root_folder_id)
        folder = next(item for item in top if item.type == "folder")
        files = [item for item in listing(first, folder.id) if item.type == "file"][:3]
        for item in files:
            assert content(first, item.id) == content(second, item.id)
    assert [room.name for room in everything(SyntheticBackend(seed=43, rooms=15))] != [
        room.name for room in rooms
    ]


def test_rooms_look_like_m_and_a_data_rooms() -> None:
    backend = SyntheticBackend(seed=5, rooms=40)
    rooms = everything(backend)
    room = max(rooms, key=lambda room: room.file_count if room.file_count < 50_000 else 0)
    sections = [
        item.name for item in listing(backend, room.root_folder_id) if item.type == "folder"
    ]
    second_level = listing(backend, listing(backend, room.root_folder_id)[0].id)

    assert all(room.name.startswith("Project ") for room in rooms)
    assert len({room.name for room in rooms}) == len(rooms)
    assert {room.status for room in rooms} >= {"active", "archived"}
    assert any(room.file_count >= 100_000 for room in rooms)
    assert sections[:2] == ["1 Corporate", "2 Financial"]
    assert second_level[0].name.startswith("1.1 ")
    files = [
        item
        for item in walk_backend(backend, room.root_folder_id, limit=400)
        if item.type == "file"
    ]
    extensions = {item.name.rsplit(".", 1)[-1] for item in files}
    assert {"pdf", "xlsx", "docx"} <= extensions
    sizes = sorted(item.size for item in files)
    assert sizes[len(sizes) * 9 // 10] > 5 * sizes[len(sizes) // 10]  # a wide, real spread
    pdf = next(item for item in files if item.name.endswith(".pdf") and item.size > 16)
    assert content(backend, pdf.id, 0, 7) == b"%PDF-1.7"


def walk_backend(backend: SyntheticBackend, folder_id: str, limit: int) -> list[Any]:
    found: list[Any] = []
    pending = [folder_id]
    while pending and len(found) < limit:
        for item in listing(backend, pending.pop()):
            found.append(item)
            if item.type == "folder":
                pending.append(item.id)
    return found


def test_a_room_totals_add_up_exactly_with_spread_sizes(
    make_proxy: Callable[..., ProxyServer],
) -> None:
    spec = RoomSpec("spread", files=3000, mean_size=40_000, folders=120, depth=5)
    server = make_proxy(SyntheticBackend(seed=9, rooms=0, specs=[spec]))
    with httpx.Client(base_url=server.url) as http:
        room = http.get("/v1/rooms").json()["items"][0]
        tree = walk(http, room["root_folder_id"])

    files = [item for item in tree.values() if item["type"] == "file"]
    assert len(files) == 3000 == room["file_count"]
    assert sum(1 for item in tree.values() if item["type"] == "folder") == 120
    assert sum(item["size"] for item in files) == 3000 * 40_000 == room["size"]["total_bytes"]
    assert max(len(path.split("/")) for path in tree) == 6  # five folder levels, then files
    for path, item in tree.items():
        if item["type"] == "folder":
            below = [f for p, f in tree.items() if p.startswith(path + "/") and f["type"] == "file"]
            assert item["size"] == sum(f["size"] for f in below)


def test_bytes_match_the_advertised_sha256_over_http(
    make_proxy: Callable[..., ProxyServer],
) -> None:
    spec = RoomSpec("hashes", files=40, mean_size=300_000, folders=3, depth=2)
    server = make_proxy(SyntheticBackend(seed=3, rooms=0, specs=[spec]))
    with httpx.Client(base_url=server.url) as http:
        room = http.get("/v1/rooms").json()["items"][0]
        files = [
            item for item in walk(http, room["root_folder_id"]).values() if item["type"] == "file"
        ]
        for item in files:
            body = http.get(f"/v1/files/{item['id']}/content").content
            assert len(body) == item["size"]
            assert hashlib.sha256(body).hexdigest() == item["hashes"]["sha256"]

    assert len({item["hashes"]["sha256"] for item in files}) == len(files)


def test_ranges_across_block_boundaries_match_the_whole() -> None:
    backend = SyntheticBackend(
        seed=1, rooms=0, specs=[RoomSpec("big", files=2, file_size=3 * BLOCK + 17, folders=0)]
    )
    item = listing(backend, everything(backend)[0].root_folder_id)[0]
    whole = content(backend, item.id)

    assert len(whole) == 3 * BLOCK + 17
    for start, end in [
        (0, 0),
        (BLOCK - 1, BLOCK),
        (BLOCK, 2 * BLOCK - 1),
        (BLOCK - 5, 3 * BLOCK + 16),
        (3 * BLOCK, None),
        (17, 2 * BLOCK + 3),
    ]:
        last = len(whole) - 1 if end is None else end
        assert content(backend, item.id, start, end) == whole[start : last + 1]


def test_a_million_item_room_lists_quickly_without_building_it() -> None:
    started = time.perf_counter()
    backend = SyntheticBackend(seed=8, rooms=0, specs=[RoomSpec("huge", files=1_000_000)])
    room = everything(backend)[0]
    folder_id = room.root_folder_id
    for _ in range(4):  # down four levels, one page each
        page = backend.list_children(folder_id, None, 200)
        folder_id = next(item.id for item in page.items if item.type == "folder")
    elapsed = time.perf_counter() - started

    assert room.file_count == 1_000_000
    assert room.folder_count == 40_000
    assert room.size.total_bytes == 1_000_000 * 256 * 1024
    assert elapsed < 15  # generous: the machine may be busy; the next line is the proof
    assert len(backend._plans[0].tree._splits) < 100  # only the visited folders were derived


def test_hashes_are_left_out_above_the_limit() -> None:
    backend = SyntheticBackend(
        seed=2,
        rooms=0,
        hash_max_bytes=10_000,
        specs=[RoomSpec("mixed", files=20, mean_size=10_000, folders=0)],
    )
    items = listing(backend, everything(backend)[0].root_folder_id)

    assert backend.capabilities().model_dump()["hash_max_bytes"] == 10_000
    assert any(item.size > 10_000 for item in items)
    for item in items:
        assert bool(item.hashes) is (item.size <= 10_000)


def test_hostile_mode_serves_every_hostile_name_exactly(
    make_proxy: Callable[..., ProxyServer],
) -> None:
    server = make_proxy(SyntheticBackend(seed=4, rooms=2, hostile_names=True))
    with httpx.Client(base_url=server.url) as http:
        rooms = http.get("/v1/rooms").json()["items"]
        hostile = next(room for room in rooms if "Hostile" in room["name"])
        items = all_items(http, hostile["root_folder_id"])

    names = hostile_names()
    assert hostile["name"] == "Project Hostile/..\\Names "
    assert sorted(item["name"] for item in items if item["type"] == "file") == sorted(names)
    assert sorted(item["name"] for item in items if item["type"] == "folder") == sorted(names)
    assert {"", "..", "nul\x00inside.pdf", "board/minutes.pdf"} <= set(names)
    assert any(len(name.encode()) > 255 for name in names)


def test_hostile_mode_sprinkles_hostile_names_into_ordinary_rooms() -> None:
    backend = SyntheticBackend(
        seed=4, rooms=1, hostile_names=True, specs=[RoomSpec("plain", files=600, folders=0)]
    )
    plain = next(room for room in everything(backend) if room.name == "plain")
    names = {item.name for item in backend.list_children(plain.root_folder_id, None, 1000).items}

    assert names & set(hostile_names())


def test_trash_and_purge_last_for_the_process_only(
    synthetic_backend: Callable[..., SyntheticBackend],
) -> None:
    backend = synthetic_backend()
    room = everything(backend)[0]
    backend.trash_room(room.id)
    backend.purge_room(room.id, room.etag)

    assert everything(backend) == []
    assert [r.id for r in everything(synthetic_backend())] == [room.id]


@pytest.mark.parametrize("mode", ["by_items", "none"])
def test_room_purge_modes(synthetic_backend: Callable[..., SyntheticBackend], mode: str) -> None:
    backend = synthetic_backend(
        room_purge=mode, specs=[RoomSpec("tiny", files=2, file_size=10, folders=1, depth=1)]
    )
    room = everything(backend)[0]
    backend.trash_room(room.id)

    assert backend.capabilities().room_purge == mode
    with pytest.raises(ConflictError):
        backend.purge_room(room.id, room.etag)
    for item in sorted(walk_backend(backend, room.root_folder_id, 10), key=lambda i: i.type):
        backend.purge_item(item.id)
    emptied = backend.get_room(room.id)
    assert (emptied.file_count, emptied.folder_count, emptied.size.total_bytes) == (0, 0, 0)
    if mode == "by_items":
        backend.purge_room(room.id, emptied.etag)
        assert everything(backend) == []
    else:
        with pytest.raises(ConflictError):
            backend.purge_room(room.id, emptied.etag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bench-small:files=2000:size=4096", RoomSpec("bench-small", files=2000, file_size=4096)),
        (
            "big:files=1000:mean=10m:depth=3",
            RoomSpec("big", files=1000, mean_size=10 << 20, depth=3),
        ),
        (
            "Deal X:folders=4:status=archived:owner=Ana Lopez",
            RoomSpec("Deal X", folders=4, status="archived", owner="Ana Lopez"),
        ),
    ],
)
def test_room_specs_parse(text: str, expected: RoomSpec) -> None:
    assert RoomSpec.parse(text) == expected


@pytest.mark.parametrize(
    "text", [":files=1", "x:files=many", "x:colour=red", "x:status=gone", "x:size=-1", "x:depth=0"]
)
def test_bad_room_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        RoomSpec.parse(text)


@pytest.mark.parametrize("forged", ["r", "raaaa", "daaaaaaaaaaaaaaa", "f" + "a" * 30, "f0", "f@#!"])
def test_forged_ids_are_404(
    synthetic_backend: Callable[..., SyntheticBackend], forged: str
) -> None:
    backend = synthetic_backend()
    room = everything(backend)[0]
    for call in (
        backend.get_room,
        lambda i: backend.list_children(i, None, 10),
        backend.open_content,
    ):
        with pytest.raises(Exception, match="no "):
            call(forged)
    with pytest.raises(Exception, match="no "):
        backend.open_content(room.root_folder_id)  # a real id of the wrong kind
