"""Safe extraction of zip and tar archives, and the check that a listed path stays inside
its folder.

Archives are extracted safely: a member with an absolute path, a ``..`` segment, a link
that leaves the archive (tar links must be relative and free of ``..``; zip links are
refused, as :mod:`zipfile` cannot create them), or a device/FIFO refuses the whole
archive before anything is written. Tar extraction also uses the standard library's
``filter="data"`` where available (Python >= 3.11.4).
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ecgscale.data.download.errors import DownloadError

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing it whole if a member is unsafe."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        _extract_zip(archive, target)
    elif name.endswith(_TAR_SUFFIXES):
        _extract_tar(archive, target)
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


def _unsafe_reason(name: str) -> str | None:
    """Why a path from an archive or listing could leave its folder, or None if it cannot."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return "an absolute path"
    if ".." in path.split("/"):
        return "a path with a '..' segment"
    if "\0" in path:
        return "a path with a NUL byte"
    return None


def _require_safe(path: str, source: Path | str) -> None:
    reason = _unsafe_reason(path)
    if reason:
        raise DownloadError(f"{source}: refusing {path!r}: {reason}")


def _refuse(archive: Path, member: str, reason: str) -> DownloadError:
    return DownloadError(f"{archive}: refusing the archive: member {member!r} is {reason}")


@contextmanager
def _open_zip(archive: Path, label: str | None = None) -> Iterator[zipfile.ZipFile]:
    """The open zip; a corrupt archive, found on opening or on reading, is a DownloadError."""
    try:
        with zipfile.ZipFile(archive) as zf:
            yield zf
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(f"{label or archive}: not a valid zip file ({exc})") from None


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a special file (device, FIFO or socket)"
    return _unsafe_reason(info.filename)


def _extract_zip(archive: Path, target: Path) -> None:
    with _open_zip(archive) as zf:
        for info in zf.infolist():
            problem = _zip_member_problem(info)
            if problem:
                raise _refuse(archive, info.filename, problem)
        zf.extractall(target)


def _tar_member_problem(member: tarfile.TarInfo) -> str | None:
    problem = _unsafe_reason(member.name)
    if problem or member.isfile() or member.isdir():
        return problem
    if member.issym() or member.islnk():
        link_problem = _unsafe_reason(member.linkname)
        kind = "symbolic" if member.issym() else "hard"
        return f"a {kind} link to {member.linkname!r}, {link_problem}" if link_problem else None
    return "a special file (device or FIFO)"


def _extract_tar(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                problem = _tar_member_problem(member)
                if problem:
                    raise _refuse(archive, member.name, problem)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(target, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above are the only guard
                tf.extractall(target, members=members)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc})") from None
