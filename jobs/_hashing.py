"""The hashes of a file being moved, and the check of its bytes against what the source said.

Both paths that move bytes (streamed in `jobs.transfer`, in ranges in `jobs.ranged`) hash what
they receive with SHA-256 and with every algorithm the source declared that hashlib knows, and
accept the file only when its size and every such digest agree with the source.
"""

from __future__ import annotations

import hashlib

from jobs.errors import VerificationFailed
from jobs.plan import FileTask

__all__ = ["hashers_for", "verified_sha256"]


def hashers_for(task: FileTask) -> dict[str, hashlib._Hash]:
    """SHA-256 (the manifest's), and each algorithm the source declared for the file."""
    hashers = {"sha256": hashlib.sha256()}
    for algo in task.hashes:
        if algo not in hashers and algo in hashlib.algorithms_guaranteed:
            hashers[algo] = hashlib.new(algo)
    return hashers


def verified_sha256(task: FileTask, received: int, hashers: dict[str, hashlib._Hash]) -> str:
    """The file's SHA-256, once `received` bytes hashed by `hashers` match the source's listing;
    raises VerificationFailed otherwise."""
    if received != task.size:
        raise VerificationFailed(f"got {received} bytes, the room lists {task.size}")
    digests = {algo: hasher.hexdigest() for algo, hasher in hashers.items()}
    for algo, declared in task.hashes.items():
        if algo in digests and digests[algo] != declared:
            raise VerificationFailed(f"{algo} of the bytes differs from the source's")
    return digests["sha256"]
