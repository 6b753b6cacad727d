"""Pydantic models of every object in the canonical VDR API (v1).

These are the contract between the proxy (which serves them) and the client (which reads
them); both import them from here so the two can never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

RoomStatus = Literal["active", "archived", "readonly", "preparation", "trashed"]
ItemType = Literal["file", "folder", "other"]
RoomPurgeMode = Literal["native", "by_items", "none"]
OperationKind = Literal["trash", "restore", "purge"]
OperationState = Literal["pending", "running", "succeeded", "failed"]
RoomSort = Literal[
    "name", "-name", "size", "-size", "last_activity", "-last_activity", "created", "-created"
]

ROOM_STATUSES: tuple[str, ...] = ("active", "archived", "readonly", "preparation", "trashed")
ROOM_SORTS: tuple[str, ...] = (
    "name", "-name", "size", "-size", "last_activity", "-last_activity", "created", "-created"
)


class ApiModel(BaseModel):
    """Base of every API object: unknown fields are kept, so a newer proxy never breaks us."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Capabilities(ApiModel):
    hash_algorithms: list[str] = Field(description="Hash algorithms items carry, e.g. sha256.")
    supports_range: bool
    supports_restore: bool
    room_purge: RoomPurgeMode
    max_page_size: int = Field(ge=1)
    download_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a content request may redirect to; the client follows no others.",
    )


class Owner(ApiModel):
    id: str
    name: str
    email: str


class RoomSize(ApiModel):
    active_bytes: int = Field(ge=0)
    deleted_bytes: int = Field(ge=0)
    total_bytes: int = Field(ge=0)


class Room(ApiModel):
    id: str
    name: str
    status: RoomStatus
    owner: Owner
    created_at: datetime
    last_activity_at: datetime
    size: RoomSize
    file_count: int = Field(ge=0)
    folder_count: int = Field(ge=0)
    root_folder_id: str
    etag: str = Field(description="Changes whenever the room's content changes; purge needs it.")


class Item(ApiModel):
    id: str
    type: ItemType
    name: str
    parent_id: str | None
    size: int = Field(ge=0)
    modified_at: datetime
    version: str
    etag: str
    hashes: dict[str, str] = Field(default_factory=dict)


T = TypeVar("T")


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class Operation(ApiModel):
    id: str
    kind: OperationKind
    target_id: str
    state: OperationState
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class ErrorDetail(ApiModel):
    code: str
    message: str
    retry_after_s: float | None = None


class ErrorBody(ApiModel):
    error: ErrorDetail
