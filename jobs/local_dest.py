"""Export into a local folder: temp file, atomic rename, durable before the manifest.

Each file is written under a temp name and renamed into place once complete and verified.
Making it durable costs an fsync, about 4 ms on a typical disk, more than a small file's whole
transfer; so by default the files of a shard are made durable together (`sync`, one syncfs of
the file system) before the shard counts as done, and always before the manifest is written.
A machine that loses power in between may lose recent files' content but never their
verification: a rerun re-hashes every file it finds before trusting it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from jobs import defaults
from jobs.destinations import Expected, Verdict
from jobs.errors import DestinationError, DestinationRefused
from jobs.manifest import ManifestEntry, parse_lines

__all__ = ["LocalDestination"]

log = logging.getLogger("vdr.jobs.local")

_READ_SIZE = 1024 * 1024

_REFUSALS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                       errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP})
"""What a folder answers when it can never take the export as given; a full disk or an I/O
error may pass, and is worth another try."""


class LocalDestination:
    """One room's folder on a local (or mounted) file system."""

    def __init__(self, root: Path, *, sync_each_file: bool = False) -> None:
        self.root = root.absolute()
        self.url = str(self.root)
        self.sync_each_file = sync_each_file
        self._partial = self.root / defaults.PARTIAL_DIR
        self._unsynced: list[Path] = []
        self._lock = threading.Lock()

    def open(self, written_path: str, size: int) -> LocalWriter:
        final = self._final_path(written_path)
        digest = hashlib.sha256(written_path.encode()).hexdigest()[:16]
        temp = self._partial / f"{digest}-{uuid.uuid4().hex[:8]}.part"
        try:
            handle = _create(temp)  # closed by commit or abort
        except OSError as error:
            raise DestinationError(f"cannot write in {self._partial}: {error}") from error
        return LocalWriter(handle, temp, final, fsync=self.sync_each_file, on_commit=self._written)

    def memory_for(self, size: int) -> int:
        return 0  # bytes go straight to the file

    def ranged_part_size(self, size: int) -> int | None:
        """The part size of a file this size written in parts at once (`LocalWriter.write_at`);
        None when it is small enough to stream."""
        return defaults.PART_SIZE if size > defaults.MULTIPART_THRESHOLD else None

    def verify(self, written_path: str, expected: Expected) -> Verdict:
        path = self._final_path(written_path)
        try:
            if not path.is_file() or path.stat().st_size != expected.size:
                return Verdict(False)
            if expected.sha256 is None:
                return Verdict(False)
            return Verdict(_sha256_of(path) == expected.sha256)
        except OSError:
            return Verdict(False)

    def check(self) -> None:
        try:
            self._partial.mkdir(parents=True, exist_ok=True)
            probe = self._partial / f"probe-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            message = f"cannot write in {self.root}: {error.strerror}"
            if error.errno in _REFUSALS:
                raise DestinationRefused(message) from error
            raise DestinationError(message) from error

    def existing_paths(self) -> set[str] | None:
        return None  # a stat per file is as cheap as walking the folder

    def read_manifest(self) -> list[ManifestEntry]:
        try:
            with open(self.root / defaults.MANIFEST_NAME, "rb") as handle:
                return list(parse_lines(handle))
        except FileNotFoundError:
            return []
        except OSError as error:
            log.warning("earlier manifest in %s unreadable: %s", self.root, error)
            return []

    def write_manifest(self, lines: Iterable[bytes]) -> str:
        writer = self.open(defaults.MANIFEST_NAME, 0)
        try:
            for line in lines:
                writer.write(line)
            writer.commit("")
        except BaseException:
            writer.abort()
            raise
        self.sync()
        return str(self.root / defaults.MANIFEST_NAME)

    def make_folders(self, written_paths: Iterable[str]) -> None:
        for written_path in written_paths:
            try:
                self._final_path(written_path).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DestinationError(f"cannot create folder {written_path}: {error}") from error

    def clean_up(self) -> None:
        shutil.rmtree(self._partial, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only if empty: a job that wrote nothing leaves no folder

    def sync(self) -> None:
        """Make every file written so far durable: an fsync each when they are few, else one
        syncfs (which also writes back every other program's dirty pages on the file system:
        worth it for hundreds of small files, not for one large file beside a busy disk)."""
        with self._lock:
            pending, self._unsynced = self._unsynced, []
        if not pending or self.sync_each_file:
            return
        if len(pending) <= defaults.SYNC_ONE_BY_ONE_FILES or not _syncfs(self.root):
            for path in pending:
                _fsync_path(path)
        for folder in {path.parent for path in pending}:
            _fsync_path(folder)  # the renames themselves

    def _written(self, path: Path) -> None:
        with self._lock:
            self._unsynced.append(path)

    def _final_path(self, written_path: str) -> Path:
        path = self.root.joinpath(*written_path.split("/"))
        if os.path.commonpath([self.root, os.path.abspath(path)]) != str(self.root):
            raise DestinationError(f"{written_path!r} would land outside {self.root}")
        return path


class LocalWriter:
    """A file being written under a temp name; renamed into place by `commit`."""

    def __init__(
        self, handle: BinaryIO, temp: Path, final: Path, *, fsync: bool,
        on_commit: Callable[[Path], None],
    ) -> None:
        self._handle = handle
        self._temp = temp
        self._final = final
        self._fsync = fsync
        self._on_commit = on_commit

    def write(self, chunk: bytes) -> None:
        try:
            self._handle.write(chunk)
        except OSError as error:
            raise DestinationError(f"cannot write {self._final}: {error}") from error

    def written(self, offset: int, length: int) -> None:
        """Those bytes are complete: start writing them to disk now (without waiting), so that
        making the file durable at the end has little left to do, and drop them from the page
        cache once on disk (nothing here reads them again)."""
        try:
            os.posix_fadvise(self._handle.fileno(), offset, length, os.POSIX_FADV_DONTNEED)
        except OSError as error:  # advice only: the sync at the end writes whatever is left
            log.debug("no early write-back of %s: %s", self._final, error)

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset` (pwrite: pieces may land in any order, from any thread).
        Not to be mixed with `write`, whose buffered file position this does not move."""
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._handle.fileno(), view, offset)
                view, offset = view[written:], offset + written
        except OSError as error:
            raise DestinationError(f"cannot write {self._final}: {error}") from error

    def commit(self, sha256_hex: str) -> str | None:
        try:
            self._handle.flush()
            if self._fsync:
                os.fsync(self._handle.fileno())
            self._handle.close()
            _move_into_place(self._temp, self._final)
        except OSError as error:
            self.abort()
            raise DestinationError(f"cannot finish {self._final}: {error}") from error
        self._on_commit(self._final)
        return None

    def abort(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass
        self._temp.unlink(missing_ok=True)


def _create(path: Path) -> BinaryIO:
    """A new file; its folder is made only when missing (one syscall less per file)."""
    try:
        return open(path, "xb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")


def _move_into_place(temp: Path, final: Path) -> None:
    """Rename `temp` to `final`, making `final`'s folder only when it is missing."""
    try:
        os.replace(temp, final)
    except FileNotFoundError:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)


def _syncfs(path: Path) -> bool:
    """syncfs(2) on the file system holding `path` (Linux); False where there is none."""
    if _LIBC is None or not hasattr(_LIBC, "syncfs"):
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return bool(_LIBC.syncfs(descriptor) == 0)
    finally:
        os.close(descriptor)


def _fsync_path(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # removed since: nothing left to make durable
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
