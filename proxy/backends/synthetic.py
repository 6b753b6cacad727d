"""Backend `synthetic`: deterministic data rooms of any size, generated lazily from a seed.

Nothing is built up front. A room is a tree of folder *budgets*: a folder knows how many
files, sub-folders and bytes its subtree holds, and splitting a folder derives its children's
budgets from (seed, room, folder position) alone. So a room's totals are known at once, any
folder lists without touching the rest, and a million-item room costs what its visited
folders cost. Files inside a folder get their sizes by a seeded binary cascade over the
folder's byte budget: sizes spread like real documents (log-normal-ish), still add up exactly.

File bytes come from an 8 MiB pool of seeded random bytes: each 256 KiB block of a file is a
slice of the pool chosen by hashing (file, block), prefixed with 16 bytes unique to that block,
and the first block starts with the magic number of the file's type. That serves Range requests
at any offset and runs at memory speed, so a benchmark measures the exporter, not this backend.
SHA-256 hashes are exact, computed on first listing and cached; files larger than
`hash_max_bytes` carry no hash (capabilities say so as `hash_max_bytes`).

Trash, restore and purge of rooms and items change in-memory state only: a purged room or item
is gone for the life of the process and comes back on restart, as generated data should.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from proxy.backends import _words as words
from proxy.backends._base import (
    Backend,
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
    parse_size,
    search_page,
)
from proxy.backends._hostile import hostile_names as _hostile_names
from vdr_client import ROOM_STATUSES, Capabilities, Item, Operation, Owner, Page, Room, RoomSize

BLOCK = 256 * 1024
"""Bytes per generated block; also the chunk size content is streamed in."""

POOL_BYTES = 8 * 1024 * 1024
"""Size of the seeded random pool file blocks are cut from."""

HASH_MAX_BYTES = 64 * 1024 * 1024
"""Files larger than this carry no sha256 in listings (hashing them would dominate listing)."""

MEAN_FILE_SIZE = 256 * 1024
"""Mean file size of a room whose spec names no size."""

_SIZE_SPREAD = 1.3  # log-normal sigma of file sizes within a folder, whatever its width
_NORMAL = NormalDist()
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class RoomSpec:
    """An explicit synthetic room, for tests and benchmarks.

    `file_size` makes every file exactly that size; otherwise sizes spread realistically
    around `mean_size`. `folders` and `depth` shape the tree (defaults: one folder per ~25
    files, depth 4). `names` builds a flat room instead: one file and one folder (holding one
    file) per name — the way to serve an exact list of names, such as the hostile set.
    """

    name: str
    files: int = 2000
    file_size: int | None = None
    mean_size: int = MEAN_FILE_SIZE
    folders: int | None = None
    depth: int | None = None
    status: str = "active"
    owner: str | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.files < 0 or (self.folders or 0) < 0:
            raise ValueError(f"room {self.name!r}: files and folders must be 0 or more")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"room {self.name!r}: depth must be 1 or more")
        if self.file_size is not None and self.file_size < 0:
            raise ValueError(f"room {self.name!r}: size must be 0 or more")
        if self.status not in ROOM_STATUSES:
            raise ValueError(f"room {self.name!r}: status must be one of {ROOM_STATUSES}")

    @classmethod
    def parse(cls, text: str) -> RoomSpec:
        """A spec from the CLI form `name:files=2000:size=4k:folders=80:depth=3:status=...`.

        Keys: files, size (every file), mean (mean size), folders, depth, status, owner.
        """
        name, *pairs = text.split(":")
        if not name:
            raise ValueError(f"room spec {text!r} has no name")
        fields: dict[str, Any] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in ("files", "folders", "depth"):
                fields[key] = int(value)
            elif key in ("size", "mean"):
                fields["file_size" if key == "size" else "mean_size"] = parse_size(value)
            elif key in ("status", "owner"):
                fields[key] = value
            else:
                raise ValueError(
                    f"room spec {text!r}: unknown key {key!r} "
                    "(known: files, size, mean, folders, depth, status, owner)"
                )
        return cls(name=name, **fields)


# -- deterministic randomness ------------------------------------------------------------------


def _mix(key: bytes, *parts: object) -> int:
    """A 64-bit number determined by the key and the parts."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, key=key, digest_size=8).digest(), "big")


