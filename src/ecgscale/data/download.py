"""Download the public ECG datasets, resumably, verified against the publishers' checksums.

``download("ptbxl", Path("raw/ptbxl"))`` fetches one dataset into a folder and returns
the folder that holds its data. Every file goes first to ``<name>.part``; an interrupted
transfer (a dropped connection, a killed process) resumes from the ``.part``'s size with an
HTTP ``Range`` request, and restarts from zero when the server ignores ``Range``. Each
file is checked against the publisher's size and checksum before it takes its final
name; a mismatch deletes it and raises :class:`DownloadError` naming the file and both
sums. Verified files (and extracted archives) are recorded in ``.ecgscale-download.jsonl``
in the target folder, and a later call skips them, so rerunning the same command finishes
an interrupted download and does nothing once it is complete. An archive whose contents
have been extracted may be deleted by hand; it is not fetched again.

Mirrors and tests: ``base_url`` (or, when it is not given, the environment variable
``ECGSCALE_MIRROR``) replaces the scheme and host of every publisher URL and keeps its
path: with ``base_url="http://mirror:8000/ecg"`` the PTB-XL archive is read from
``http://mirror:8000/ecg/static/published-projects/ptb-xl/<zip>`` and the CODE-15% record
from ``http://mirror:8000/ecg/api/records/4916206``. A mirror therefore serves a copy of
the publishers' paths; PhysioNet's and Zenodo's paths do not overlap, so one mirror can
serve all datasets.

What was confirmed (and where) and what is assumed:

* PTB-XL 1.0.3: the project zip is
  ``https://physionet.org/static/published-projects/ptb-xl/ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3.zip``
  (used by many public scripts; ~1.7 GB), whose members lie under one top folder named
  like the zip, ``SHA256SUMS.txt`` among them. PhysioNet's maintainers state that every
  project carries a ``SHA256SUMS.txt`` at its root (MIT-LCP/physionet, discussion in
  Medical-Event-Data-Standard/MIMIC_IV_MEDS#16), in ``sha256sum`` format: one
  ``<64 hex> <path relative to the project root>`` per line. PhysioNet publishes no
  checksum of the zip itself, so the zip is checked against the announced length and then
  every file the sums list is hashed inside the archive before anything is extracted.
* CinC 2021 (``challenge-2021`` 1.0.3): no project zip could be confirmed (a public
  download script that checked PhysioNet's servers says there is none, and no public code
  uses one), so the files are fetched one by one from
  ``https://physionet.org/files/challenge-2021/1.0.3/<path>``, as listed in that project's
  ``SHA256SUMS.txt``, each checked against its sha256. That is ~10^5 small requests:
  ``include`` patterns (e.g. ``training/georgia/*``) select a subset.
* CODE-15% (Zenodo record 4916206: ``exams.csv`` and ``exams_part0.zip`` …
  ``exams_part17.zip``, ~46 GB) and CODE-test (record 3765780: ``data.zip``): confirmed
  on the records' pages and in public scripts. ``https://zenodo.org/api/records/<id>``
  answers JSON whose ``files`` is a list of ``{"key", "size", "checksum": "md5:<hex>",
  "links": {"self": <url>}}`` (confirmed in public clients, e.g. zenodo_get, that read
  exactly these fields). Assumed: the ``checksum`` prefix names a :mod:`hashlib`
  algorithm (``md5`` today; ``sha256`` would be used as given). Each part zip is
  extracted into the target folder (``exams_partN.hdf5``).

Archives are extracted safely: a member with an absolute path, a ``..`` segment, a link
that leaves the archive (tar links must be relative and free of ``..``; zip links are
refused, as :mod:`zipfile` cannot create them), or a device/FIFO refuses the whole
archive before anything is written. Tar extraction also uses the standard library's
``filter="data"`` where available (Python >= 3.11.4).
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import os
import re
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from tqdm import tqdm

MIRROR_ENV = "ECGSCALE_MIRROR"
MANIFEST_NAME = ".ecgscale-download.jsonl"
SUMS_NAME = "SHA256SUMS.txt"
_CHUNK = 1 << 16
_HASH_CHUNK = 1 << 20
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_T = TypeVar("_T")


class DownloadError(OSError):
    """A dataset that could not be fetched, verified or extracted (the message says why)."""


@dataclass(frozen=True)
class DatasetInfo:
    """A downloadable public dataset and how it is fetched."""

    name: str
    title: str
    version: str
    home: str
    method: str  # "physionet-zip", "physionet-files" or "zenodo"
    source: str  # the zip, the project's files root, or the Zenodo records API URL
    required: tuple[str, ...] = ()  # files a Zenodo record must list


_PHYSIONET = "https://physionet.org"
_ZENODO = "https://zenodo.org"

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="ptbxl",
            title="PTB-XL, a large publicly available electrocardiography dataset",
            version="1.0.3",
            home=f"{_PHYSIONET}/content/ptb-xl/1.0.3/",
            method="physionet-zip",
            source=f"{_PHYSIONET}/static/published-projects/ptb-xl/"
            "ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3.zip",
        ),
        DatasetInfo(
            name="cinc2021",
            title="PhysioNet/CinC Challenge 2021 training data (Will Two Do?)",
            version="1.0.3",
            home=f"{_PHYSIONET}/content/challenge-2021/1.0.3/",
            method="physionet-files",
            source=f"{_PHYSIONET}/files/challenge-2021/1.0.3/",
        ),
        DatasetInfo(
            name="code15",
            title="CODE-15%: a large scale annotated dataset of 12-lead ECGs",
            version="1.0.0",
            home=f"{_ZENODO}/records/4916206",
            method="zenodo",
            source=f"{_ZENODO}/api/records/4916206",
            required=("exams.csv", *(f"exams_part{i}.zip" for i in range(18))),
        ),
        DatasetInfo(
            name="code-test",
            title="CODE-test: annotated 12-lead ECG test set (Ribeiro et al. 2020)",
            version="",  # the record's version label was not confirmed
            home=f"{_ZENODO}/records/3765780",
            method="zenodo",
            source=f"{_ZENODO}/api/records/3765780",
            required=("data.zip",),
        ),
    )
}


def list_datasets() -> list[DatasetInfo]:
    """The datasets :func:`download` knows, by name."""
    return [DATASETS[name] for name in sorted(DATASETS)]


def download(
    dataset: str,
    to: Path | str,
    *,
    base_url: str | None = None,
    progress: bool = True,
    include: Sequence[str] = (),
    extract: bool = True,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
) -> Path:
    """Fetch ``dataset`` into ``to`` (resumable, verified) and return the folder of its data.

    ``include``: shell patterns (``fnmatch``) selecting files by their path in the
    publisher's listing (CinC 2021, CODE-15%, CODE-test); empty means all. ``extract``:
    unpack downloaded archives into ``to``. ``retries``: further attempts after a
    connection error, timeout or 5xx answer, ``backoff_s * 2**k`` seconds apart, each
    resuming from the ``.part``. ``base_url`` / ``ECGSCALE_MIRROR``: see the module doc.
    Returns PTB-XL's project folder (or its zip when ``extract`` is false), else ``to``.
    """
    info = _dataset(dataset)
    target = Path(to)
    mirror = base_url if base_url is not None else os.environ.get(MIRROR_ENV) or None
    try:
        target.mkdir(parents=True, exist_ok=True)
        with requests.Session() as session:
            session.headers["User-Agent"] = "ecgscale-download"
            client = _Client(session, mirror, retries, backoff_s, timeout_s, progress)
            fetcher = _METHODS[info.method]
            return fetcher(info, target, client, _Manifest(target), list(include), extract)
    except OSError as exc:  # disk full, permissions; requests' errors are wrapped earlier
        raise DownloadError(f"{dataset}: {exc}") from None


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into ``target``, refusing it whole if a member is unsafe."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        _extract_zip(archive, target)
    elif name.endswith(_TAR_SUFFIXES):
        _extract_tar(archive, target)
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


# --- datasets ---------------------------------------------------------------------------


def _dataset(name: str) -> DatasetInfo:
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise DownloadError(f"unknown dataset {name!r} (known: {known})")
    return DATASETS[name]


def _physionet_zip(
    info: DatasetInfo,
    to: Path,
    client: _Client,
    manifest: _Manifest,
    include: list[str],
    extract: bool,
) -> Path:
    """One project zip, its contents checked against the SHA256SUMS.txt it holds."""
    if include:
        raise DownloadError(f"{info.name} is one archive; 'include' does not apply to it")
    name = PurePosixPath(urlsplit(info.source).path).name
    archive = to / name
    if name not in manifest.extracted:
        client.fetch(
            info.source,
            archive,
            manifest,
            check=lambda part: _check_sums_in_zip(part, name, client),
        )
        if not extract:
            return archive
        extract_archive(archive, to)
        with _open_zip(archive) as zf:
            manifest.add_extracted(name, str(PurePosixPath(_sums_member(zf, name)).parent))
    return to / manifest.extracted[name]


def _physionet_files(
    info: DatasetInfo,
    to: Path,
    client: _Client,
    manifest: _Manifest,
    include: list[str],
    extract: bool,
) -> Path:
    """Every file a project's SHA256SUMS.txt lists (or those ``include`` selects)."""
    sums_path = to / SUMS_NAME
    client.fetch(info.source + SUMS_NAME, sums_path, manifest)
    sums = _parse_sums(sums_path.read_text(encoding="utf-8", errors="replace"), sums_path)
    for rel in client.files_bar(_select(list(sums), include, info.name)):
        client.fetch(
            info.source + quote(rel),
            to / rel,
            manifest,
            expected=_Expected(None, f"sha256:{sums[rel]}"),
        )
    return to


