"""Backend `directory`: a folder of folders served as a set of rooms, with real files.

Each visible sub-folder of the root is a room. The backend keeps what the file system cannot
hold in a sidecar folder it owns, `<root>/.vdr/` (hidden from every listing):

- `state.json`: a random salt, each room's id, status, owner and first-seen time, the item
  trash and recent operations. Operators may edit a room's `owner` or `status` there.
- `hashes.sqlite`: SHA-256 of each file, keyed by room, path, size and mtime, so a file is
  hashed once until it changes.
- `trash/rooms/<room id>/` and `trash/items/<item id>`: where trash moves things aside.

Ids are opaque: rooms get a random id on first sight; items a keyed hash of (room id, path
inside the room), so they survive restarts and room trash/restore but say nothing usable about
the path. An id resolves only through the backend's own index of what it walked, so an id that
does not name a known item is a 404 whatever it contains. Nothing outside the root is served:
symbolic links are followed only to regular files inside the same room, links to folders are
shown as `other` and never entered, special files are `other` and never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import stat
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from proxy.backends._base import (
    Backend,
    BackendError,
    ConflictError,
    Content,
    InvalidRequest,
    NotFoundError,
    PreconditionError,
    RangeNotSatisfiable,
    RoomQuery,
)
from proxy.backends._common import (
    OperationLog,
    decode_cursor,
    encode_cursor,
    new_id,
    search_page,
    utcnow,
)
from vdr_client import Capabilities, Item, Operation, Owner, Page, Room, RoomSize

SIDECAR = ".vdr"
"""Name of the backend's own folder inside the root; never a room, never listed."""

READ_CHUNK = 256 * 1024
"""Bytes read from disk per chunk when serving content or hashing."""

LISTING_CACHE = 64
"""How many folders' sorted entries are kept between the pages of a listing."""

REINDEX_INTERVAL_S = 2.0
"""An unknown id triggers a fresh walk of every room at most this often."""

_FOLDER, _FILE, _OTHER = "folder", "file", "other"
_ID_PREFIX = {_FOLDER: "fo", _FILE: "fi", _OTHER: "ot"}


@dataclass(frozen=True)
class _Entry:
    """One live item found on disk."""

    item_id: str
    type: str
    raw_name: str  # the directory entry's own name (may hold surrogate escapes)
    relpath: str  # inside the room, '/'-joined raw names; '' for the room's root folder
    path: str  # what to read: the entry, or for an in-room symlink its resolved target
    size: int
    mtime_ns: int

    @property
    def sort_key(self) -> tuple[int, bytes]:
        return (0 if self.type == _FOLDER else 1, os.fsencode(self.raw_name))


def display_name(raw_name: str) -> str:
    """A name fit for JSON: bytes that are not UTF-8 are shown as \\xNN escapes."""
    return os.fsencode(raw_name).decode("utf-8", "backslashreplace")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _classify(path: str, room_real: str) -> tuple[str, str, os.stat_result] | None:
    """(type, path to read, stat) of a directory entry, or None when it must stay hidden."""
    try:
        info = os.lstat(path)
    except OSError:
        return None

    if stat.S_ISLNK(info.st_mode):
        target = os.path.realpath(path)
        if not _inside(target, room_real):
            return None
        try:
            target_info = os.stat(target)
        except OSError:
            return None
        if stat.S_ISREG(target_info.st_mode):
            return _FILE, target, target_info
        return _OTHER, path, info

    if stat.S_ISDIR(info.st_mode):
        return _FOLDER, path, info
    if stat.S_ISREG(info.st_mode):
        return _FILE, path, info
    return _OTHER, path, info


def _etag(entry: _Entry) -> str:
    """Changes whenever the item's size or modification time does."""
    key = f"{entry.item_id}:{entry.size}:{entry.mtime_ns}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


class _FileChunks(Iterator[bytes]):
    """Part of an open file as chunks; `close()` releases it even if never iterated."""

    def __init__(self, handle: BinaryIO, start: int, length: int) -> None:
        self._handle = handle
        self._left = length
        handle.seek(start)

    def __next__(self) -> bytes:
        block = self._handle.read(min(READ_CHUNK, self._left)) if self._left > 0 else b""
        if not block:
            self.close()
            raise StopIteration
        self._left -= len(block)
        return block

    def close(self) -> None:
        self._handle.close()


def _timestamp(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC)


