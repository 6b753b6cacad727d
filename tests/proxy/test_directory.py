"""The directory backend: hostile names list right, nothing escapes the root, state persists."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy import DirectoryBackend, ProxyServer
from proxy.backends import hostile_names_on_disk
from proxy.backends._base import RoomQuery
from tests.fixtures.proxy import DIRECTORY_ROOM_FILES
from tests.proxy.conftest import all_items, walk

OUTSIDE_SECRET = b"TOP SECRET: this file lives outside the root"
INVALID_UTF8 = os.fsdecode(b"invalid \xff\xfe utf8.bin")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the root, holding a file nothing may serve."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(OUTSIDE_SECRET)
    return folder


@pytest.fixture
def directory(directory_root: Path) -> Iterator[DirectoryBackend]:
    backend = DirectoryBackend(directory_root)
    yield backend
    backend.close()


@pytest.fixture
def http_for(make_proxy: Callable[..., ProxyServer]) -> Iterator[Callable[..., httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(backend: DirectoryBackend) -> httpx.Client:
        client = httpx.Client(base_url=make_proxy(backend).url, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def room_named(http: httpx.Client, name: str) -> dict[str, Any]:
    rooms = http.get("/v1/rooms", params={"limit": 1000}).json()["items"]
    return next(room for room in rooms if room["name"] == name)


def test_content_is_the_bytes_on_disk(
    directory: DirectoryBackend, http_for: Callable[..., httpx.Client]
) -> None:
    http = http_for(directory)
    served = {}
    for room in http.get("/v1/rooms").json()["items"]:
        for path, item in walk(http, room["root_folder_id"]).items():
            if item["type"] == "file":
                content = http.get(f"/v1/files/{item['id']}/content").content
                served[f"{room['name']}/{path}"] = content

    assert served == DIRECTORY_ROOM_FILES


# -- hostile names ------------------------------------------------------------------------------


def test_a_room_of_hostile_names_lists_every_name_exactly(
    directory_root: Path, http_for: Callable[..., httpx.Client]
) -> None:
    files_room = directory_root / "Hostile files"
    folders_room = directory_root / "Hostile folders"
    files_room.mkdir()
    folders_room.mkdir()
    names = hostile_names_on_disk()
    for name in names:
        (files_room / name).write_bytes(name.encode())
        (folders_room / name).mkdir()
        (folders_room / name / "inside.txt").write_bytes(b"inside " + name.encode())
    (files_room / INVALID_UTF8).write_bytes(b"not utf-8")

    http = http_for(DirectoryBackend(directory_root))
    listed = all_items(http, room_named(http, "Hostile files")["root_folder_id"])
    folders = all_items(http, room_named(http, "Hostile folders")["root_folder_id"])

    by_name = {item["name"]: item for item in listed}
    assert len(listed) == len(by_name) == len(names) + 1
    assert set(by_name) == {*names, "invalid \\xff\\xfe utf8.bin"}
    assert {item["name"] for item in folders} == set(names)
    nfc, nfd = (unicodedata.normalize(form, "Café Résumé.pdf") for form in ("NFC", "NFD"))
    assert by_name[nfc]["id"] != by_name[nfd]["id"]
    assert by_name["Report.PDF"]["id"] != by_name["report.pdf"]["id"]
    for name in names:
        content = http.get(f"/v1/files/{by_name[name]['id']}/content").content
        assert content == name.encode()
        assert by_name[name]["hashes"]["sha256"] == hashlib.sha256(name.encode()).hexdigest()
    for folder in folders:
        inside = all_items(http, folder["id"])
        assert [item["name"] for item in inside] == ["inside.txt"]
        assert http.get(f"/v1/files/{inside[0]['id']}/content").content.endswith(
            folder["name"].encode()
        )


def test_the_hostile_set_covers_every_kind(directory_root: Path) -> None:
    names = hostile_names_on_disk()
    assert any(len(name.encode()) == 255 and len(name) < 255 for name in names)
    assert any("\\" in name for name in names) and any("\n" in name for name in names)
    assert any(name.endswith((" ", ".")) for name in names)
    assert {"CON", "NUL", "aux.txt", "..."} <= set(names)


# -- nothing escapes the root -------------------------------------------------------------------


def test_links_leading_out_of_a_room_are_never_served(
    directory_root: Path, outside: Path, http_for: Callable[..., httpx.Client]
) -> None:
    alpha = directory_root / "Project Alpha"
    (alpha / "escape-file").symlink_to(outside / "secret.txt")
    (alpha / "escape-dir").symlink_to(outside, target_is_directory=True)
    (alpha / "escape-relative").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    (alpha / "into-beta").symlink_to(directory_root / "Project Beta" / "NDA.pdf")
    (alpha / "dangling").symlink_to(alpha / "missing")
    (alpha / "inner-link.txt").symlink_to(alpha / "Index.txt")
    (alpha / "inner-dir-link").symlink_to(alpha / "2 Financial", target_is_directory=True)
    (directory_root / "Linked room").symlink_to(outside, target_is_directory=True)
    os.mkfifo(alpha / "a-fifo")

    http = http_for(DirectoryBackend(directory_root))
    room = room_named(http, "Project Alpha")
    top = {item["name"]: item for item in all_items(http, room["root_folder_id"])}

    assert "Linked room" not in [r["name"] for r in http.get("/v1/rooms").json()["items"]]
    for hidden in ("escape-file", "escape-dir", "escape-relative", "into-beta", "dangling"):
        assert hidden not in top
    assert top["inner-link.txt"]["type"] == "file"
    link_body = http.get(f"/v1/files/{top['inner-link.txt']['id']}/content").content
    assert link_body == (alpha / "Index.txt").read_bytes()
    assert top["inner-dir-link"]["type"] == "other"
    assert top["a-fifo"]["type"] == "other"
    for other in ("inner-dir-link", "a-fifo"):
        assert http.get(f"/v1/files/{top[other]['id']}/content").status_code == 404
        assert http.get(f"/v1/folders/{top[other]['id']}/children").status_code == 404

    served = b"".join(
        http.get(f"/v1/files/{item['id']}/content").content
        for item in walk(http, room["root_folder_id"]).values()
        if item["type"] == "file"
    )
    assert OUTSIDE_SECRET not in served


def raw_status(port: int, target: str) -> int:
    """Status of a request sent byte for byte (no client normalises the path first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "target",
    [
        "/v1/files/../../../etc/passwd/content",
        "/v1/files/..%2F..%2F..%2Fetc%2Fpasswd/content",
        "/v1/files/%2Fetc%2Fpasswd/content",
        "/v1/files//etc/passwd/content",
        "/v1/files/..%5C..%5Cwindows/content",
        "/v1/files/%2e%2e/content",
        "/v1/files/a%00b/content",
        "/v1/folders/../children",
        "/v1/folders/%2E%2E%2F%2E%2E/children",
        "/v1/rooms/..",
        "/v1/rooms/%2e%2e%2f.vdr",
        "/v1/files/.vdr%2Fstate.json/content",
        "/v1/items/..%2F..:purge",
    ],
)
def test_traversal_requests_are_refused(
    directory: DirectoryBackend, make_proxy: Callable[..., ProxyServer], target: str
) -> None:
    server = make_proxy(directory)
    assert raw_status(server.port, target) in (400, 404, 405)


