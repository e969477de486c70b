"""The manifest of a download folder: the files verified and the archives extracted there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST_NAME = ".ecgscale-download.jsonl"


class _Manifest:
    """Append-only record of the verified files and extracted archives in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST_NAME
        self.files: dict[str, int] = {}
        self.extracted: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                self._load(line)

    def _load(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash: that entry is redone
            return
        if "extracted" in entry:
            self.extracted[entry["extracted"]] = entry["root"]
        elif "file" in entry:
            self.files[entry["file"]] = entry["size"]

    def is_verified(self, dest: Path) -> bool:
        """Whether ``dest`` was verified before and still has the size it had then."""
        size = self.files.get(self._key(dest))
        return size is not None and dest.is_file() and dest.stat().st_size == size

    def add_file(self, dest: Path, checksum: str | None) -> None:
        size = dest.stat().st_size
        self.files[self._key(dest)] = size
        self._append({"file": self._key(dest), "size": size, "checksum": checksum})

    def add_extracted(self, name: str, root: str) -> None:
        self.extracted[name] = root
        self._append({"extracted": name, "root": root})

    def _key(self, dest: Path) -> str:
        return dest.relative_to(self.folder).as_posix()

    def _append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
