"""The client against the real proxy over HTTP on 127.0.0.1: paging, downloads, faults,
tokens, deletion, and the redirect rules with a second local server as the storage host."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import DirectoryBackend, FaultConfig, ProxyServer, RoomSpec, SyntheticBackend
from proxy.backends._base import Content
from tests.fixtures.proxy import DIRECTORY_ROOM_FILES
from tests.fixtures.services import free_port
from vdr_client import (
    Capabilities,
    Item,
    NotFound,
    RetryEvent,
    RetryPolicy,
    TransportError,
    Unauthorized,
    UnsafeRedirect,
    VdrClient,
)

MakeProxy = Callable[..., ProxyServer]


def walk(client: VdrClient, folder_id: str) -> Iterator[Item]:
    """Every item below a folder, depth first."""
    for item in client.iter_children(folder_id):
        yield item
        if item.type == "folder":
            yield from walk(client, item.id)


def sha256_of(client: VdrClient, item: Item) -> str:
    digest = hashlib.sha256()
    client.download(item.id, digest.update, expected_size=item.size)
    return digest.hexdigest()


class RetryTally:
    """A thread-safe count of retries by reason, for `on_retry`."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, event: RetryEvent) -> None:
        with self._lock:
            self.reasons[event.reason] += 1


# -- the fault storm -----------------------------------------------------------------------

STORM_FAULTS = FaultConfig(p429=0.05, p5xx=0.05, p_cut=0.02, p_drop=0.01, seed=11,
                           retry_after_s=0.05)
STORM_POLICY = RetryPolicy(attempts=12, base_delay_s=0.02, max_delay_s=0.5, deadline_s=60)
STORM_THREADS = 8


def test_a_10000_item_room_lists_and_downloads_completely_under_faults(
    proxy_process: Callable[..., str],
) -> None:
    # Eight folders of ~1,250 files: listings span several pages of 1,000, so cursors are
    # followed under faults too. Files are small (2 KiB mean) to keep the run short.
    url = proxy_process(
        "--backend", "synthetic", "--seed", "7", "--rooms", "0",
        "--room", "Fault Storm:files=10000:mean=2k:folders=8:depth=2",
        "--p429", "0.05", "--p5xx", "0.05", "--p-cut", "0.02", "--p-drop", "0.01",
        "--fault-seed", "11", "--retry-after", "0.05",
    )
    tally = RetryTally()
    client = VdrClient(url, retry=STORM_POLICY, on_retry=tally, max_connections=STORM_THREADS)
    started = time.monotonic()

    room = client.find_room("Fault Storm")
    items = list(walk(client, room.root_folder_id))
    listed = time.monotonic()
    files = [item for item in items if item.type == "file"]
    with ThreadPoolExecutor(max_workers=STORM_THREADS) as pool:
        digests = list(pool.map(lambda item: sha256_of(client, item), files))
    finished = time.monotonic()
    client.close()

    assert len(files) == room.file_count == 10_000
    assert len(items) - len(files) == room.folder_count
    assert len({item.id for item in items}) == len(items)
    assert sum(item.size for item in files) == room.size.active_bytes
    wrong = [item.name for item, digest in zip(files, digests, strict=True)
             if digest != item.hashes["sha256"]]
    assert wrong == []
    # The faults really happened, and each kind was met by the client's retries.
    for reason in ("429", "cut body", "connection dropped"):
        assert tally.reasons[reason] > 0, reason
    assert tally.reasons["500"] + tally.reasons["503"] > 0
    print(f"\nfault storm: {len(items)} items listed in {listed - started:.1f} s, "
          f"{len(files)} files downloaded in {finished - listed:.1f} s; "
          f"retries {dict(tally.reasons)}")