def _zenodo(
    info: DatasetInfo,
    to: Path,
    client: _Client,
    manifest: _Manifest,
    include: list[str],
    extract: bool,
) -> Path:
    """The files of a Zenodo record, each checked against the record's size and checksum."""
    files = _zenodo_files(client.get_json(info.source), info)
    for key in client.files_bar(_select(list(files), include, info.name)):
        if key in manifest.extracted:
            continue
        url, expected = files[key]
        client.fetch(url, to / key, manifest, expected=expected)
        if extract and key.lower().endswith((".zip", *_TAR_SUFFIXES)):
            extract_archive(to / key, to)
            manifest.add_extracted(key, ".")
    return to


_METHODS: dict[str, Callable[..., Path]] = {
    "physionet-zip": _physionet_zip,
    "physionet-files": _physionet_files,
    "zenodo": _zenodo,
}


def _zenodo_files(record: Any, info: DatasetInfo) -> dict[str, tuple[str, _Expected]]:
    """``key → (url, expected)`` from a records-API answer; the required keys must be there."""
    try:
        files = {
            f["key"]: (f["links"]["self"], _Expected(int(f["size"]), f["checksum"]))
            for f in record["files"]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DownloadError(
            f"{info.source}: not the expected Zenodo record format (files[].key/size/"
            f"checksum/links.self): {exc!r}"
        ) from None
    for key in files:
        _require_safe(key, info.source)
    missing = [key for key in info.required if key not in files]
    if missing:
        raise DownloadError(f"{info.source}: the record lacks {missing}; has it changed?")
    return files


def _select(names: list[str], include: list[str], dataset: str) -> list[str]:
    if not include:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include)]
    if not chosen:
        raise DownloadError(f"no file of {dataset} matches {include}")
    return chosen


