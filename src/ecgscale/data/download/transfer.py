"""Resumable HTTP transfer: retries with back-off, ``Range`` requests that continue a
``.part`` file, mirrors, and verification before a file takes its final name."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from tqdm import tqdm

from ecgscale.data.download.checksums import _UNKNOWN, _Expected, _verify
from ecgscale.data.download.errors import DownloadError
from ecgscale.data.download.manifest import _Manifest

_CHUNK = 1 << 16


_T = TypeVar("_T")


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