def test_a_large_file_cut_again_and_again_arrives_whole(
    make_proxy: MakeProxy, synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    spec = RoomSpec("Big File", files=1, file_size=3 * 1024 * 1024, folders=0, depth=1)
    server = make_proxy(synthetic_backend(specs=[spec]))
    tally = RetryTally()
    with VdrClient(server.url, retry=STORM_POLICY, on_retry=tally) as client:
        room = client.find_room("Big File")
        (item,) = [item for item in walk(client, room.root_folder_id) if item.type == "file"]
        server.set_faults(FaultConfig(p_cut=0.6, seed=3))  # only the download is cut

        assert sha256_of(client, item) == item.hashes["sha256"]

    assert tally.reasons["cut body"] > 0
    assert server.faults.counts["cut"] == tally.reasons["cut body"]


# -- real files, tokens, deletion ----------------------------------------------------------


def test_directory_rooms_list_and_download_byte_for_byte(
    make_proxy: MakeProxy, directory_root: Path
) -> None:
    server = make_proxy(DirectoryBackend(directory_root))

    with VdrClient(server.url) as client:
        rooms = {room.name: room for room in client.search_rooms()}
        found: dict[str, bytes] = {}
        for name, room in rooms.items():
            found.update(_download_tree(client, room.root_folder_id, name))

    assert set(rooms) == {"Project Alpha", "Project Beta"}
    assert found == DIRECTORY_ROOM_FILES


def _download_tree(client: VdrClient, folder_id: str, prefix: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for item in client.iter_children(folder_id):
        path = f"{prefix}/{item.name}"
        if item.type == "folder":
            files.update(_download_tree(client, item.id, path))
        elif item.type == "file":
            data = bytearray()
            client.download(item.id, data.extend, expected_size=item.size)
            assert hashlib.sha256(data).hexdigest() == item.hashes["sha256"]
            files[path] = bytes(data)
    return files


def test_the_hostile_names_room_lists_and_downloads_with_every_name_intact(
    make_proxy: MakeProxy, synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    from proxy.backends._hostile import hostile_names

    server = make_proxy(synthetic_backend(specs=[], hostile_names=True))

    with VdrClient(server.url) as client:
        (room,) = list(client.search_rooms())
        found = client.find_room(room.id)
        items = list(walk(client, room.root_folder_id))
        files = [item for item in items if item.type == "file"]
        digests = [sha256_of(client, item) for item in files]

    assert found.name == room.name == "Project Hostile/..\\Names "
    top = [item for item in items if item.parent_id == room.root_folder_id]
    expected = sorted(hostile_names())
    assert sorted(item.name for item in top if item.type == "file") == expected
    assert sorted(item.name for item in top if item.type == "folder") == expected
    assert digests == [item.hashes["sha256"] for item in files]


def test_a_download_resumed_from_an_offset_over_http(
    make_proxy: MakeProxy, directory_root: Path
) -> None:
    server = make_proxy(DirectoryBackend(directory_root))
    expected = DIRECTORY_ROOM_FILES["Project Alpha/2 Financial/Scan.tif"]

    with VdrClient(server.url) as client:
        alpha = client.find_room("alpha")
        (scan,) = [item for item in walk(client, alpha.root_folder_id) if item.name == "Scan.tif"]
        tail = bytearray()
        written = client.download(scan.id, tail.extend, expected_size=scan.size, offset=100_000)

    assert written == len(expected) - 100_000
    assert bytes(tail) == expected[100_000:]


def test_the_token_is_required_and_accepted(
    make_proxy: MakeProxy, synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend(), token="right-token")

    with VdrClient(server.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.capabilities()
    with VdrClient(server.url, "wrong-token") as wrong, pytest.raises(Unauthorized):
        wrong.get_room("anything")
    with VdrClient(server.url, "right-token") as client:
        assert [room.name for room in client.search_rooms()] == ["bench-small"]


def test_trash_restore_and_purge_a_room(
    make_proxy: MakeProxy, synthetic_backend: Callable[..., SyntheticBackend]
) -> None:
    server = make_proxy(synthetic_backend())

    with VdrClient(server.url) as client:
        room = client.find_room("bench-small")
        trashed = client.wait_operation(client.trash_room(room.id).id, timeout_s=10)
        assert trashed.state == "succeeded"
        assert client.get_room(room.id).status == "trashed"
        again = client.wait_operation(client.trash_room(room.id).id, timeout_s=10)
        assert again.state == "succeeded"  # trash is idempotent, so a retried POST is safe

        restored = client.wait_operation(client.restore_room(room.id).id, timeout_s=10)
        assert restored.state == "succeeded"
        assert client.get_room(room.id).status == "active"

        client.wait_operation(client.trash_room(room.id).id, timeout_s=10)
        etag = client.get_room(room.id).etag
        purged = client.wait_operation(client.purge_room(room.id, etag).id, timeout_s=10)
        assert purged.state == "succeeded"
        with pytest.raises(NotFound):
            client.get_room(room.id)


def test_an_unreachable_proxy_is_a_transport_error_quickly() -> None:
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)
    started = time.monotonic()

    with VdrClient(f"http://127.0.0.1:{free_port()}", retry=policy) as client:
        with pytest.raises(TransportError, match="connection refused"):
            client.capabilities()

    assert time.monotonic() - started < 5


# -- redirects to a storage host -----------------------------------------------------------


class Storage:
    """A second local HTTP server standing in for a storage host: serves one blob with Range,
    and records the headers of every request it gets."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.requests: list[dict[str, str]] = []
        self.server = ProxyServer(Starlette(routes=[Route("/blob/{key}", self.serve)]))

    async def serve(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        start = int(request.headers.get("range", "bytes=0-")[6:].rstrip("-") or 0)
        headers = {"ETag": '"blob"', "Content-Length": str(len(self.blob) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}"
        return Response(self.blob[start:], status_code=206 if start else 200, headers=headers)


class RedirectingBackend(SyntheticBackend):
    """A synthetic backend whose content lives elsewhere: every file answers 302."""

    def __init__(self, target: str, hosts: list[str], **kwargs: object) -> None:
        super().__init__(seed=7, rooms=0, specs=[RoomSpec("Redirected", files=1,
                                                          file_size=70_000)], **kwargs)
        self.target = target
        self.hosts = hosts

    def capabilities(self) -> Capabilities:
        return super().capabilities().model_copy(update={"download_hosts": self.hosts})

    def open_content(self, file_id: str, start: int = 0, end: int | None = None) -> Content:
        real = super().open_content(file_id, start, end)
        return Content(iter(()), real.total_size, real.start, real.end, real.etag,
                       redirect_url=self.target)


@pytest.fixture
def storage() -> Iterator[Storage]:
    blob = bytes(range(256)) * 400
    storage = Storage(blob)
    storage.server.start()
    yield storage
    storage.server.stop()


def _the_file(client: VdrClient) -> Item:
    room = client.find_room("Redirected")
    (item,) = [item for item in walk(client, room.root_folder_id) if item.type == "file"]
    return item


def test_a_redirect_to_a_declared_local_host_is_followed_without_our_token(
    make_proxy: MakeProxy, storage: Storage
) -> None:
    host = f"127.0.0.1:{storage.server.port}"
    backend = RedirectingBackend(f"http://{host}/blob/k1?signature=s1", [host])
    server = make_proxy(backend, token="proxy-token")

    with VdrClient(server.url, "proxy-token") as client:
        data = bytearray()
        written = client.download(_the_file(client).id, data.extend)

    assert written == len(storage.blob) and bytes(data) == storage.blob
    assert len(storage.requests) == 1
    assert "authorization" not in storage.requests[0]


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fe80::1]/blob",
    ],
)
def test_a_redirect_to_a_link_local_or_metadata_address_is_refused_even_if_declared(
    make_proxy: MakeProxy, storage: Storage, target: str
) -> None:
    declared = ["169.254.169.254", "[fe80::1]", f"127.0.0.1:{storage.server.port}"]
    server = make_proxy(RedirectingBackend(target, declared))

    with VdrClient(server.url) as client, pytest.raises(UnsafeRedirect):
        client.download(_the_file(client).id, bytearray().extend)


def test_a_redirect_to_an_undeclared_host_is_refused_before_any_request(
    make_proxy: MakeProxy, storage: Storage
) -> None:
    undeclared = f"http://127.0.0.1:{storage.server.port}/blob/k1"
    server = make_proxy(RedirectingBackend(undeclared, ["127.0.0.1:1"]))

    with VdrClient(server.url) as client, pytest.raises(UnsafeRedirect, match="not among"):
        client.download(_the_file(client).id, bytearray().extend)

    assert storage.requests == []


def test_no_attempt_outlasts_the_deadline_even_with_a_long_timeout() -> None:
    # A listening socket that never answers: each request hangs until its timeout.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    policy = RetryPolicy(attempts=10, base_delay_s=0.05, deadline_s=0.6)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()

    with VdrClient(url, retry=policy, timeout_s=30) as client:
        with pytest.raises(TransportError):
            client.capabilities()

    silent.close()
    assert time.monotonic() - started < 3