# --- checksums --------------------------------------------------------------------------


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


def _sums_member(zf: zipfile.ZipFile, label: str) -> str:
    """The archive's top-most SHA256SUMS.txt."""
    names = [n for n in zf.namelist() if PurePosixPath(n).name == SUMS_NAME]
    if not names:
        raise DownloadError(f"{label}: no {SUMS_NAME} in the archive; cannot verify it")
    return min(names, key=lambda n: n.count("/"))


def _check_sums_in_zip(archive: Path, label: str, client: _Client) -> None:
    """Hash, inside the zip, every file its SHA256SUMS.txt lists."""
    with _open_zip(archive, label) as zf:
        sums_name = _sums_member(zf, label)
        prefix = sums_name[: -len(SUMS_NAME)]
        sums = _parse_sums(zf.read(sums_name).decode("utf-8", "replace"), sums_name)
        members = set(zf.namelist())
        for rel in client.files_bar(list(sums), desc="verifying"):
            member = prefix + rel
            if member not in members:
                raise DownloadError(f"{label}: {member} is in {SUMS_NAME} but not in the archive")
            with zf.open(member) as fh:
                got = _digest_stream(fh, "sha256")
            if got != sums[rel]:
                raise DownloadError(
                    f"{label}: {member}: sha256 checksum mismatch: expected "
                    f"{sums[rel]}, got {got}; the archive was deleted, run again to fetch it anew"
                )