class _HashCache:
    """SHA-256 per (room, path), valid while size and mtime are unchanged; kept in SQLite."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # A cache: losing the last writes in a crash only means hashing those files again.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS hashes (room TEXT, path BLOB, size INTEGER,"
            " mtime_ns INTEGER, sha256 TEXT, PRIMARY KEY (room, path))"
        )
        self._lock = threading.Lock()

    def get(self, room_id: str, relpath: str, size: int, mtime_ns: int) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256 FROM hashes WHERE room=? AND path=? AND size=? AND mtime_ns=?",
                (room_id, os.fsencode(relpath), size, mtime_ns),
            ).fetchone()
        return row[0] if row else None

    def put(self, room_id: str, relpath: str, size: int, mtime_ns: int, digest: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)",
                (room_id, os.fsencode(relpath), size, mtime_ns, digest),
            )

    def forget_room(self, room_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM hashes WHERE room=?", (room_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _State:
    """The sidecar's `state.json`: read once, rewritten atomically after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        data: dict[str, Any] = {}
        if path.exists():
            data = json.loads(path.read_text("utf-8"))
        self.salt: str = data.get("salt") or secrets.token_hex(16)
        self.rooms: dict[str, dict[str, Any]] = data.get("rooms", {})
        self.item_trash: dict[str, dict[str, Any]] = data.get("item_trash", {})
        self.operations: list[dict[str, Any]] = data.get("operations", [])
        if not path.exists():
            self.save()

    def save(self) -> None:
        with self.lock:
            body = {
                "version": 1,
                "salt": self.salt,
                "rooms": self.rooms,
                "item_trash": self.item_trash,
                "operations": self.operations[-1000:],
            }
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(body, indent=1, ensure_ascii=False), "utf-8")
            os.replace(temporary, self.path)


@dataclass
class _RoomStats:
    files: int = 0
    folders: int = 0
    active_bytes: int = 0
    latest_ns: int = 0
    etag_sum: int = 0


