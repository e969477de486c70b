"""Checksums: the expected size and checksum of a file, hashing, verification, and
``sha256sum``-style listings (PhysioNet's SHA256SUMS.txt)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ecgscale.data.download.archives import _require_safe
from ecgscale.data.download.errors import DownloadError

SUMS_NAME = "SHA256SUMS.txt"


_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Expected:
    size: int | None = None
    checksum: str | None = None  # "<hashlib algorithm>:<hex>"


_UNKNOWN = _Expected()


def _parse_checksum(checksum: str) -> tuple[str, str]:
    algo, _, digest = checksum.partition(":")
    if algo.lower() not in hashlib.algorithms_guaranteed or not digest:
        raise DownloadError(f"unsupported checksum {checksum!r} (want '<algorithm>:<hex>')")
    return algo.lower(), digest.lower()


def _digest_stream(stream: IO[bytes], algo: str) -> str:
    h = hashlib.new(algo)
    for block in iter(lambda: stream.read(_HASH_CHUNK), b""):
        h.update(block)
    return h.hexdigest()


def _verify(path: Path, name: str, expected: _Expected) -> None:
    """Raise (and delete ``path``) unless it has the expected size and checksum."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        path.unlink()
        raise DownloadError(
            f"{name}: size mismatch: expected {expected.size} bytes, got {size}; "
            "the partial file was deleted, run again to fetch it anew"
        )
    if expected.checksum:
        algo, want = _parse_checksum(expected.checksum)
        with path.open("rb") as fh:
            got = _digest_stream(fh, algo)
        if got != want:
            path.unlink()
            raise DownloadError(
                f"{name}: {algo} checksum mismatch: expected {want}, got {got}; "
                "the file was deleted, run again to fetch it anew"
            )


def _parse_sums(text: str, source: Path | str) -> dict[str, str]:
    """``path → sha256`` from a ``sha256sum``-style listing (PhysioNet's SHA256SUMS.txt)."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DownloadError(f"{source}: line {number} is not '<sha256> <path>': {line!r}")
        path = parts[1].removeprefix("*")
        _require_safe(path, source)
        sums[path] = parts[0].lower()
    return sums