def _rng(key: bytes, *parts: object) -> random.Random:
    return random.Random(_mix(key, *parts))


def _share(total: int, weights: Sequence[float], floors: Sequence[int]) -> list[int]:
    """Integers that add up to `total` exactly: each its floor plus a weighted share of the
    rest (largest remainders get the odd units). Integer arithmetic, so no rounding drift."""
    excess = total - sum(floors)
    scaled = [int(weight * (1 << 20)) for weight in weights]
    denominator = sum(scaled)
    if denominator == 0:
        scaled = [1] * len(weights)
        denominator = len(weights)
    parts = [excess * weight // denominator for weight in scaled]
    remainders = sorted(
        range(len(parts)), key=lambda i: (excess * scaled[i]) % denominator, reverse=True
    )
    for i in remainders[: excess - sum(parts)]:
        parts[i] += 1
    return [floor + part for floor, part in zip(floors, parts, strict=True)]


# -- the lazily derived tree -------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    """A folder and the budget of its subtree."""

    path: tuple[int, ...]  # child positions from the room's root folder
    files: int  # files anywhere below
    folders: int  # folders anywhere below, itself not counted
    bytes: int
    depth: int
    label: str  # index number, e.g. "1.2"
    section: int  # top-level section it belongs to (-1: the root)


@dataclass(frozen=True)
class _Split:
    subfolders: tuple[_Folder, ...]
    direct_files: int
    direct_bytes: int

    @property
    def size(self) -> int:
        return len(self.subfolders) + self.direct_files


@dataclass(frozen=True)
class _File:
    name: str
    size: int
    magic: bytes
    seed: int
    modified_at: datetime


class _Tree:
    """A generated due-diligence tree; everything derives from (key, folder path)."""

    def __init__(
        self, key: bytes, spec: RoomSpec, span: tuple[datetime, datetime], hostile: bool
    ) -> None:
        self.key = key
        self.fixed_size = spec.file_size
        mean = spec.mean_size if spec.file_size is None else spec.file_size
        self.min_size = 0 if spec.file_size is not None else min(512, mean // 8)
        folders = spec.folders if spec.folders is not None else max(12, spec.files // 25)
        self.max_depth = spec.depth or 4
        if spec.files == 0 and spec.folders is None:
            folders = 0
        self.root = _Folder((), spec.files, folders, spec.files * mean, 0, "", -1)
        self.span = span
        self.hostile = hostile
        self._splits: OrderedDict[_Folder, _Split] = OrderedDict()
        self._lock = threading.Lock()

    def folder_at(self, path: Sequence[int]) -> _Folder:
        folder = self.root
        for position in path:
            subfolders = self.split(folder).subfolders
            if not 0 <= position < len(subfolders):
                raise NotFoundError("no such folder")
            folder = subfolders[position]
        return folder

    def split(self, folder: _Folder) -> _Split:
        with self._lock:
            cached = self._splits.get(folder)
            if cached is not None:
                self._splits.move_to_end(folder)
                return cached
        result = self._derive(folder)
        with self._lock:
            self._splits[folder] = result
            while len(self._splits) > 50_000:
                self._splits.popitem(last=False)
        return result

    def _subfolder_count(self, folder: _Folder, rng: random.Random) -> int:
        if folder.folders == 0:
            return 0
        if folder.depth + 1 >= self.max_depth:
            return folder.folders  # the last level: every remaining folder sits here
        if folder.depth == 0:
            return min(folder.folders, rng.randint(8, len(words.SECTIONS)))
        if folder.depth == 1:
            subsections = len(words.SECTIONS[folder.section][1])
            return min(folder.folders, rng.randint(3, subsections))
        return min(folder.folders, 1 + int(rng.expovariate(1 / 3)))

    def _derive(self, folder: _Folder) -> _Split:
        rng = _rng(self.key, "split", folder.path)
        count = self._subfolder_count(folder, rng)
        below = _share(
            folder.folders - count, [rng.lognormvariate(0, 1) for _ in range(count)], [0] * count
        )

        direct = folder.files
        if count and folder.depth == 0:
            direct = min(folder.files, rng.randint(0, len(words.ROOT_FILES)))
        elif count:  # most documents sit in leaves; a median of ~20 next to sub-folders
            share = round(folder.files * rng.uniform(0.02, 0.5))
            direct = min(share, int(rng.lognormvariate(3, 1)))
        file_weights = [(sub + 1) * rng.lognormvariate(0, 0.8) for sub in below]
        files = _share(folder.files - direct, file_weights, [0] * count)

        counts = [direct, *files]
        if self.fixed_size is not None:
            budgets = [n * self.fixed_size for n in counts]
        else:
            weights = [n * rng.lognormvariate(0, 0.5) for n in counts]
            budgets = _share(folder.bytes, weights, [n * self.min_size for n in counts])

        subfolders = tuple(
            _Folder(
                path=(*folder.path, position),
                files=files[position],
                folders=below[position],
                bytes=budgets[position + 1],
                depth=folder.depth + 1,
                label=f"{folder.label}.{position + 1}" if folder.label else str(position + 1),
                section=position % len(words.SECTIONS) if folder.depth == 0 else folder.section,
            )
            for position in range(count)
        )
        return _Split(subfolders, direct, budgets[0])

    def folder_name(self, folder: _Folder) -> str:
        if folder.depth == 1:
            return f"{folder.label} {words.SECTIONS[folder.section][0]}"
        position = folder.path[-1]
        subsections = words.SECTIONS[folder.section][1]
        if folder.depth == 2 and position < len(subsections):
            return f"{folder.label} {subsections[position]}"
        choice = _mix(self.key, "folder-name", folder.path) % len(words.DEEP_FOLDERS)
        return f"{folder.label} {words.DEEP_FOLDERS[choice]}"

    def file_size(self, folder: _Folder, split: _Split, index: int) -> int:
        if self.fixed_size is not None:
            return self.fixed_size
        # Neighbours in a cascade have correlated sizes; a seeded affine permutation of the
        # positions scatters them, so one page does not hold only the small ones.
        count = split.direct_files
        stride = _mix(self.key, "stride", folder.path) % count | 1
        while math.gcd(stride, count) != 1:
            stride += 2
        index = (stride * index + _mix(self.key, "shift", folder.path)) % count
        low, high, total = 0, count, split.direct_bytes
        spread = _SIZE_SPREAD / math.sqrt(max(1, (count - 1).bit_length()))  # per halving
        while high - low > 1:
            middle = (low + high) // 2
            unit = (_mix(self.key, "cut", folder.path, low, high) + 0.5) / (1 << 64)
            tilt = spread * _NORMAL.inv_cdf(unit)
            left_weight = (middle - low) * 2.718281828459045**tilt
            right_weight = float(high - middle)
            floors = [(middle - low) * self.min_size, (high - middle) * self.min_size]
            left, right = _share(total, [left_weight, right_weight], floors)
            if index < middle:
                high, total = middle, left
            else:
                low, total = middle, right
        return total

    def file(self, folder: _Folder, split: _Split, index: int) -> _File:
        size = self.file_size(folder, split, index)
        seed = _mix(self.key, "file", folder.path, index)
        name, magic = self._file_name(folder, split, index, size, seed)
        start, end = self.span
        offset = (seed >> 11) % max(1, int((end - start).total_seconds()))
        return _File(name, size, magic, seed, start + timedelta(seconds=offset))

    def _file_name(
        self, folder: _Folder, split: _Split, index: int, size: int, seed: int
    ) -> tuple[str, bytes]:
        if self.hostile and seed % 40 == 0:
            names = _hostile_names()
            return names[(seed >> 8) % len(names)], b""
        if folder.depth == 0 and split.subfolders:
            title = words.ROOT_FILES[index % len(words.ROOT_FILES)]
            return f"00.{index + 1} {title}", words.DOCUMENT_TYPES[0][1]

        position = len(split.subfolders) + index + 1
        number = f"{folder.label}.{position}" if folder.label else str(position)
        year = 2015 + (seed >> 20) % 10
        if size >= 20 * 1024 * 1024:
            extension, magic = words.SCAN_TYPES[(seed >> 4) % len(words.SCAN_TYPES)]
            title = words.SCAN_TITLES[(seed >> 12) % len(words.SCAN_TITLES)]
            return f"{number} {title} {year}-{(seed >> 28) % 9000 + 1000}{extension}", magic

        titles = words.SECTIONS[max(folder.section, 0)][2]
        title = titles[(seed >> 12) % len(titles)]
        pick = (seed >> 36) % sum(weight for _, _, weight in words.DOCUMENT_TYPES)
        for extension, magic, weight in words.DOCUMENT_TYPES:
            if pick < weight:
                return f"{number} {title} {year}{extension}", magic
            pick -= weight
        raise AssertionError("document type weights do not cover the pick")


class _NamedTree(_Tree):
    """A flat room from an exact list of names: one file and one folder (holding one
    'inside.txt') per name, so every name is tried both as a file and as a folder."""

    def __init__(
        self, key: bytes, spec: RoomSpec, span: tuple[datetime, datetime], names: Sequence[str]
    ) -> None:
        self.names = tuple(names)
        size = spec.file_size if spec.file_size is not None else 1000
        flat = RoomSpec(spec.name, files=2 * len(names), file_size=size, folders=len(names))
        super().__init__(key, flat, span, hostile=False)

    def _derive(self, folder: _Folder) -> _Split:
        size = self.fixed_size or 0
        if folder.depth == 1:
            return _Split((), 1, size)
        subfolders = tuple(
            _Folder((position,), 1, 0, size, 1, str(position + 1), 0)
            for position in range(len(self.names))
        )
        return _Split(subfolders, len(self.names), len(self.names) * size)

    def folder_name(self, folder: _Folder) -> str:
        return self.names[folder.path[0]]

    def _file_name(
        self, folder: _Folder, split: _Split, index: int, size: int, seed: int
    ) -> tuple[str, bytes]:
        if folder.depth == 1:
            return "inside.txt", b""
        return self.names[index], b""


# -- ids ---------------------------------------------------------------------------------------

_KIND_PREFIX = {0: "r", 1: "d", 2: "f"}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _varints(numbers: Sequence[int]) -> bytes:
    out = bytearray()
    for number in numbers:
        if number < 0:
            raise ValueError("ids hold no negative numbers")
        while True:
            low, number = number & 0x7F, number >> 7
            out.append(low | (0x80 if number else 0))
            if not number:
                break
    return bytes(out)


def _read_varints(data: bytes) -> list[int]:
    numbers, current, shift = [], 0, 0
    for byte in data:
        current |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
        if not byte & 0x80:
            numbers.append(current)
            current, shift = 0, 0
    if shift:
        raise ValueError("truncated varint")
    return numbers


@dataclass(frozen=True)
class _Ref:
    """What an id names: a room, a folder, or a file (folder path + index)."""

    kind: int  # 0 room, 1 folder, 2 file
    room: int
    path: tuple[int, ...] = ()
    index: int = -1


# -- in-memory state of trash and purge -------------------------------------------------------


@dataclass
class _Deletion:
    state: str  # "trashed" or "purged"
    files: int
    folders: int
    bytes: int


@dataclass
class _RoomState:
    status: str
    before_trash: str | None = None
    purged: bool = False
    version: int = 0
    deletions: dict[tuple[Any, ...], _Deletion] = field(default_factory=dict)
    deleted_children: Counter[tuple[int, ...]] = field(default_factory=Counter)


@dataclass
class _Plan:
    """A room as generated: fixed for a given seed."""

    name: str
    owner: Owner
    created_at: datetime
    last_activity_at: datetime
    tree: _Tree


@functools.lru_cache(maxsize=4)
def _pool(key: bytes) -> bytes:
    """The random bytes file blocks are cut from; immutable, so instances of a seed share it."""
    return random.Random(_mix(key, "pool")).randbytes(POOL_BYTES + BLOCK)


def _default_epoch() -> datetime:
    """The first of the current month (UTC): dates stay deterministic for a month at a time
    while 'inactive for N days' keeps its meaning."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


class SyntheticBackend(Backend):
    """Generated rooms: `rooms` random ones, then `specs`, then (hostile mode) the hostile room.

    `room_purge` picks what capabilities announce: "native" purges any trashed room;
    "by_items" purges a trashed room only once its items are purged; "none" never.
    """

    name = "synthetic"
    content_in_memory = True  # slices of the pool: microseconds, never a wait on I/O

    def __init__(
        self,
        seed: int = 0,
        rooms: int = 12,
        specs: Sequence[RoomSpec] = (),
        *,
        hostile_names: bool = False,
        room_purge: str = "native",
        max_page_size: int = 1000,
        hash_max_bytes: int = HASH_MAX_BYTES,
        epoch: datetime | None = None,
    ) -> None:
        if room_purge not in ("native", "by_items", "none"):
            raise ValueError("room_purge must be native, by_items or none")
        self.seed = seed
        self.key = hashlib.blake2b(f"vdr-synthetic:{seed}".encode(), digest_size=32).digest()
        self.room_purge = room_purge
        self.max_page_size = max_page_size
        self.hash_max_bytes = hash_max_bytes
        self.hostile = hostile_names
        self.epoch = epoch or _default_epoch()

        self._pool = _pool(self.key)
        self._plans: list[_Plan] = []
        self._states: list[_RoomState] = []
        self._generate_rooms(rooms)
        for spec in specs:
            self._add_spec(spec)
        if hostile_names:
            self._add_spec(RoomSpec("Project Hostile/..\\Names ", names=tuple(_hostile_names())))

        self._hashes: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._lock = threading.RLock()
        self._operations = OperationLog()

    # -- generation ------------------------------------------------------------------------

    def _generate_rooms(self, count: int) -> None:
        used: set[str] = set()
        for index in range(count):
            rng = _rng(self.key, "room", index)
            word = words.CODE_NAMES[rng.randrange(len(words.CODE_NAMES))]
            name = f"Project {word}{rng.choice(words.DEAL_SUFFIXES)}"
            while name in used:
                name = f"Project {word} {rng.randint(2, 99)}"
            used.add(name)

            files = int(round(2.718281828459045 ** rng.uniform(6.7, 10.3)))  # ~800 to ~30,000
            if index % 10 == 9:  # one room in ten is a giant: a carve-out, a decade of deals
                files = rng.randint(100_000, 1_000_000)
            spec = RoomSpec(
                name=name,
                files=files,
                mean_size=int(MEAN_FILE_SIZE * rng.lognormvariate(0, 0.5)),
                folders=max(12, int(files / rng.uniform(15, 60))),
                depth=rng.randint(3, 7),
                status=rng.choices(ROOM_STATUSES, weights=(55, 20, 10, 10, 5))[0],
            )
            self._add_spec(spec, rng)

    def _add_spec(self, spec: RoomSpec, rng: random.Random | None = None) -> None:
        index = len(self._plans)
        rng = rng or _rng(self.key, "spec", index, spec.name)
        last = self.epoch - timedelta(days=rng.expovariate(1 / 200), hours=rng.randint(0, 23))
        created = last - timedelta(days=rng.uniform(30, 1500))
        person, local = words.OWNERS[rng.randrange(len(words.OWNERS))]
        if spec.owner:
            person, local = spec.owner, spec.owner.lower().replace(" ", ".")
        owner = Owner(id=f"u-{local}", name=person, email=f"{local}@example.com")

        key = hashlib.blake2b(self.key + index.to_bytes(4, "big"), digest_size=32).digest()
        span = (created, last)
        tree: _Tree
        if spec.names is not None:
            tree = _NamedTree(key, spec, span, spec.names)
        else:
            tree = _Tree(key, spec, span, self.hostile)
        self._plans.append(_Plan(spec.name, owner, created, last, tree))
        self._states.append(_RoomState(status=spec.status))

    # -- ids -------------------------------------------------------------------------------

    def _encode(self, ref: _Ref) -> str:
        numbers = [ref.room, len(ref.path), *ref.path]
        if ref.kind == 2:
            numbers.append(ref.index)
        body = bytes([ref.kind]) + _varints(numbers)
        mac = hashlib.blake2b(body, key=self.key, digest_size=5).digest()
        text = base64.b32encode(body + mac).decode().rstrip("=").lower()
        return _KIND_PREFIX[ref.kind] + text

    def _decode(self, item_id: str, kind: int) -> _Ref:
        """The reference an id carries, if this backend made it for that kind; else 404."""
        missing = NotFoundError(f"no {('room', 'folder', 'file')[kind]} {item_id!r}")
        text = item_id[1:].upper()
        if not item_id.startswith(_KIND_PREFIX[kind]) or not text.isalnum() or not text:
            raise missing
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
            body, mac = raw[:-5], raw[-5:]
            if hashlib.blake2b(body, key=self.key, digest_size=5).digest() != mac:
                raise missing
            room, depth, *rest = _read_varints(body[1:])
            path = tuple(rest[:depth])
            index = rest[depth] if kind == 2 else -1
        except (ValueError, TypeError, IndexError) as exc:
            raise missing from exc

        if body[0] != kind or room >= len(self._plans) or self._states[room].purged:
            raise missing
        return _Ref(kind, room, path, index)

    def _item_ref(self, item_id: str) -> _Ref:
        prefix = item_id[:1]
        kind = {"d": 1, "f": 2}.get(prefix)
        if kind is None:
            raise NotFoundError(f"no item {item_id!r}")
        return self._decode(item_id, kind)

    # -- state queries ---------------------------------------------------------------------

    @staticmethod
    def _key(ref: _Ref) -> tuple[Any, ...]:
        return ("f", ref.path, ref.index) if ref.kind == 2 else ("d", ref.path)

    def _hidden(self, state: _RoomState, ref: _Ref) -> bool:
        """True when the item or a folder above it is trashed or purged."""
        if self._key(ref) in state.deletions:
            return True
        depth = len(ref.path) if ref.kind == 2 else len(ref.path) - 1
        return any(("d", ref.path[:n]) in state.deletions for n in range(1, depth + 1))

    @staticmethod
    def _deleted_inside(state: _RoomState, path: tuple[int, ...]) -> tuple[int, int, int]:
        files = folders = size = 0
        for key, deletion in state.deletions.items():
            inner = key[1]
            if inner[: len(path)] == path and (key[0] == "f" or len(inner) > len(path)):
                files += deletion.files
                folders += deletion.folders
                size += deletion.bytes
        return files, folders, size

    def _resolve_folder(self, ref: _Ref) -> _Folder:
        state = self._states[ref.room]
        if ref.path and self._hidden(state, ref):
            raise NotFoundError("no such folder")
        return self._plans[ref.room].tree.folder_at(ref.path)

    def _resolve_file(self, ref: _Ref) -> tuple[_Folder, _File]:
        state = self._states[ref.room]
        tree = self._plans[ref.room].tree
        folder = tree.folder_at(ref.path)
        split = tree.split(folder)
        if not 0 <= ref.index < split.direct_files or self._hidden(state, ref):
            raise NotFoundError("no such file")
        return folder, tree.file(folder, split, ref.index)

    # -- building API objects ---------------------------------------------------------------

    def _room(self, index: int) -> Room:
        plan, state = self._plans[index], self._states[index]
        root = plan.tree.root
        gone_files, gone_folders, gone_bytes = self._deleted_inside(state, ())
        trashed = sum(d.bytes for d in state.deletions.values() if d.state == "trashed")
        active = root.bytes - gone_bytes
        etag = _mix(self.key, "room-etag", index, state.version)
        return Room(
            id=self._encode(_Ref(0, index)),
            name=plan.name,
            status=state.status,
            owner=plan.owner,
            created_at=plan.created_at,
            last_activity_at=plan.last_activity_at,
            size=RoomSize(active_bytes=active, deleted_bytes=trashed, total_bytes=active + trashed),
            file_count=root.files - gone_files,
            folder_count=root.folders - gone_folders,
            root_folder_id=self._encode(_Ref(1, index)),
            etag=f"{etag:016x}",
        )

    def _folder_item(self, room: int, folder: _Folder, parent_id: str) -> Item:
        state = self._states[room]
        _, _, gone = self._deleted_inside(state, folder.path)
        item_id = self._encode(_Ref(1, room, folder.path))
        plan = self._plans[room]
        return Item(
            id=item_id,
            type="folder",
            name=plan.tree.folder_name(folder),
            parent_id=parent_id,
            size=folder.bytes - gone,
            modified_at=plan.last_activity_at,
            version="1",
            etag=f"{_mix(self.key, 'folder-etag', item_id, state.version):016x}",
        )

    def _file_item(self, ref: _Ref, file: _File, parent_id: str | None) -> Item:
        item_id = self._encode(ref)
        hashes = {}
        if file.size <= self.hash_max_bytes:
            hashes["sha256"] = self._sha256(file)
        return Item(
            id=item_id,
            type="file",
            name=file.name,
            parent_id=parent_id,
            size=file.size,
            modified_at=file.modified_at,
            version="1",
            etag=f"{_mix(self.key, 'file-etag', item_id):016x}",
            hashes=hashes,
        )

    # -- bytes -----------------------------------------------------------------------------

    def _block(self, file: _File, number: int, skip: int = 0, take: int = BLOCK) -> bytes:
        """Bytes `skip` to `take` of the file's block `number`: a head unique to the block,
        then pool bytes at the block's offset. Only the part asked for is copied, so a 4 KiB
        file costs a 4 KiB slice, not a 256 KiB one."""
        tag = hashlib.blake2b(
            file.seed.to_bytes(8, "big") + number.to_bytes(8, "big"), digest_size=16
        ).digest()
        offset = (int.from_bytes(tag[:8], "big") % (POOL_BYTES // 8)) * 8
        head = file.magic + tag if number == 0 else tag
        if skip >= len(head):
            return self._pool[offset + skip : offset + take]
        return head[skip:take] + self._pool[offset + len(head) : offset + take]

    def _stream(self, file: _File, start: int, length: int) -> Iterator[bytes]:
        position, end = start, start + length
        while position < end:
            number, skip = divmod(position, BLOCK)
            take = min(BLOCK, end - number * BLOCK)
            yield self._block(file, number, skip, take)
            position = number * BLOCK + take

    def _sha256(self, file: _File) -> str:
        key = (file.seed, file.size)
        with self._lock:
            cached = self._hashes.get(key)
        if cached:
            return cached
        digest = hashlib.sha256()
        for chunk in self._stream(file, 0, file.size):
            digest.update(chunk)
        hexdigest = digest.hexdigest()
        with self._lock:
            self._hashes[key] = hexdigest
            while len(self._hashes) > 200_000:
                self._hashes.popitem(last=False)
        return hexdigest

    # -- the canonical calls ----------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities.model_validate(
            {
                "hash_algorithms": ["sha256"],
                "supports_range": True,
                "supports_restore": True,
                "room_purge": self.room_purge,
                "max_page_size": self.max_page_size,
                "download_hosts": [],
                "hash_max_bytes": self.hash_max_bytes,
            }
        )

    def search_rooms(self, query: RoomQuery, cursor: str | None, limit: int) -> Page[Room]:
        with self._lock:
            rooms = [
                self._room(index) for index, state in enumerate(self._states) if not state.purged
            ]
        return search_page(rooms, query, cursor, limit)

    def get_room(self, room_id: str) -> Room:
        ref = self._decode(room_id, 0)
        with self._lock:
            return self._room(ref.room)

    def list_children(self, folder_id: str, cursor: str | None, limit: int) -> Page[Item]:
        ref = self._decode(folder_id, 1)
        offset = 0
        if cursor:
            payload = decode_cursor(cursor)
            if payload.get("f") != folder_id or not _is_count(payload.get("o")):
                raise InvalidRequest("cursor belongs to a different folder")
            offset = payload["o"]

        with self._lock:
            folder = self._resolve_folder(ref)
            tree, state = self._plans[ref.room].tree, self._states[ref.room]
            split = tree.split(folder)
            refs, offset = self._live_children(state, ref, split, offset, limit)
            folders = [
                self._folder_item(ref.room, split.subfolders[child.path[-1]], folder_id)
                for child in refs
                if child.kind == 1
            ]
        files = [
            self._file_item(child, tree.file(folder, split, child.index), folder_id)
            for child in refs
            if child.kind == 2
        ]
        next_cursor = encode_cursor({"f": folder_id, "o": offset}) if offset < split.size else None
        return Page[Item](items=folders + files, next_cursor=next_cursor)

    def _live_children(
        self, state: _RoomState, ref: _Ref, split: _Split, offset: int, limit: int
    ) -> tuple[list[_Ref], int]:
        """Up to `limit` children not deleted, from `offset`; and the offset after them
        (moved past any deleted run, so a last page is not followed by an empty one)."""
        count = len(split.subfolders)
        found: list[_Ref] = []
        while offset < split.size:
            child = (
                _Ref(1, ref.room, (*ref.path, offset))
                if offset < count
                else _Ref(2, ref.room, ref.path, offset - count)
            )
            if self._key(child) not in state.deletions:
                if len(found) == limit:
                    break
                found.append(child)
            offset += 1
        return found, offset

    def open_content(self, file_id: str, start: int = 0, end: int | None = None) -> Content:
        ref = self._decode(file_id, 2)
        with self._lock:
            _, file = self._resolve_file(ref)
        if start >= file.size and not (start == 0 and file.size == 0):
            raise RangeNotSatisfiable(f"range starts at {start}, file has {file.size} bytes")
        last = file.size - 1 if end is None else min(end, file.size - 1)
        return Content(
            chunks=self._stream(file, start, last - start + 1),
            total_size=file.size,
            start=start,
            end=last,
            etag=f"{_mix(self.key, 'file-etag', file_id):016x}",
        )

    def trash_room(self, room_id: str) -> Operation:
        ref = self._decode(room_id, 0)
        with self._lock:
            state = self._states[ref.room]
            if state.status != "trashed":
                state.before_trash, state.status = state.status, "trashed"
        return self._operations.record("trash", room_id)

    def restore_room(self, room_id: str) -> Operation:
        ref = self._decode(room_id, 0)
        with self._lock:
            state = self._states[ref.room]
            if state.status == "trashed":
                state.status = state.before_trash or "archived"
        return self._operations.record("restore", room_id)

    def purge_room(self, room_id: str, if_match: str | None) -> Operation:
        ref = self._decode(room_id, 0)
        with self._lock:
            state = self._states[ref.room]
            room = self._room(ref.room)
            if self.room_purge == "none":
                raise ConflictError("this backend cannot purge rooms; purge their items")
            if state.status != "trashed":
                raise ConflictError("only a trashed room can be purged; trash it first")
            if if_match is None:
                raise PreconditionError("purge needs If-Match with the room's etag")
            if if_match not in ("*", room.etag):
                raise PreconditionError("the room changed since that etag was read")
            if self.room_purge == "by_items" and room.file_count + room.folder_count:
                raise ConflictError("purge the room's items first (this backend purges by items)")
            state.purged = True
        return self._operations.record("purge", room_id)

    def trash_item(self, item_id: str) -> Operation:
        ref = self._item_ref(item_id)
        with self._lock:
            state = self._states[ref.room]
            existing = state.deletions.get(self._key(ref))
            if existing is None:
                self._delete(ref, "trashed")
            elif existing.state == "purged":
                raise NotFoundError(f"no item {item_id!r}")
        return self._operations.record("trash", item_id)

    def purge_item(self, item_id: str) -> Operation:
        ref = self._item_ref(item_id)
        with self._lock:
            state = self._states[ref.room]
            existing = state.deletions.get(self._key(ref))
            if existing is not None and existing.state == "purged":
                raise NotFoundError(f"no item {item_id!r}")
            if existing is not None:
                existing.state = "purged"
                state.version += 1
            else:
                self._check_purgeable(ref)
                self._delete(ref, "purged")
        return self._operations.record("purge", item_id)

    def _check_purgeable(self, ref: _Ref) -> None:
        if ref.kind == 1:
            if not ref.path:
                raise ConflictError("a room's root folder cannot be purged; purge the room")
            split = self._plans[ref.room].tree.split(self._resolve_folder(ref))
            if split.size > self._states[ref.room].deleted_children[ref.path]:
                raise ConflictError("folder is not empty; purge its files and folders first")

    def _delete(self, ref: _Ref, how: str) -> None:
        """Record a trash or purge, counting only what no earlier deletion already took."""
        state = self._states[ref.room]
        if ref.kind == 2:
            _, file = self._resolve_file(ref)
            deletion = _Deletion(how, 1, 0, file.size)
            parent = ref.path
        else:
            if not ref.path:
                raise ConflictError("a room's root folder cannot be trashed; trash the room")
            folder = self._resolve_folder(ref)
            files, folders, size = self._deleted_inside(state, folder.path)
            deletion = _Deletion(
                how, folder.files - files, folder.folders + 1 - folders, folder.bytes - size
            )
            parent = ref.path[:-1]
        state.deletions[self._key(ref)] = deletion
        state.deleted_children[parent] += 1
        state.version += 1

    def get_operation(self, operation_id: str) -> Operation:
        return self._operations.get(operation_id)
