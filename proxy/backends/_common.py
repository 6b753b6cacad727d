"""Pieces every backend shares: opaque cursors, room search, operation records.

Cursors are opaque to clients but must reject garbage with a 400, not a crash: they carry a
short checksum, so a cursor that was edited, truncated or made up fails to decode.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.backends._base import InvalidRequest, NotFoundError, RoomQuery
from vdr_client import ROOM_SORTS, ROOM_STATUSES, Operation, Page, Room

_CURSOR_KEY = b"vdr-cursor-v1"


def utcnow() -> datetime:
    """Now, timezone-aware, to the second (API timestamps carry no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def encode_cursor(payload: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor carrying `payload`."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    check = hashlib.blake2b(body, key=_CURSOR_KEY, digest_size=6).digest()
    return base64.urlsafe_b64encode(check + body).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The payload of a cursor made by `encode_cursor`; InvalidRequest for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("cursor is not one this server issued") from exc

    check, body = raw[:6], raw[6:]
    if len(raw) < 8 or hashlib.blake2b(body, key=_CURSOR_KEY, digest_size=6).digest() != check:
        raise InvalidRequest("cursor is not one this server issued")

    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("cursor is not one this server issued")
    return payload


def _sort_key(sort: str) -> Callable[[Room], Any]:
    field = sort.lstrip("-")
    if field == "name":
        return lambda room: (room.name.casefold(), room.id)
    if field == "size":
        return lambda room: (room.size.total_bytes, room.id)
    if field == "last_activity":
        return lambda room: (room.last_activity_at, room.id)
    return lambda room: (room.created_at, room.id)


def check_room_query(query: RoomQuery) -> None:
    """Refuse filters the API does not define, naming the bad one."""
    if query.status is not None and query.status not in ROOM_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(ROOM_STATUSES)}")
    if query.sort not in ROOM_SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(ROOM_SORTS)}")
    if query.inactive_days is not None and query.inactive_days < 0:
        raise InvalidRequest("inactive_days must be 0 or more")


def _matches(room: Room, query: RoomQuery, now: datetime) -> bool:
    if query.query and query.query.casefold() not in room.name.casefold():
        return False
    if query.status and room.status != query.status:
        return False
    if query.owner:
        wanted = query.owner.casefold()
        owner = room.owner
        if not any(wanted in field.casefold() for field in (owner.id, owner.name, owner.email)):
            return False
    if query.inactive_days is not None:
        try:
            cutoff = now - timedelta(days=query.inactive_days)
        except OverflowError:  # before the calendar begins: no room is that quiet
            return False
        return room.last_activity_at <= cutoff
    return True


def search_page(
    rooms: Sequence[Room], query: RoomQuery, cursor: str | None, limit: int
) -> Page[Room]:
    """Filter, order and page `rooms` as the canonical room search does.

    The cursor remembers the position reached (offset) and the filters it was made for, so a
    cursor replayed with other filters is refused rather than silently paging something else.
    """
    check_room_query(query)
    fingerprint = hashlib.blake2b(repr(query).encode(), digest_size=6).hexdigest()
    offset = 0
    if cursor:
        payload = decode_cursor(cursor)
        position = payload.get("o")
        if payload.get("q") != fingerprint or not isinstance(position, int) or position < 0:
            raise InvalidRequest("cursor belongs to a different search")
        offset = position

    now = utcnow()
    matching = [room for room in rooms if _matches(room, query, now)]
    matching.sort(key=_sort_key(query.sort), reverse=query.sort.startswith("-"))

    page = matching[offset : offset + limit]
    next_offset = offset + len(page)
    more = next_offset < len(matching)
    next_cursor = encode_cursor({"q": fingerprint, "o": next_offset}) if more else None
    return Page[Room](items=page, next_cursor=next_cursor)


def new_id(prefix: str) -> str:
    """A random opaque id (letters and digits only, so it never clashes with `:action`)."""
    return prefix + secrets.token_hex(10)


class OperationLog:
    """Operations a backend ran, newest kept; they finish synchronously but are still recorded.

    `on_change` lets a backend persist the log (the directory backend writes its sidecar).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def record(self, kind: str, target_id: str, *, error: str | None = None) -> Operation:
        now = utcnow()
        operation = Operation.model_validate(
            {
                "id": new_id("op"),
                "kind": kind,
                "target_id": target_id,
                "state": "failed" if error else "succeeded",
                "error": error,
                "created_at": now,
                "finished_at": now,
            }
        )
        self.add(operation)
        return operation

    def add(self, operation: Operation) -> None:
        with self._lock:
            self._ops[operation.id] = operation
            while len(self._ops) > self._capacity:
                self._ops.popitem(last=False)

    def get(self, operation_id: str) -> Operation:
        with self._lock:
            operation = self._ops.get(operation_id)
        if operation is None:
            raise NotFoundError(f"no operation {operation_id!r}")
        return operation

    def all(self) -> list[Operation]:
        with self._lock:
            return list(self._ops.values())


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """Bytes from '4096', '4k', '1.5m', '10g' or '2MiB' (binary units); ValueError if not."""
    if isinstance(text, int):
        return text
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    number = cleaned.rstrip("kmgt")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
        if not 0 <= value < 2**63:
            raise ValueError(text)
        return int(value)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a size: {text!r} (try 4096, 64k, 1.5m or 10g)") from exc