class DirectoryBackend(Backend):
    """Rooms are the sub-folders of `root`; see the module docstring for the rules."""

    name = "directory"

    def __init__(self, root: str | os.PathLike[str], *, max_page_size: int = 1000) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InvalidRequest(f"directory backend root {self.root} is not a folder")
        self.max_page_size = max_page_size

        self.sidecar = self.root / SIDECAR
        (self.sidecar / "trash" / "rooms").mkdir(parents=True, exist_ok=True)
        (self.sidecar / "trash" / "items").mkdir(parents=True, exist_ok=True)
        self._state = _State(self.sidecar / "state.json")
        self._hashes = _HashCache(self.sidecar / "hashes.sqlite")
        self._operations = OperationLog()
        for record in self._state.operations:
            self._operations.add(Operation.model_validate(record))

        self._index: dict[str, tuple[str, str]] = {}  # item id -> (room id, relpath)
        self._index_lock = threading.Lock()
        self._listings: OrderedDict[tuple[str, str, int], list[_Entry]] = OrderedDict()
        self._last_reindex = 0.0

    def close(self) -> None:
        self._hashes.close()

    # -- ids and paths ---------------------------------------------------------------------

    def _item_id(self, room_id: str, relpath: str, item_type: str) -> str:
        key = f"{self._state.salt}\x00{room_id}\x00".encode() + os.fsencode(relpath)
        return _ID_PREFIX[item_type] + hashlib.blake2b(key, digest_size=12).hexdigest()

    def _remember(self, item_id: str, room_id: str, relpath: str) -> None:
        with self._index_lock:
            self._index[item_id] = (room_id, relpath)

    def _room_dir(self, room_id: str) -> Path:
        record = self._state.rooms.get(room_id)
        if record is None:  # purged or gone from disk while this request ran
            raise NotFoundError(f"no room {room_id!r}")
        if record["status"] == "trashed":
            return self.sidecar / "trash" / "rooms" / room_id
        return self.root / record["dir"]

    def _room_real(self, room_id: str) -> str:
        return os.path.realpath(self._room_dir(room_id))

    # -- rooms -----------------------------------------------------------------------------

    def _discover_rooms(self) -> list[str]:
        """Sync the sidecar with the root's sub-folders; the ids of every known room."""
        with self._state.lock:
            on_disk = {
                entry.name
                for entry in os.scandir(self.root)
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
            }
            known = {
                record["dir"]: room_id
                for room_id, record in self._state.rooms.items()
                if record["status"] != "trashed"
            }
            changed = False
            for dirname in sorted(on_disk - set(known)):
                self._state.rooms[new_id("rm")] = self._new_room_record(dirname)
                changed = True
            for dirname in set(known) - on_disk:
                del self._state.rooms[known[dirname]]
                changed = True
            for room_id, record in list(self._state.rooms.items()):
                if record["status"] == "trashed" and not self._room_dir(room_id).is_dir():
                    del self._state.rooms[room_id]
                    changed = True
            if changed:
                self._state.save()
            return list(self._state.rooms)

    def _new_room_record(self, dirname: str) -> dict[str, Any]:
        info = os.lstat(self.root / dirname)
        first_seen = min(utcnow(), _timestamp(info.st_mtime_ns))
        return {
            "dir": dirname,
            "status": "active",
            "status_before_trash": None,
            "owner": None,
            "created_at": first_seen.isoformat(),
        }

    def _owner(self, room_id: str) -> Owner:
        record = self._state.rooms[room_id]
        if record.get("owner"):
            return Owner.model_validate(record["owner"])
        uid = os.lstat(self._room_dir(room_id)).st_uid
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid{uid}"
        return Owner(id=f"uid-{uid}", name=user, email=f"{user}@localhost")

    def _walk_stats(self, room_id: str) -> _RoomStats:
        """Counts, bytes, latest change and a content fingerprint of a room, from disk."""
        room_dir = str(self._room_dir(room_id))
        room_real = os.path.realpath(room_dir)
        try:
            stats = _RoomStats(latest_ns=os.lstat(room_dir).st_mtime_ns)
        except OSError as exc:  # moved by a trash or restore running at the same time
            raise NotFoundError(f"no room {room_id!r}") from exc
        for entry in self._walk(room_id, "", room_dir, room_real):
            if entry.type == _FOLDER:
                stats.folders += 1
            elif entry.type == _FILE:
                stats.files += 1
                stats.active_bytes += entry.size
            stats.latest_ns = max(stats.latest_ns, entry.mtime_ns)
            token = f"{entry.type}\x00{entry.size}\x00{entry.mtime_ns}\x00".encode()
            digest = hashlib.blake2b(token + os.fsencode(entry.relpath), digest_size=16)
            stats.etag_sum = (stats.etag_sum + int.from_bytes(digest.digest())) % (1 << 128)
        return stats

    def _walk(self, room_id: str, relpath: str, path: str, room_real: str) -> Iterator[_Entry]:
        """Every live item below a folder, registering their ids (a stack, not recursion:
        a deep tree must not exhaust Python's recursion limit)."""
        pending = [(relpath, path)]
        while pending:
            folder_rel, folder_path = pending.pop()
            for entry in self._scan(room_id, folder_rel, folder_path, room_real):
                yield entry
                if entry.type == _FOLDER:
                    pending.append((entry.relpath, entry.path))

    def _scan(self, room_id: str, relpath: str, path: str, room_real: str) -> list[_Entry]:
        """The live items directly inside one folder, sorted folders first, then by name."""
        entries = []
        try:
            names = os.listdir(path)
        except OSError:
            return []
        folder = _Entry("", _FOLDER, "", relpath, path, 0, 0)
        for raw_name in names:
            entry = self._child(room_id, folder, raw_name, room_real)
            if entry is not None:
                entries.append(entry)
        entries.sort(key=lambda entry: entry.sort_key)
        return entries

    def _child(self, room_id: str, folder: _Entry, raw_name: str, room_real: str) -> _Entry | None:
        """One entry of a folder, read from disk now and registered in the id index."""
        classified = _classify(os.path.join(folder.path, raw_name), room_real)
        if classified is None:
            return None
        item_type, read_path, info = classified
        relpath = f"{folder.relpath}/{raw_name}" if folder.relpath else raw_name
        item_id = self._item_id(room_id, relpath, item_type)
        self._remember(item_id, room_id, relpath)
        size = info.st_size if item_type == _FILE else 0
        return _Entry(item_id, item_type, raw_name, relpath, read_path, size, info.st_mtime_ns)

    def _listing(self, room_id: str, folder: _Entry) -> list[_Entry]:
        """A folder's sorted entries, rescanned only when the folder itself changed (an entry
        added, removed or renamed). Paging a wide folder thus scans it once, not per page;
        the page's own entries are re-read fresh by the caller, so sizes are never stale."""
        key = (room_id, folder.relpath, folder.mtime_ns)
        with self._index_lock:
            cached = self._listings.get(key)
        if cached is not None:
            return cached
        entries = self._scan(room_id, folder.relpath, folder.path, self._room_real(room_id))
        with self._index_lock:
            self._listings[key] = entries
            while len(self._listings) > LISTING_CACHE:
                self._listings.popitem(last=False)
        return entries

    def _room(self, room_id: str) -> Room:
        stats = self._walk_stats(room_id)
        record = self._state.rooms.get(room_id)
        if record is None:
            raise NotFoundError(f"no room {room_id!r}")
        deleted = sum(
            trashed["bytes"]
            for trashed in self._state.item_trash.values()
            if trashed["room_id"] == room_id
        )
        created = datetime.fromisoformat(record["created_at"])
        root_id = self._item_id(room_id, "", _FOLDER)
        self._remember(root_id, room_id, "")
        etag_key = f"{room_id}:{stats.etag_sum:032x}".encode()
        return Room(
            id=room_id,
            name=display_name(record["dir"]),
            status=record["status"],
            owner=self._owner(room_id),
            created_at=created,
            last_activity_at=max(created, _timestamp(stats.latest_ns)),
            size=RoomSize(
                active_bytes=stats.active_bytes,
                deleted_bytes=deleted,
                total_bytes=stats.active_bytes + deleted,
            ),
            file_count=stats.files,
            folder_count=stats.folders,
            root_folder_id=root_id,
            etag=hashlib.blake2b(etag_key, digest_size=16).hexdigest(),
        )

    def _known_room(self, room_id: str) -> None:
        self._discover_rooms()
        if room_id not in self._state.rooms:
            raise NotFoundError(f"no room {room_id!r}")

    # -- items -----------------------------------------------------------------------------

    def _resolve(self, item_id: str) -> tuple[str, _Entry]:
        """The room id and live entry an item id names; NotFoundError otherwise."""
        with self._index_lock:
            known = self._index.get(item_id)
        if known is None and time.monotonic() - self._last_reindex > REINDEX_INTERVAL_S:
            self._reindex()
            with self._index_lock:
                known = self._index.get(item_id)
        if known is None:
            raise NotFoundError(f"no item {item_id!r}")

        room_id, relpath = known
        if room_id not in self._state.rooms:
            raise NotFoundError(f"no item {item_id!r}")
        entry = self._entry_at(room_id, relpath)
        if entry is None or entry.item_id != item_id:
            raise NotFoundError(f"no item {item_id!r}")
        return room_id, entry

    def _entry_at(self, room_id: str, relpath: str) -> _Entry | None:
        room_dir = str(self._room_dir(room_id))
        room_real = os.path.realpath(room_dir)
        if not relpath:
            info = os.lstat(room_dir)
            root_id = self._item_id(room_id, "", _FOLDER)
            return _Entry(root_id, _FOLDER, "", "", room_dir, 0, info.st_mtime_ns)

        path = os.path.join(room_dir, *relpath.split("/"))
        parent_real = os.path.realpath(os.path.dirname(path))
        if not _inside(parent_real, room_real):
            return None  # a folder on the way was swapped for a link leading out
        classified = _classify(path, room_real)
        if classified is None:
            return None
        item_type, read_path, info = classified
        size = info.st_size if item_type == _FILE else 0
        item_id = self._item_id(room_id, relpath, item_type)
        return _Entry(
            item_id, item_type, os.path.basename(path), relpath, read_path, size, info.st_mtime_ns
        )

    def _reindex(self) -> None:
        self._last_reindex = time.monotonic()
        for room_id in self._discover_rooms():
            root_dir = str(self._room_dir(room_id))
            self._remember(self._item_id(room_id, "", _FOLDER), room_id, "")
            for _ in self._walk(room_id, "", root_dir, os.path.realpath(root_dir)):
                pass

    def _sha256(self, room_id: str, entry: _Entry) -> str | None:
        """The file's SHA-256, from the cache when size and mtime are unchanged; None when the
        file cannot be read (the item is still listed; its content answer says why)."""
        cached = self._hashes.get(room_id, entry.relpath, entry.size, entry.mtime_ns)
        if cached:
            return cached
        digest = hashlib.sha256()
        try:
            with open(entry.path, "rb") as handle:
                while block := handle.read(READ_CHUNK):
                    digest.update(block)
        except OSError:
            return None
        hexdigest = digest.hexdigest()
        self._hashes.put(room_id, entry.relpath, entry.size, entry.mtime_ns, hexdigest)
        return hexdigest

    def _folder_bytes(self, room_id: str, entry: _Entry) -> int:
        room_real = self._room_real(room_id)
        walked = self._walk(room_id, entry.relpath, entry.path, room_real)
        return sum(child.size for child in walked if child.type == _FILE)

    def _item(self, room_id: str, entry: _Entry, parent_id: str | None) -> Item:
        size = entry.size
        hashes: dict[str, str] = {}
        if entry.type == _FILE:
            digest = self._sha256(room_id, entry)
            if digest:
                hashes["sha256"] = digest
        elif entry.type == _FOLDER:
            size = self._folder_bytes(room_id, entry)
        return Item(
            id=entry.item_id,
            type=entry.type,
            name=display_name(entry.raw_name),
            parent_id=parent_id,
            size=size,
            modified_at=_timestamp(entry.mtime_ns),
            version=str(entry.mtime_ns),
            etag=_etag(entry),
            hashes=hashes,
        )

    # -- the canonical calls ----------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(
            hash_algorithms=["sha256"],
            supports_range=True,
            supports_restore=True,
            room_purge="native",
            max_page_size=self.max_page_size,
            download_hosts=[],
        )

    def search_rooms(self, query: RoomQuery, cursor: str | None, limit: int) -> Page[Room]:
        rooms = []
        for room_id in self._discover_rooms():
            try:
                rooms.append(self._room(room_id))
            except NotFoundError:
                continue  # purged while the search ran
        return search_page(rooms, query, cursor, limit)

    def get_room(self, room_id: str) -> Room:
        self._known_room(room_id)
        return self._room(room_id)

    def list_children(self, folder_id: str, cursor: str | None, limit: int) -> Page[Item]:
        room_id, folder = self._resolve(folder_id)
        if folder.type != _FOLDER:
            raise NotFoundError(f"no folder {folder_id!r}")

        entries = self._listing(room_id, folder)
        start = 0
        if cursor:
            start = self._cursor_position(cursor, folder_id, entries)
        room_real = self._room_real(room_id)
        page = [
            fresh
            for entry in entries[start : start + limit]
            if (fresh := self._child(room_id, folder, entry.raw_name, room_real)) is not None
        ]

        items = [self._item(room_id, entry, folder_id) for entry in page]
        more = start + len(page) < len(entries)
        next_cursor = None
        if more and page:
            rank, raw = page[-1].sort_key
            next_cursor = encode_cursor({"f": folder_id, "r": rank, "n": raw.hex()})
        return Page[Item](items=items, next_cursor=next_cursor)

    @staticmethod
    def _cursor_position(cursor: str, folder_id: str, entries: list[_Entry]) -> int:
        payload = decode_cursor(cursor)
        if payload.get("f") != folder_id:
            raise InvalidRequest("cursor belongs to a different folder")
        try:
            after = (int(payload["r"]), bytes.fromhex(payload["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest("cursor is not one this server issued") from exc
        return bisect_right([entry.sort_key for entry in entries], after)

    def open_content(self, file_id: str, start: int = 0, end: int | None = None) -> Content:
        room_id, entry = self._resolve(file_id)
        if entry.type != _FILE:
            raise NotFoundError(f"no file {file_id!r}")
        if not _inside(os.path.realpath(entry.path), self._room_real(room_id)):
            raise NotFoundError(f"no file {file_id!r}")

        size = entry.size
        if start >= size and not (start == 0 and size == 0):
            raise RangeNotSatisfiable(f"range starts at {start}, file has {size} bytes")
        last = size - 1 if end is None else min(end, size - 1)
        try:  # opened here, so an unreadable file is an error answer, not a cut body
            handle = open(entry.path, "rb")  # noqa: SIM115 - closed by _FileChunks
        except FileNotFoundError as exc:
            raise NotFoundError(f"no file {file_id!r}") from exc
        except OSError as exc:
            raise BackendError(f"the proxy cannot read this file: {exc.strerror}") from exc
        return Content(
            chunks=_FileChunks(handle, start, last - start + 1),
            total_size=size,
            start=start,
            end=last,
            etag=_etag(entry),
        )

    def trash_room(self, room_id: str) -> Operation:
        with self._state.lock:
            self._known_room(room_id)
            record = self._state.rooms[room_id]
            if record["status"] != "trashed":
                source = self._room_dir(room_id)
                target = self.sidecar / "trash" / "rooms" / room_id
                error = self._move(source, target)
                if error:
                    return self._log("trash", room_id, error)
                record["status_before_trash"] = record["status"]
                record["status"] = "trashed"
                self._state.save()
            return self._log("trash", room_id)

    def restore_room(self, room_id: str) -> Operation:
        with self._state.lock:
            self._known_room(room_id)
            record = self._state.rooms[room_id]
            if record["status"] == "trashed":
                target = self.root / record["dir"]
                if os.path.lexists(target):
                    raise ConflictError(
                        f"cannot restore: a folder named {display_name(record['dir'])!r} "
                        "exists again in the root; rename one of them first"
                    )
                error = self._move(self._room_dir(room_id), target)
                if error:
                    return self._log("restore", room_id, error)
                record["status"] = record.get("status_before_trash") or "active"
                self._state.save()
            return self._log("restore", room_id)

    def purge_room(self, room_id: str, if_match: str | None) -> Operation:
        with self._state.lock:
            self._known_room(room_id)
            if self._state.rooms[room_id]["status"] != "trashed":
                raise ConflictError("only a trashed room can be purged; trash it first")
            etag = self._room(room_id).etag
            if if_match is None:
                raise PreconditionError("purge needs If-Match with the room's etag")
            if if_match not in ("*", etag):
                raise PreconditionError("the room changed since that etag was read")

            try:
                shutil.rmtree(self._room_dir(room_id))
            except OSError as exc:
                return self._log("purge", room_id, f"could not remove the room: {exc}")
            del self._state.rooms[room_id]
            for item_id, trashed in list(self._state.item_trash.items()):
                if trashed["room_id"] == room_id:
                    self._remove_path(self.sidecar / "trash" / "items" / item_id)
                    del self._state.item_trash[item_id]
            self._state.save()
            self._hashes.forget_room(room_id)
            return self._log("purge", room_id)

    def trash_item(self, item_id: str) -> Operation:
        with self._state.lock:
            if item_id in self._state.item_trash:
                return self._log("trash", item_id)
            room_id, entry = self._resolve(item_id)
            if not entry.relpath:
                raise ConflictError("a room's root folder cannot be trashed; trash the room")

            size = entry.size
            if entry.type == _FOLDER:
                size = self._folder_bytes(room_id, entry)
            source = Path(self._room_dir(room_id), *entry.relpath.split("/"))
            error = self._move(source, self.sidecar / "trash" / "items" / item_id)
            if error:
                return self._log("trash", item_id, error)
            self._state.item_trash[item_id] = {
                "room_id": room_id,
                "relpath": entry.relpath,
                "type": entry.type,
                "bytes": size,
            }
            self._state.save()
            return self._log("trash", item_id)

    def purge_item(self, item_id: str) -> Operation:
        with self._state.lock:
            if item_id in self._state.item_trash:
                self._remove_path(self.sidecar / "trash" / "items" / item_id)
                del self._state.item_trash[item_id]
                self._state.save()
                return self._log("purge", item_id)

            room_id, entry = self._resolve(item_id)
            if not entry.relpath:
                raise ConflictError("a room's root folder cannot be purged; purge the room")
            path = Path(self._room_dir(room_id), *entry.relpath.split("/"))
            if entry.type == _FOLDER and any(os.scandir(path)):
                raise ConflictError("folder is not empty; purge its files and folders first")
            try:
                self._remove_path(path)
            except OSError as exc:
                return self._log("purge", item_id, f"could not remove the item: {exc}")
            return self._log("purge", item_id)

    def get_operation(self, operation_id: str) -> Operation:
        return self._operations.get(operation_id)

    # -- helpers for mutations ---------------------------------------------------------------

    @staticmethod
    def _move(source: Path, target: Path) -> str | None:
        try:
            os.rename(source, target)
        except OSError as exc:
            return f"could not move {source.name!r} aside: {exc.strerror}"
        return None

    @staticmethod
    def _remove_path(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()

    def _log(self, kind: str, target_id: str, error: str | None = None) -> Operation:
        operation = self._operations.record(kind, target_id, error=error)
        with self._state.lock:
            self._state.operations.append(operation.model_dump(mode="json"))
            del self._state.operations[:-1000]
            self._state.save()
        return operation