def test_guessable_ids_do_not_resolve(
    directory: DirectoryBackend, http_for: Callable[..., httpx.Client]
) -> None:
    http = http_for(directory)
    relpath = b"Project Alpha/Index.txt"
    guesses = [
        "fi" + hashlib.blake2b(relpath, digest_size=12).hexdigest(),
        "fi" + hashlib.sha256(relpath).hexdigest()[:24],
        "fi" + relpath.hex(),
        "Project Alpha",
        "fi" + "0" * 24,
    ]
    for guess in guesses:
        assert http.get(f"/v1/files/{guess}/content").status_code == 404


# -- ids, hashes and state across restarts ------------------------------------------------------


def test_ids_are_stable_across_restarts_and_resolve_without_listing(directory_root: Path) -> None:
    first = DirectoryBackend(directory_root)
    rooms = first.search_rooms(RoomQuery(), None, 100).items
    alpha = next(room for room in rooms if room.name == "Project Alpha")
    files = first.list_children(alpha.root_folder_id, None, 100).items
    first.close()

    second = DirectoryBackend(directory_root)
    assert second.get_room(alpha.id).root_folder_id == alpha.root_folder_id
    index = next(item for item in files if item.name == "Index.txt")
    content = second.open_content(index.id)  # a fresh process, never listed: resolves by walking
    assert b"".join(content.chunks) == (directory_root / "Project Alpha" / "Index.txt").read_bytes()
    assert second.list_children(alpha.root_folder_id, None, 100).items == files
    second.close()


