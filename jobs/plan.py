"""Planning an export: walk the room's tree concurrently, name everything, cut it into shards."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from jobs import defaults
from jobs.manifest import ManifestEntry
from jobs.naming import assign_names, safe_component
from vdr_client import Item, Room, VdrClient
from vdr_ops import defaults as process_defaults

__all__ = ["ExportSpec", "FileTask", "Tree", "room_folder_name", "split_shards", "walk_tree"]

log = logging.getLogger("vdr.jobs.plan")

Subfolder = tuple[str, str, str]
"""(folder id, original path, written path) of a folder still to list."""

ROOT_RESERVED = (defaults.MANIFEST_NAME, defaults.PARTIAL_DIR)
"""Names the export itself uses at the top of a room's folder; room items never get them."""


class ExportSpec(BaseModel):
    """What one export job does; stored with the job and handed to every task."""

    job_id: str
    room_id: str
    room_name: str
    root_folder_id: str
    room_folder: str = Field(description="Safe folder name of the room under each root.")
    local_root: str | None = None
    s3_url: str | None = None
    requested_by: str
    concurrency: int = defaults.CONCURRENCY
    shard_max_files: int = defaults.SHARD_MAX_FILES
    shard_max_bytes: int = defaults.SHARD_MAX_BYTES
    queue: str = Field(default=process_defaults.QUEUE_NAME, description="RQ queue of its tasks.")
    api_url: str | None = Field(
        default=None, description="The proxy the room was resolved on: room ids are only "
        "unique within one proxy, so workers using another one refuse the job."
    )

    def destination_urls(self) -> list[str]:
        """Where the room lands, as shown to people: local folder and S3 prefix."""
        urls = []
        if self.local_root:
            urls.append(f"{self.local_root.rstrip('/')}/{self.room_folder}")
        if self.s3_url:
            urls.append(f"{self.s3_url.rstrip('/')}/{self.room_folder}")
        return urls


class FileTask(BaseModel):
    """One file to export, with what an earlier run recorded about it."""

    item_id: str
    version: str
    etag: str
    size: int
    original_path: str
    written_path: str
    hashes: dict[str, str] = Field(default_factory=dict)
    known_sha256: str | None = None
    known_s3_checksum: str | None = None
    unseen: list[str] = Field(
        default_factory=list, description="Destinations that held nothing at this path when "
        "the export was planned: no need to ask them again before writing."
    )

    def remember(self, entry: ManifestEntry | None) -> FileTask:
        """This task with the hashes an earlier manifest recorded for the same file version."""
        if entry is None or entry.status == "failed" or entry.sha256 is None:
            return self
        if (entry.version, entry.etag, entry.size) != (self.version, self.etag, self.size):
            return self
        backend_sha = self.hashes.get("sha256")
        if backend_sha and backend_sha != entry.sha256:
            return self  # the earlier run disagrees with the source: trust neither, fetch again
        update = {"known_sha256": entry.sha256, "known_s3_checksum": entry.s3_checksum}
        return self.model_copy(update=update)


@dataclass
class Tree:
    """A room's files and folders with their original and written paths."""

    files: list[FileTask] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(task.size for task in self.files)


def room_folder_name(room: Room) -> str:
    """The room's folder under an export root: its name and id, so two "Falcon"s differ."""
    return safe_component(f"{room.name} [{room.id}]")


def walk_tree(client: VdrClient, root_folder_id: str, *, concurrency: int) -> Tree:
    """List every folder of a room, `concurrency` listings at once; names are made safe."""
    tree = Tree()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="vdr-list") as pool:
        def submit(folder_id: str, original: str, written: str) -> Future[list[Subfolder]]:
            return pool.submit(_list_folder, client, tree, folder_id, original, written)

        pending = {submit(root_folder_id, "", "")}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for folder_id, original, written in future.result():
                    pending.add(submit(folder_id, original, written))
    tree.files.sort(key=lambda task: (task.original_path, task.item_id))
    tree.folders.sort()
    return tree


def _list_folder(
    client: VdrClient, tree: Tree, folder_id: str, original: str, written: str
) -> list[Subfolder]:
    """Add a folder's files to `tree`; return its sub-folders as (id, original, written).

    Runs in several threads at once: list.append is atomic, and the lists are sorted after.
    """
    children = list(client.iter_children(folder_id))
    reserved = ROOT_RESERVED if not written else ()
    names = assign_names(((item.id, item.name) for item in children), reserved=reserved)
    subfolders = []
    for item in children:
        item_original = f"{original}/{item.name}"
        item_written = f"{written}/{names[item.id]}".lstrip("/")
        if item.type == "folder":
            tree.folders.append(item_written)
            subfolders.append((item.id, item_original, item_written))
        elif item.type == "file":
            tree.files.append(_file_task(item, item_original, item_written))
        else:
            tree.skipped.append(item_original)
    return subfolders


def _file_task(item: Item, original: str, written: str) -> FileTask:
    hashes = {algo.lower(): value.lower() for algo, value in item.hashes.items()}
    return FileTask(
        item_id=item.id, version=item.version, etag=item.etag, size=item.size,
        original_path=original, written_path=written, hashes=hashes,
    )


def split_shards(
    tasks: Iterable[FileTask], *, max_files: int, max_bytes: int
) -> list[list[FileTask]]:
    """Consecutive runs of tasks (path order keeps a subtree together), each within limits."""
    shards: list[list[FileTask]] = []
    current: list[FileTask] = []
    current_bytes = 0
    for task in tasks:
        full = len(current) >= max_files or current_bytes + task.size > max_bytes
        if current and full:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(task)
        current_bytes += task.size
    if current:
        shards.append(current)
    return shards


def mark_unseen(tasks: list[FileTask], url: str, present: set[str]) -> None:
    """Note on each task whether destination `url` held anything at its path when planned."""
    for index, task in enumerate(tasks):
        if task.written_path not in present:
            tasks[index] = task.model_copy(update={"unseen": [*task.unseen, url]})


def merge_earlier(
    tasks: list[FileTask], manifests: Iterable[Iterable[ManifestEntry]]
) -> list[FileTask]:
    """Tasks enriched with what earlier manifests say (the first that knows a file wins).

    Pass the S3 manifest first: its entries carry the checksum S3 stored for each object.
    """
    known: dict[str, ManifestEntry] = {}
    for entries in manifests:
        for entry in entries:
            known.setdefault(entry.item_id, entry)
    return [task.remember(known.get(task.item_id)) for task in tasks]

