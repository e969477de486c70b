"""Dataset download: resume, verification, mirrors and safe extraction, against a local server."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tarfile
import tempfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.data.download import (
    DATASETS,
    MANIFEST_NAME,
    MIRROR_ENV,
    DownloadError,
    download,
    extract_archive,
    list_datasets,
)

PTB_ROOT = "ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3"
FAST = {"progress": False, "backoff_s": 0.0}


# --- a small HTTP server with Range support ---------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.ignore_range = False
        self.drops: Counter[str] = Counter()  # path -> connections to cut halfway
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range, status)
        self._sent: Counter[str] = Counter()  # path -> body bytes sent
        self._counted = threading.Condition()  # notified when a reply's bytes are counted
        self._replies = 0  # replies whose bytes are counted

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data`` at URL path ``path`` (leading slash optional); return the path."""
        self.body_file(path).parent.mkdir(parents=True, exist_ok=True)
        self.body_file(path).write_bytes(data)
        return "/" + path.lstrip("/")

    def body_file(self, path: str) -> Path:
        """Where a URL path's body is kept (a folder per path: one may prefix another)."""
        return self.root / path.lstrip("/") / ".body"

    def hits(self, path: str) -> list[tuple[str | None, int]]:
        return [(rng, status) for p, rng, status in self.log if p == path]

    def served(self, path: str) -> int:
        """Body bytes sent at ``path``, once every reply logged so far has been counted (a
        handler thread counts its bytes after the client may have read them all)."""
        with self._counted:
            assert self._counted.wait_for(lambda: self._replies == len(self.log), timeout=60)
            return self._sent[path]

    def count(self, path: str, sent: int) -> None:
        """Count the ``sent`` body bytes of one reply at ``path`` (a handler thread)."""
        with self._counted:
            self._sent[path] += sent
            self._replies += 1
            self._counted.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silence the default stderr log."""

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        file = self.server.body_file(path)
        rng = self.headers.get("Range")
        if not file.is_file():
            self._reply(path, rng, 404, b"not found")
            return
        data = file.read_bytes()
        start = 0
        if rng and not self.server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self._reply(path, rng, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        body = data[start:]
        if self.server.drops[path] > 0:
            self.server.drops[path] -= 1
            self.close_connection = True
            self._reply(path, rng, 206 if start else 200, body, headers, send=len(body) // 2)
            return
        self._reply(path, rng, 206 if start else 200, body, headers)

    def _reply(
        self,
        path: str,
        rng: str | None,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        send: int | None = None,
    ) -> None:
        self.server.log.append((path, rng, status))
        chunk, sent = body if send is None else body[:send], 0
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(chunk)
            sent = len(chunk)
        finally:  # counted even when the client hung up, so that served() never waits for it
            self.server.count(path, sent)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    srv = _Server(tmp_path / "srv")
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# --- fixtures' data ---------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _path(url: str) -> str:
    return urlsplit(url).path


def _ptbxl_files() -> dict[str, bytes]:
    return {
        "ptbxl_database.csv": b"ecg_id,patient_id,scp_codes\n1,15709,\"{'NORM': 100.0}\"\n",
        "records100/00000/00001_lr.hea": b"00001_lr 12 100 1000\n",
        "records100/00000/00001_lr.dat": bytes(range(256)) * 40,
    }


def _serve_ptbxl(server: _Server, tamper: str | None = None) -> str:
    files = _ptbxl_files()
    sums = "".join(f"{_sha256(data)} {name}\n" for name, data in files.items())
    if tamper:
        files[tamper] = files[tamper] + b"tampered"
    members = {f"{PTB_ROOT}/{name}": data for name, data in files.items()}
    members[f"{PTB_ROOT}/SHA256SUMS.txt"] = sums.encode()
    return server.put(_path(DATASETS["ptbxl"].source), _zip(members))


def _record(dataset: str, files: dict[str, bytes], **overrides: str) -> dict[str, object]:
    """A Zenodo records-API answer listing ``files`` (links point at zenodo.org)."""
    api = DATASETS[dataset].source
    return {
        "id": int(api.rsplit("/", 1)[1]),
        "files": [
            {
                "key": key,
                "size": len(data),
                "checksum": overrides.get(key, f"md5:{_md5(data)}"),
                "links": {"self": f"{api}/files/{key}/content"},
            }
            for key, data in files.items()
        ],
    }


def _serve_zenodo(
    server: _Server, dataset: str, files: dict[str, bytes], listed: dict[str, bytes] | None = None
) -> dict[str, str]:
    """Serve ``files`` and a record listing ``listed`` (default: the same); return key → path."""
    api = _path(DATASETS[dataset].source)
    server.put(api, json.dumps(_record(dataset, listed or files)).encode())
    return {key: server.put(f"{api}/files/{key}/content", data) for key, data in files.items()}


def _code_test_zip(size: int = 0) -> bytes:
    tracings = bytes(i % 251 for i in range(size)) if size else b"hdf5 stand-in"
    return _zip({"data/ecg_tracings.hdf5": tracings, "data/annotations/gold_standard.csv": b"x"})


# --- datasets ---------------------------------------------------------------------------


def test_list_datasets_and_unknown_name():
    assert [d.name for d in list_datasets()] == ["cinc2021", "code-test", "code15", "ptbxl"]
    with pytest.raises(DownloadError, match="unknown dataset 'ptb'.*ptbxl"):
        download("ptb", Path("unused"))


def test_ptbxl_zip_is_verified_extracted_and_not_fetched_twice(server, tmp_path):
    _serve_ptbxl(server)
    root = download("ptbxl", tmp_path / "out", base_url=server.url, **FAST)
    assert root == tmp_path / "out" / PTB_ROOT
    for name, data in _ptbxl_files().items():
        assert (root / name).read_bytes() == data
    requests_before = len(server.log)
    assert download("ptbxl", tmp_path / "out", base_url=server.url, **FAST) == root
    assert len(server.log) == requests_before


def test_ptbxl_tampered_member_refuses_the_archive(server, tmp_path):
    _serve_ptbxl(server, tamper="records100/00000/00001_lr.dat")
    data = _ptbxl_files()["records100/00000/00001_lr.dat"]
    expected, actual = _sha256(data), _sha256(data + b"tampered")
    with pytest.raises(DownloadError, match=rf"00001_lr\.dat.*{expected}.*{actual}"):
        download("ptbxl", tmp_path / "out", base_url=server.url, **FAST)
    leftovers = {p.name for p in (tmp_path / "out").iterdir()}
    assert leftovers <= {MANIFEST_NAME}  # nothing extracted, no archive or .part kept


def test_ptbxl_complete_part_of_unknown_size_is_fetched_anew(server, tmp_path):
    path = _serve_ptbxl(server)
    data = server.body_file(path).read_bytes()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / (Path(path).name + ".part")).write_bytes(data)
    archive = download("ptbxl", tmp_path / "out", base_url=server.url, extract=False, **FAST)
    assert archive.read_bytes() == data and not (tmp_path / "out" / PTB_ROOT).exists()
    assert server.hits(path) == [(f"bytes={len(data)}-", 416), (None, 200)]


def test_ptbxl_missing_file_is_a_clear_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("ptbxl", tmp_path / "out", base_url=server.url, **FAST)


def test_zenodo_md5_good_via_mirror_env(server, tmp_path, monkeypatch):
    paths = _serve_zenodo(server, "code-test", {"data.zip": _code_test_zip()})
    monkeypatch.setenv(MIRROR_ENV, server.url)
    out = download("code-test", tmp_path / "out", **FAST)
    assert (out / "data" / "ecg_tracings.hdf5").read_bytes() == b"hdf5 stand-in"
    download("code-test", tmp_path / "out", **FAST)
    assert len(server.hits(paths["data.zip"])) == 1  # verified once, never fetched again


@pytest.mark.parametrize(
    ("checksum", "message"),
    [
        ("md5:" + "0" * 32, r"data\.zip: md5 checksum mismatch: expected 0{32}, got [0-9a-f]{32}"),
        ("sha256:" + "1" * 64, r"data\.zip: sha256 checksum mismatch: expected 1{64}, got "),
    ],
)
def test_zenodo_checksum_mismatch_deletes_the_file(server, tmp_path, checksum, message):
    api = _path(DATASETS["code-test"].source)
    data = _code_test_zip()
    server.put(
        api, json.dumps(_record("code-test", {"data.zip": data}, **{"data.zip": checksum})).encode()
    )
    server.put(f"{api}/files/data.zip/content", data)
    with pytest.raises(DownloadError, match=message):
        download("code-test", tmp_path / "out", base_url=server.url, **FAST)
    assert not (tmp_path / "out" / "data.zip").exists()
    assert not (tmp_path / "out" / "data.zip.part").exists()


def test_zenodo_size_mismatch(server, tmp_path):
    data = _code_test_zip()
    _serve_zenodo(server, "code-test", {"data.zip": data}, listed={"data.zip": data + b"!"})
    with pytest.raises(DownloadError, match=rf"size mismatch: expected {len(data) + 1} bytes, got"):
        download("code-test", tmp_path / "out", base_url=server.url, **FAST)


def test_code15_include_selects_files_and_required_files_are_checked(server, tmp_path):
    parts = {f"exams_part{i}.zip": _zip({f"exams_part{i}.hdf5": b"h5"}) for i in range(18)}
    listed = {"exams.csv": b"exam_id,age\n1,50\n", **parts}
    served = {k: listed[k] for k in ("exams.csv", "exams_part0.zip")}
    _serve_zenodo(server, "code15", served, listed=listed)
    out = download(
        "code15", tmp_path / "out", base_url=server.url, include=["exams.csv", "*part0.*"], **FAST
    )
    assert (out / "exams_part0.hdf5").read_bytes() == b"h5"
    assert (out / "exams.csv").is_file() and not (out / "exams_part1.zip").exists()

    del listed["exams_part17.zip"]
    _serve_zenodo(server, "code15", served, listed=listed)
    with pytest.raises(DownloadError, match="lacks.*exams_part17.zip"):
        download("code15", tmp_path / "other", base_url=server.url, **FAST)


def test_cinc2021_files_checked_one_by_one(server, tmp_path):
    base = _path(DATASETS["cinc2021"].source)
    files = {
        "training/georgia/g1/E00001.hea": b"E00001 12 500 5000\n#Dx: 426783006\n",
        "training/georgia/g1/E00001.mat": b"\x00\x01" * 500,
        "training/cpsc_2018/g1/A0001.hea": b"A0001 12 500 7500\n",
    }
    sums = "".join(f"{_sha256(d)} {n}\n" for n, d in files.items())
    server.put(base + "SHA256SUMS.txt", sums.encode())
    for name, data in files.items():
        server.put(base + name, data)
    out = download(  # with progress bars, as on the command line
        "cinc2021", tmp_path / "out", base_url=server.url, include=["training/georgia/*"]
    )
    assert (out / "training/georgia/g1/E00001.mat").read_bytes() == files[
        "training/georgia/g1/E00001.mat"
    ]
    assert not (out / "training/cpsc_2018").exists()

    server.put(base + "training/cpsc_2018/g1/A0001.hea", b"tampered\n")
    with pytest.raises(DownloadError, match=r"A0001\.hea: sha256 checksum mismatch"):
        download("cinc2021", tmp_path / "out", base_url=server.url, **FAST)


def test_cinc2021_sums_listing_an_escaping_path_is_refused(server, tmp_path):
    server.put(_path(DATASETS["cinc2021"].source) + "SHA256SUMS.txt", b"a" * 64 + b" ../evil\n")
    with pytest.raises(DownloadError, match=r"refusing '\.\./evil'"):
        download("cinc2021", tmp_path / "out", base_url=server.url, **FAST)


# --- resume and retries -----------------------------------------------------------------


def test_interrupted_transfer_resumes_from_the_part_file(server, tmp_path):
    data = _code_test_zip(size=1 << 20)
    path = _serve_zenodo(server, "code-test", {"data.zip": data})["data.zip"]
    server.drops[path] = 1
    with pytest.raises(DownloadError, match="run again to resume"):
        download("code-test", tmp_path / "out", base_url=server.url, retries=0, **FAST)
    part = tmp_path / "out" / "data.zip.part"
    have = part.stat().st_size
    assert 0 < have <= len(data) // 2
    served_before = server.served(path)

    download("code-test", tmp_path / "out", base_url=server.url, retries=0, **FAST)
    assert server.served(path) - served_before == len(data) - have  # only the rest
    assert server.hits(path)[-1] == (f"bytes={have}-", 206)
    assert (tmp_path / "out" / "data.zip").read_bytes() == data and not part.exists()


def test_dropped_connection_is_retried_within_one_call(server, tmp_path):
    data = _code_test_zip(size=1 << 20)
    path = _serve_zenodo(server, "code-test", {"data.zip": data})["data.zip"]
    server.drops[path] = 2
    download("code-test", tmp_path / "out", base_url=server.url, retries=3, **FAST)
    hits = server.hits(path)
    assert len(hits) == 3 and hits[0][0] is None
    assert all(rng and rng.startswith("bytes=") for rng, _ in hits[1:])
    assert (tmp_path / "out" / "data.zip").read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = _code_test_zip(size=1 << 16)
    path = _serve_zenodo(server, "code-test", {"data.zip": data})["data.zip"]
    server.ignore_range = True
    stale = b"stale bytes of another transfer"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.zip.part").write_bytes(stale)
    download("code-test", tmp_path / "out", base_url=server.url, **FAST)
    assert server.hits(path) == [(f"bytes={len(stale)}-", 200)]
    assert server.served(path) == len(data)
    assert (tmp_path / "out" / "data.zip").read_bytes() == data


@pytest.mark.parametrize(("extra", "hits"), [(b"", []), (b"too long", [(None, 200)])])
def test_part_file_of_known_size_is_checked_before_asking(server, tmp_path, extra, hits):
    data = _code_test_zip()
    path = _serve_zenodo(server, "code-test", {"data.zip": data})["data.zip"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.zip.part").write_bytes(data + extra)
    download("code-test", tmp_path / "out", base_url=server.url, **FAST)
    assert server.hits(path) == hits
    assert (tmp_path / "out" / "data.zip").read_bytes() == data


def test_unreachable_host_is_a_download_error(tmp_path):
    with _Server(tmp_path) as closed:
        url = closed.url  # bound, then closed: nothing listens there
    with pytest.raises(DownloadError, match=r"gave up after 2 attempts"):
        download("code-test", tmp_path / "out", base_url=url, retries=1, **FAST)


# --- safe extraction --------------------------------------------------------------------


def _zip_with(name: str, data: bytes = b"x", mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "mode", "reason"),
    [
        ("../evil.txt", b"x", None, "'..' segment"),
        ("a/../../evil.txt", b"x", None, "'..' segment"),
        ("..\\evil.txt", b"x", None, "'..' segment"),
        ("/tmp/evil.txt", b"x", None, "absolute path"),
        ("C:/evil.txt", b"x", None, "absolute path"),
        ("link", b"/etc/passwd", stat.S_IFLNK | 0o777, "symbolic link"),
        ("link2", b"../../outside", stat.S_IFLNK | 0o777, "symbolic link"),
        ("dev", b"", stat.S_IFCHR | 0o600, "special file"),
    ],
)
def test_unsafe_zip_member_refuses_the_archive(tmp_path, name, data, mode, reason):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_with(name, data, mode))
    target = tmp_path / "target"
    with pytest.raises(DownloadError, match=rf"member {re.escape(repr(name))} is .*{reason}"):
        extract_archive(archive, target)
    assert not target.exists() or not any(target.iterdir())


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data))


def _tarinfo(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_tarinfo("../evil.txt"), "'..' segment"),
        (_tarinfo("/tmp/evil.txt"), "absolute path"),
        (_tarinfo("link", tarfile.SYMTYPE, "../outside"), "symbolic link to '../outside'"),
        (_tarinfo("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to '/etc/passwd'"),
        (_tarinfo("hard", tarfile.LNKTYPE, "../../x"), "hard link to '../../x'"),
        (_tarinfo("dev", tarfile.CHRTYPE), "special file"),
        (_tarinfo("fifo", tarfile.FIFOTYPE), "special file"),
    ],
)
def test_unsafe_tar_member_refuses_the_archive(tmp_path, member, reason):
    archive = tmp_path / "a.tar.gz"
    _tar_with(archive, member, b"x")
    target = tmp_path / "target"
    with pytest.raises(
        DownloadError, match=rf"member {re.escape(repr(member.name))} is .*{reason}"
    ):
        extract_archive(archive, target)
    assert not target.exists() or not any(target.iterdir())


def test_safe_tar_with_inner_links_extracts(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("sub/file.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
        tf.addfile(_tarinfo("sub/link", tarfile.SYMTYPE, "file.txt"))
        tf.addfile(_tarinfo("hard.txt", tarfile.LNKTYPE, "sub/file.txt"))
    extract_archive(archive, tmp_path / "t")
    assert (tmp_path / "t/sub/link").read_text() == "hello"
    assert (tmp_path / "t/hard.txt").read_text() == "hello"


def test_not_an_archive(tmp_path):
    (tmp_path / "x.rar").write_bytes(b"")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a zip or tar"):
        extract_archive(tmp_path / "x.rar", tmp_path / "t")
    with pytest.raises(DownloadError, match="not a valid zip"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "t")
    corrupt = bytearray(_zip({"member.bin": b"payload" * 10}))
    corrupt[corrupt.index(b"payload")] ^= 0xFF  # stored data no longer matches its CRC
    (tmp_path / "crc.zip").write_bytes(corrupt)
    with pytest.raises(DownloadError, match="not a valid zip.*CRC"):
        extract_archive(tmp_path / "crc.zip", tmp_path / "t")


_segments = st.lists(st.sampled_from(["a", "b", "..", ".", "c.txt"]), max_size=6)


@settings(max_examples=60, deadline=None)
@given(segments=_segments, use_tar=st.booleans())
def test_member_names_with_dotdot_are_refused_others_stay_inside(segments, use_tar):
    name = "/".join([*segments, "f.txt"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        archive = folder / ("a.tar" if use_tar else "a.zip")
        if use_tar:
            _tar_with(archive, _tarinfo(name), b"data")
        else:
            archive.write_bytes(_zip_with(name, b"data"))
        target = folder / "deep" / "target"
        if ".." in segments:
            with pytest.raises(DownloadError, match="'..' segment"):
                extract_archive(archive, target)
            assert not target.exists()
        else:
            extract_archive(archive, target)
            written = [p for p in folder.rglob("*") if p.is_file() and p != archive]
            assert written and all(p.is_relative_to(target) for p in written)
