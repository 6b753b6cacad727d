"""Large files in parallel ranges: each part downloaded, hashed, written and uploaded on its own.

The streamed path (`jobs.transfer`) pushes every byte of a file through one thread: receive,
hash, write, cut into parts; S3 then hashes each part again for its checksum and once more to
sign it. For a file of gigabytes that serial chain, not the network, sets the pace. When the
source serves ranges, a large file is instead cut into parts (the S3 part size), up to
`RANGED_PARTS_IN_FLIGHT` at once, and each part is

1. downloaded as one span of the file into a buffer of its own (the client resumes inside it),
   in one of the source's download slots, from the same version of the file as every other part
   (the ETags must agree); each chunk, while still in the CPU's cache, also written at its
   offset into the local temp file and added to the part's SHA-256 (its S3 ChecksumSHA256,
   which also signs its upload);
2. uploaded as S3 part N from the buffer;
3. folded, in file order, into the whole file's SHA-256 (and the source's own algorithm).

Each byte is hashed twice at most (its part, when S3 takes it; the whole file), and hashlib
releases the GIL, so the hashing runs beside the network and beside the fold. Writing a chunk
as it arrives, rather than the whole part once it is in, costs the kernel a third of the CPU:
a part of 8 MiB has left the cache by the time it would be copied.

A part waits for its turn to fold, so at most K buffers exist. Each is reserved in the
`ByteBudget` before its download, in file order: the part whose turn it is always holds its
memory, so files sharing the budget cannot starve one another. Only once every part is folded
and the size and hashes match the source are the destinations committed (S3 first, as in the
streamed path); a failure or cancel first waits for the parts in flight, then aborts every
destination: no partial object, no open multipart upload, no temp file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jobs import defaults
from jobs._hashing import verified_sha256
from jobs.destinations import Destination
from jobs.errors import Cancelled, DestinationError
from jobs.flow import AdaptiveLimit, ByteBudget
from jobs.local_dest import LocalDestination
from jobs.plan import FileTask
from vdr_client import (
    BadRequest,
    NotFound,
    Unauthorized,
    VdrClient,
    VdrError,
    VersionChanged,
    VersionPin,
)

__all__ = ["FileWriter", "Part", "PartWriter", "RangedMove", "part_size_for", "plan_parts"]

log = logging.getLogger("vdr.jobs.ranged")

_FINAL_ERRORS = (NotFound, Unauthorized, BadRequest, VersionChanged)
"""Errors another attempt at a part cannot fix (a changed file needs all its parts afresh)."""

_WAIT_S = 0.2
"""Longest a thread waits for a slot or its turn before looking whether the move halted."""


@runtime_checkable
class PartWriter(Protocol):
    """A destination's writer that takes an object in numbered parts, in any order (S3)."""

    def begin_parts(self) -> None:
        """Prepare to take parts (start the multipart upload)."""

    def write_part(self, number: int, data: bytes | bytearray, sha256: bytes) -> None:
        """Store part `number` (1-based); `sha256` is the part's digest."""

    def commit_parts(self, sha256_hex: str) -> str | None:
        """Make the object visible under its final name; its checksum."""

    def abort(self) -> None:
        """Drop everything written so far; never raises."""


