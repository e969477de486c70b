"""The downloadable datasets and how each is fetched: a PhysioNet project zip, a PhysioNet
project's files one by one, or the files of a Zenodo record.

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

"""

from __future__ import annotations

import fnmatch
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from ecgscale.data.download.archives import _TAR_SUFFIXES, _open_zip, _require_safe, extract_archive
from ecgscale.data.download.checksums import SUMS_NAME, _digest_stream, _Expected, _parse_sums
from ecgscale.data.download.errors import DownloadError
from ecgscale.data.download.manifest import _Manifest
from ecgscale.data.download.transfer import _Client


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
