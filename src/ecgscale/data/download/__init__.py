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

The modules of this package: ``datasets`` (the catalogue, how each dataset is fetched, and
what was confirmed about the publishers' layouts), ``transfer`` (resumable HTTP), ``checksums``,
``manifest`` and ``archives`` (safe extraction).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import requests

from ecgscale.data.download.archives import extract_archive
from ecgscale.data.download.checksums import SUMS_NAME
from ecgscale.data.download.datasets import _METHODS, DATASETS, DatasetInfo, _dataset, list_datasets
from ecgscale.data.download.errors import DownloadError
from ecgscale.data.download.manifest import MANIFEST_NAME, _Manifest
from ecgscale.data.download.transfer import _Client

__all__ = [
    "DATASETS",
    "MANIFEST_NAME",
    "MIRROR_ENV",
    "SUMS_NAME",
    "DatasetInfo",
    "DownloadError",
    "download",
    "extract_archive",
    "list_datasets",
]

MIRROR_ENV = "ECGSCALE_MIRROR"


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