@runtime_checkable
class FileWriter(Protocol):
    """A destination's writer that takes bytes at any offset, from any thread (a local file)."""

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset`."""

    def written(self, offset: int, length: int) -> None:
        """Those bytes are all in: the file may start making them durable."""

    def commit(self, sha256_hex: str) -> str | None:
        """Make the file visible under its final name."""

    def abort(self) -> None:
        """Drop everything written so far; never raises."""


@dataclass(frozen=True)
class Part:
    """One range of a file: S3 part `number` (1-based), `length` bytes from `offset`."""

    number: int
    offset: int
    length: int


def plan_parts(size: int, part_size: int) -> list[Part]:
    """The parts of a file of `size` bytes; the last one may be shorter."""
    starts = range(0, size, part_size)
    return [Part(n, start, min(part_size, size - start)) for n, start in enumerate(starts, 1)]


def part_size_for(client: VdrClient, size: int, destinations: Sequence[Destination]) -> int | None:
    """The part size to move a file of `size` bytes in ranges; None when it should stream.

    Remote destinations decide: their part size shapes the object's composite checksum, and a
    file they take in one PUT must stream. A local folder takes parts of any size, so it decides
    only when it is the only destination. The source must serve ranges too."""
    remote = [dest for dest in destinations if not isinstance(dest, LocalDestination)]
    sizes = [_ranged_part_size(dest, size) for dest in remote or destinations]
    if not sizes or None in sizes or not client.capabilities().supports_range:
        return None
    return max(part for part in sizes if part is not None)


def _ranged_part_size(dest: Destination, size: int) -> int | None:
    ranged_part_size = getattr(dest, "ranged_part_size", None)  # None: it cannot take parts
    return None if ranged_part_size is None else ranged_part_size(size)


class RangedMove:
    """One file moved in parallel ranges to destinations that take numbered parts."""

    def __init__(
        self,
        client: VdrClient,
        task: FileTask,
        destinations: Sequence[Destination],
        *,
        part_size: int,
        hashers: dict[str, hashlib._Hash],
        budget: ByteBudget,
        source_limit: AdaptiveLimit,
        stop: threading.Event,
        on_bytes: Callable[[FileTask, int], None],
        on_retry: Callable[[FileTask, str], None],
        parts_in_flight: int = defaults.RANGED_PARTS_IN_FLIGHT,
        part_attempts: int = defaults.PART_ATTEMPTS,
    ) -> None:
        self.client = client
        self.task = task
        # Remote destinations first: when S3 refuses at the end, the local file is not yet in
        # place either, so every destination holds the file or none does.
        self.destinations = sorted(destinations, key=lambda dest: dest.memory_for(1) == 0)
        self.parts = plan_parts(task.size, part_size)
        self.hashers = hashers
        self.budget = budget
        self.source_limit = source_limit
        self.stop = stop
        self.on_retry = on_retry
        self.parts_in_flight = parts_in_flight
        self.part_attempts = part_attempts
        self._objects: list[PartWriter] = []  # take whole parts (S3), committed first
        self._files: list[FileWriter] = []  # take each chunk as it arrives (local)
        self._slots = threading.Semaphore(parts_in_flight)
        self._turn = threading.Condition()
        self._next_fold = 1  # number of the part whose turn it is to be folded
        self._folded = 0  # bytes folded into the hashes
        self._failure: BaseException | None = None
        self._halt = threading.Event()  # a part failed: the others stop at their next step
        self._progress = _Progress(task, on_bytes)
        self._version = VersionPin()

    def run(self) -> tuple[str, list[str | None]]:
        """Move the file; its SHA-256 and each destination's S3 checksum (None for local).

        Raises what made a part fail for good (VdrError, JobsError), Cancelled when stopped."""
        if self.stop.is_set():
            raise Cancelled("stopped before download")
        try:
            self._open_writers()
            self._move_parts()
            sha256 = verified_sha256(self.task, self._folded, self.hashers)
            checksums = [writer.commit_parts(sha256) for writer in self._objects]
            return sha256, checksums + [writer.commit(sha256) for writer in self._files]
        except BaseException:
            writers: list[PartWriter | FileWriter] = [*self._objects, *self._files]
            for writer in writers:
                writer.abort()
            raise

    def _open_writers(self) -> None:
        for dest in self.destinations:
            writer = dest.open(self.task.written_path, self.task.size)
            if isinstance(writer, PartWriter):
                self._objects.append(writer)
                writer.begin_parts()
            elif isinstance(writer, FileWriter):
                self._files.append(writer)
            else:
                writer.abort()
                raise DestinationError(f"{dest.url} cannot take a file in parts")

    def _move_parts(self) -> None:
        """Every part through its steps, K at once; returns once none is running any more."""
        with ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="vdr-part") as pool:
            try:
                for part in self.parts:
                    reserved = self._reserve(part)
                    if reserved is None:
                        break
                    pool.submit(self._move_part, part, reserved)
            except BaseException as error:
                self._fail(error)
                raise
        if self._failure is not None:
            raise self._failure
        if self.stop.is_set():
            raise Cancelled("stopped mid-file")

    def _reserve(self, part: Part) -> int | None:
        """A slot and the part's bytes in the budget; None once the move halted."""
        while not self._slots.acquire(timeout=_WAIT_S):
            if self._halted():
                return None
        reserved = self.budget.acquire(part.length, self.stop)
        if reserved == 0 or self._halted():
            self.budget.release(reserved)
            self._slots.release()
            return None
        return reserved

    def _move_part(self, part: Part, reserved: int) -> None:
        try:
            data = self._fetch_and_store(part)
            self._fold_in_turn(part, data)
        except BaseException as error:
            self._fail(error)
        finally:
            self.budget.release(reserved)
            self._slots.release()

    def _fetch_and_store(self, part: Part) -> bytearray:
        for attempt in range(1, self.part_attempts + 1):
            try:
                data, digest = self._fetch(part)
                for writer in self._objects:
                    writer.write_part(part.number, data, digest)
                return data
            except (Cancelled, *_FINAL_ERRORS):
                raise
            except VdrError as error:  # destinations retry on their own (boto3, the disk none)
                if attempt == self.part_attempts or self._halted():
                    raise
                self._retry(part, attempt, error)
        raise AssertionError("unreachable")

    def _fetch(self, part: Part) -> tuple[bytearray, bytes]:
        """The part's bytes, in a buffer of exactly its length (the client writes no more),
        and their SHA-256 when an object store needs it; written to the files on the way."""
        buffer = bytearray(part.length)
        view = memoryview(buffer)
        part_hash = hashlib.sha256() if self._objects else None
        filled = 0

        def write(chunk: bytes) -> None:
            nonlocal filled
            if self._halted():
                raise Cancelled("stopped mid-file")
            view[filled:filled + len(chunk)] = chunk
            if part_hash is not None:
                part_hash.update(chunk)
            for writer in self._files:
                writer.write_at(part.offset + filled, chunk)
            filled += len(chunk)

        with self.source_limit.slot(self.stop):
            self.client.download(
                self.task.item_id, write, expected_size=self.task.size, offset=part.offset,
                length=part.length, pin=self._version,
            )
        for writer in self._files:
            writer.written(part.offset, part.length)
        # Once per part, not per chunk: K threads taking a lock for every 64 KiB that arrives
        # cost more CPU in lock hand-offs than the hashing of those bytes.
        self._progress.add(part.length)
        return buffer, b"" if part_hash is None else part_hash.digest()

    def _retry(self, part: Part, attempt: int, error: BaseException) -> None:
        reason = f"part {part.number} of {len(self.parts)}: {type(error).__name__}: {error}"
        log.info("retrying %s (%s, attempt %d)", self.task.original_path, reason, attempt + 1)
        self.on_retry(self.task, reason)

    def _fold_in_turn(self, part: Part, data: bytearray) -> None:
        """Add the part to the whole file's hashes once every part before it is in."""
        with self._turn:
            while self._next_fold != part.number:
                if self._halted():
                    raise Cancelled("stopped mid-file")
                self._turn.wait(_WAIT_S)
        for hasher in self.hashers.values():
            hasher.update(data)
        with self._turn:
            self._folded += len(data)
            self._next_fold += 1
            self._turn.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._turn:
            if self._failure is None:
                self._failure = error
            self._halt.set()
            self._turn.notify_all()

    def _halted(self) -> bool:
        return self._halt.is_set() or self.stop.is_set()


class _Progress:
    """Bytes of a file received so far, counted part by part as each is in."""

    def __init__(self, task: FileTask, on_bytes: Callable[[FileTask, int], None]) -> None:
        self._task = task
        self._on_bytes = on_bytes
        self._total = 0
        self._lock = threading.Lock()

    def add(self, amount: int) -> None:
        # Reported under the lock: totals reaching the job out of order would read as a restart.
        with self._lock:
            self._total += amount
            self._on_bytes(self._task, self._total)