# --- manifest ---------------------------------------------------------------------------


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


# --- HTTP -------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying (5xx/429 answer, body cut short)."""


_RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    _Transient,
)


def _rehost(url: str, base: str | None) -> str:
    """``url`` with its scheme and host replaced by ``base`` (whose path is a prefix)."""
    if not base:
        return url
    b, u = urlsplit(base), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))


def _check_status(response: requests.Response, url: str) -> None:
    code = response.status_code
    if code == 429 or code >= 500:
        raise _Transient(f"HTTP {code} {response.reason}")
    if code >= 400:
        raise DownloadError(f"{url}: HTTP {code} {response.reason}")


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


@dataclass
class _Client:
    session: requests.Session
    mirror: str | None
    retries: int
    backoff_s: float
    timeout_s: float
    progress: bool

    def get_json(self, url: str) -> Any:
        """A small JSON document (retried like a download)."""
        url = _rehost(url, self.mirror)

        def get() -> Any:
            response = self.session.get(
                url, timeout=self.timeout_s, headers={"Accept": "application/json"}
            )
            _check_status(response, url)
            try:
                return response.json()
            except ValueError:
                raise DownloadError(f"{url}: the answer is not JSON") from None

        return self._retrying(url, get)

    def fetch(
        self,
        url: str,
        dest: Path,
        manifest: _Manifest,
        *,
        expected: _Expected = _UNKNOWN,
        check: Callable[[Path], None] | None = None,
    ) -> None:
        """Download ``url`` to ``dest`` unless verified before; resume, verify, record."""
        if manifest.is_verified(dest):
            return
        url = _rehost(url, self.mirror)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        total = self._retrying(url, lambda: self._transfer(url, part, expected, dest.name))
        _verify(part, dest.name, _Expected(expected.size or total, expected.checksum))
        if check is not None:
            try:
                check(part)
            except DownloadError:
                part.unlink()
                raise
        part.replace(dest)
        manifest.add_file(dest, expected.checksum)

    def files_bar(self, items: list[str], desc: str = "files") -> Iterable[str]:
        """``items``, with a progress bar counting them when there are several."""
        return tqdm(items, desc=desc, unit="file", disable=not self.progress or len(items) < 2)

    def _retrying(self, url: str, action: Callable[[], _T]) -> _T:
        for attempt in itertools.count():
            try:
                return action()
            except _RETRYABLE as exc:
                if attempt >= self.retries:
                    raise DownloadError(
                        f"{url}: {exc} (gave up after {attempt + 1} attempts; run again to resume)"
                    ) from None
                time.sleep(self.backoff_s * 2**attempt)
            except requests.RequestException as exc:
                raise DownloadError(f"{url}: {exc}") from None
        raise AssertionError("itertools.count() does not end")

    def _transfer(self, url: str, part: Path, expected: _Expected, label: str) -> int | None:
        """Append the rest of ``url`` to ``part``; return the file's announced size."""
        start = part.stat().st_size if part.exists() else 0
        if expected.size is not None and start >= expected.size:
            if start == expected.size:
                return expected.size
            part.unlink()
            start = 0
        headers = {"Range": f"bytes={start}-"} if start else {}
        with self.session.get(url, headers=headers, stream=True, timeout=self.timeout_s) as r:
            if r.status_code == 416 and start:  # the .part is complete or too long: restart
                part.unlink()
                return self._transfer(url, part, expected, label)
            _check_status(r, url)
            if r.status_code == 206 and _range_start(r) != start:
                raise DownloadError(f"{url}: asked for bytes from {start}, got {_range_start(r)}")
            if r.status_code != 206:  # the server ignored Range: start over
                start = 0
            length = r.headers.get("Content-Length")
            total = start + int(length) if length is not None else expected.size
            written = start
            with (
                part.open("ab" if start else "wb") as fh,
                tqdm(
                    total=total,
                    initial=start,
                    desc=label,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    leave=False,
                    disable=not self.progress,
                ) as bar,
            ):
                for chunk in r.iter_content(_CHUNK):
                    fh.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        if total is not None and written < total:
            raise _Transient(f"connection closed after {written} of {total} bytes")
        return total


# --- safe extraction --------------------------------------------------------------------


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