def test_hashes_are_computed_once_per_size_and_mtime(
    directory: DirectoryBackend, directory_root: Path
) -> None:
    path = directory_root / "Project Beta" / "readme.txt"
    beta = next(r for r in directory.search_rooms(RoomQuery(query="beta"), None, 10).items)

    def readme_hash() -> str:
        items = directory.list_children(beta.root_folder_id, None, 100).items
        return next(item for item in items if item.name == "readme.txt").hashes["sha256"]

    original = readme_hash()
    stat = path.stat()
    path.write_bytes(b"BETA\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert readme_hash() == original  # served from the cache: size and mtime are unchanged

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert readme_hash() == hashlib.sha256(b"BETA\n").hexdigest()


def test_room_etag_follows_content_not_status(
    directory: DirectoryBackend, directory_root: Path
) -> None:
    beta = next(r for r in directory.search_rooms(RoomQuery(query="beta"), None, 10).items)
    etag = beta.etag

    directory.trash_room(beta.id)
    directory.restore_room(beta.id)
    assert directory.get_room(beta.id).etag == etag

    (directory_root / "Project Beta" / "new.txt").write_bytes(b"new")
    changed = directory.get_room(beta.id).etag
    assert changed != etag
    (directory_root / "Project Beta" / "new.txt").write_bytes(b"newer")
    os.utime(directory_root / "Project Beta" / "new.txt", ns=(0, 5 * 10**9))
    assert directory.get_room(beta.id).etag != changed


def test_trash_moves_the_room_aside_and_restore_refuses_to_overwrite(
    directory: DirectoryBackend, directory_root: Path
) -> None:
    beta = next(r for r in directory.search_rooms(RoomQuery(query="beta"), None, 10).items)

    directory.trash_room(beta.id)
    assert not (directory_root / "Project Beta").exists()
    assert (directory_root / ".vdr" / "trash" / "rooms" / beta.id / "NDA.pdf").exists()
    assert directory.get_room(beta.id).status == "trashed"

    (directory_root / "Project Beta").mkdir()
    with pytest.raises(Exception, match="exists again"):
        directory.restore_room(beta.id)
    (directory_root / "Project Beta").rmdir()
    directory.restore_room(beta.id)
    assert (directory_root / "Project Beta" / "NDA.pdf").exists()


def test_purge_removes_the_room_from_disk(
    directory: DirectoryBackend, directory_root: Path
) -> None:
    beta = next(r for r in directory.search_rooms(RoomQuery(query="beta"), None, 10).items)
    directory.trash_room(beta.id)
    operation = directory.purge_room(beta.id, beta.etag)

    assert operation.state == "succeeded"
    assert not (directory_root / ".vdr" / "trash" / "rooms" / beta.id).exists()
    assert [room.name for room in directory.search_rooms(RoomQuery(), None, 10).items] == [
        "Project Alpha"
    ]
    again = DirectoryBackend(directory_root)
    assert again.get_operation(operation.id) == operation  # operations survive a restart
    again.close()


def test_the_sidecar_is_hidden_and_owner_status_are_editable(directory_root: Path) -> None:
    backend = DirectoryBackend(directory_root)
    rooms = backend.search_rooms(RoomQuery(), None, 10).items
    backend.close()
    assert ".vdr" not in [room.name for room in rooms]

    state_path = directory_root / ".vdr" / "state.json"
    state = json.loads(state_path.read_text())
    alpha_id = next(room.id for room in rooms if room.name == "Project Alpha")
    state["rooms"][alpha_id]["status"] = "archived"
    state["rooms"][alpha_id]["owner"] = {
        "id": "u-7",
        "name": "Ana Lopez",
        "email": "ana@example.com",
    }
    state_path.write_text(json.dumps(state))

    edited = DirectoryBackend(directory_root)
    alpha = edited.get_room(alpha_id)
    assert (alpha.status, alpha.owner.name) == ("archived", "Ana Lopez")
    assert [room.id for room in edited.search_rooms(RoomQuery(owner="ana@"), None, 10).items] == [
        alpha_id
    ]
    edited.close()


def test_item_trash_moves_the_item_into_the_sidecar(
    directory: DirectoryBackend, directory_root: Path
) -> None:
    beta = next(r for r in directory.search_rooms(RoomQuery(query="beta"), None, 10).items)
    nda = next(
        item
        for item in directory.list_children(beta.root_folder_id, None, 100).items
        if item.name == "NDA.pdf"
    )

    directory.trash_item(nda.id)
    assert not (directory_root / "Project Beta" / "NDA.pdf").exists()
    assert (directory_root / ".vdr" / "trash" / "items" / nda.id).read_bytes().startswith(b"%PDF")
    assert directory.get_room(beta.id).size.deleted_bytes == nda.size

    directory.purge_item(nda.id)
    assert not (directory_root / ".vdr" / "trash" / "items" / nda.id).exists()
    assert directory.get_room(beta.id).size.deleted_bytes == 0


def test_a_root_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not a folder"):
        DirectoryBackend(tmp_path / "missing")
