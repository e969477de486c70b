"""A short digest of source files, naming which code made an artefact (a run, a store)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def files_digest(root: Path, files: Iterable[Path]) -> str:
    """SHA-256 (12 hex digits) of ``files``' paths relative to ``root`` and their contents, in
    path order (the order they are given in does not matter)."""
    h = hashlib.sha256()
    for rel, path in sorted((p.relative_to(root).as_posix(), p) for p in files):
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
