"""Tests for ``midlevel_emotion.download`` against a local HTTP server on 127.0.0.1.

The real hosts (OSF) are unreachable from the build machines, so a small threaded
``http.server`` serves miniature archives with the published layout and can misbehave
on request: truncate bodies, answer 404, ignore ``Range``, or stall.
"""

from __future__ import annotations

import hashlib
import json
import http.server
import io
import re
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from midlevel_emotion import transfer
from midlevel_emotion.download import (
    CorruptArchiveError,
    DownloadError,
    UnsafeArchiveError,
    copy_local,
    download_archives,
    extract_zip,
    fetch,
)

# ----------------------------------------------------------------------------- server


@dataclass
class ServerState:
    root: Path
    # path -> behaviour: {"truncate": n (or -1 = always), "status": code,
    #                      "ignore_range": bool, "delay": seconds}
    rules: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ranges(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        state = self.server.state
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
            rules = state.rules.get(path, {})
            truncate = rules.get("truncate", 0)
            if truncate > 0:
                rules["truncate"] = truncate - 1
        if rules.get("status"):
            self.send_response(rules["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = state.root / path.lstrip("/")
        if not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if rules.get("delay"):
            time.sleep(rules["delay"])
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and not rules.get("ignore_range"):
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if truncate != 0:
            # Promise the full length, deliver half, hang up.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # stalled clients hang up: fine
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState(root=root)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd.state, base
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(transfer, "_RETRY_BACKOFF_SECONDS", 0.0)


def _free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _publish(state: ServerState, name: str, data: bytes) -> str:
    (state.root / name).write_bytes(data)
    return _sha(data)


def _payload(n: int = 10_000) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


# The published layouts, in miniature (content bytes are irrelevant here).
ANNOTATIONS_CSV = b"song_id, melody, articulation\r\n1,5.0,4.0\r\n2,6.0,3.0\r\n"
METADATA_CSV = b"song id;Source;ID at file source\n1;soundtracks;1\n2;allmusic;x\n"
RATINGS_CSV = "\ufeffnumber,valence,energy\r\n001,5.1,3.2\r\n".encode()
MIDLEVEL_AUDIO = {
    "Midlevel_Audio/audio/1.mp3": b"ID3" + b"\x01" * 500,
    "Midlevel_Audio/audio/2.mp3": b"ID3" + b"\x02" * 700,
}
ANNOTATIONS = {
    "metadata_annotations/annotations.csv": ANNOTATIONS_CSV,
    "metadata_annotations/metadata.csv": METADATA_CSV,
}
SOUNDTRACKS = {
    "mean_ratings_set1.csv": RATINGS_CSV,
    "audio/001.mp3": b"ID3" + b"\x03" * 900,
}


# ----------------------------------------------------------------------------- fetch


def test_fetch_happy_path_verifies_and_skips_when_present(server, tmp_path):
    state, base = server
    data = _payload()
    digest = _publish(state, "f.bin", data)
    dest = tmp_path / "out" / "f.bin"

    assert fetch(f"{base}/f.bin", dest, sha256=digest, progress=True) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("f.bin.part").exists()

    # Present and fetched for the same URL and checksum: no second request.
    fetch(f"{base}/f.bin", dest, sha256=digest.upper(), progress=False)
    assert len(state.requests) == 1
    assert json.loads(dest.with_name("f.bin.source.json").read_text()) == {
        "url": f"{base}/f.bin", "sha256": digest}


def test_fetch_replaces_existing_file_with_wrong_checksum(server, tmp_path):
    state, base = server
    data = _payload()
    digest = _publish(state, "f.bin", data)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    fetch(f"{base}/f.bin", dest, sha256=digest, progress=False)
    assert dest.read_bytes() == data
    assert len(state.requests) == 1


def test_truncated_transfer_is_resumed_until_complete(server, tmp_path):
    state, base = server
    data = _payload(20_000)
    digest = _publish(state, "t.bin", data)
    state.rules["/t.bin"] = {"truncate": 2}  # first two responses cut in half
    dest = tmp_path / "t.bin"

    fetch(f"{base}/t.bin", dest, sha256=digest, retries=3, progress=False, chunk_size=4096)

    assert dest.read_bytes() == data
    ranges = state.ranges("/t.bin")
    assert len(ranges) == 3
    # 20000 -> got 10000; resume at 10000 -> got 5000 more; resume at 15000 -> rest.
    assert ranges == [None, "bytes=10000-", "bytes=15000-"]


def test_always_truncated_transfer_fails_naming_url_and_leaves_only_part(server, tmp_path):
    state, base = server
    data = _payload(20_000)
    _publish(state, "t.bin", data)
    state.rules["/t.bin"] = {"truncate": -1}
    dest = tmp_path / "t.bin"
    url = f"{base}/t.bin"

    with pytest.raises(DownloadError) as info:
        fetch(url, dest, retries=2, progress=False)

    msg = str(info.value)
    assert "\n" not in msg
    assert url in msg
    assert "truncated transfer: got 17500 of 20000 bytes" in msg
    assert f"put it at {dest.absolute()}" in msg
    assert len(state.ranges("/t.bin")) == 3  # 1 try + 2 retries
    assert not dest.exists()
    part = dest.with_name("t.bin.part")
    assert part.read_bytes() == data[:17_500]  # what arrived is kept for the next run
    assert info.value.url == url and info.value.path == dest


def test_resume_from_existing_part_uses_range(server, tmp_path):
    state, base = server
    data = _payload(12_345)
    digest = _publish(state, "r.bin", data)
    dest = tmp_path / "r.bin"
    dest.with_name("r.bin.part").write_bytes(data[:5000])

    fetch(f"{base}/r.bin", dest, sha256=digest, progress=False)

    assert state.ranges("/r.bin") == ["bytes=5000-"]
    assert dest.read_bytes() == data
    assert not dest.with_name("r.bin.part").exists()


def test_complete_part_left_by_killed_run_is_accepted(server, tmp_path):
    state, base = server
    data = _payload(3000)
    digest = _publish(state, "c.bin", data)
    dest = tmp_path / "c.bin"
    dest.with_name("c.bin.part").write_bytes(data)

    fetch(f"{base}/c.bin", dest, sha256=digest, progress=False)  # server answers 416

    assert state.ranges("/c.bin") == ["bytes=3000-"]
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    state, base = server
    data = _payload(8000)
    digest = _publish(state, "n.bin", data)
    state.rules["/n.bin"] = {"ignore_range": True}
    dest = tmp_path / "n.bin"
    # A .part whose bytes do NOT match: appending to it would corrupt the result.
    dest.with_name("n.bin.part").write_bytes(b"\xff" * 3000)

    fetch(f"{base}/n.bin", dest, sha256=digest, progress=False)

    assert state.ranges("/n.bin") == ["bytes=3000-"]  # asked, got 200, started over
    assert dest.read_bytes() == data


def test_wrong_checksum_names_both_hashes_and_leaves_nothing(server, tmp_path):
    state, base = server
    data = _payload()
    actual = _publish(state, "w.bin", data)
    expected = "0" * 64
    dest = tmp_path / "w.bin"
    url = f"{base}/w.bin"

    with pytest.raises(DownloadError) as info:
        fetch(url, dest, sha256=expected, progress=False)

    msg = str(info.value)
    assert url in msg and expected in msg and actual in msg
    assert "checksum mismatch" in msg
    assert not dest.exists()
    assert not dest.with_name("w.bin.part").exists()


def test_http_404_is_a_download_error(server, tmp_path):
    _, base = server
    dest = tmp_path / "missing.zip"
    url = f"{base}/missing.zip"
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, retries=3, progress=False)
    msg = str(info.value)
    assert url in msg and "HTTP 404" in msg
    assert f"put it at {dest.absolute()}" in msg
    assert not dest.exists()
    # 404 is permanent: exactly one request, no retries.
    assert len(server[0].ranges("/missing.zip")) == 1


def test_http_503_is_retried(server, tmp_path):
    state, base = server
    _publish(state, "busy.bin", b"x")
    state.rules["/busy.bin"] = {"status": 503}
    with pytest.raises(DownloadError, match=r"HTTP 503 .*gave up after 3 attempts"):
        fetch(f"{base}/busy.bin", tmp_path / "busy.bin", retries=2, progress=False)
    assert len(state.ranges("/busy.bin")) == 3


def test_unreachable_host_names_url_and_manual_path(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/soundtracks.zip"
    dest = tmp_path / "data" / "raw" / "_archives" / "soundtracks.zip"
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, timeout_seconds=2, progress=False)
    assert time.monotonic() - started < 2  # refused is permanent: no retry loop
    msg = str(info.value)
    assert "\n" not in msg
    assert url in msg and "connection refused" in msg
    assert f"or download it yourself and put it at {dest.absolute()}" in msg
    assert not dest.exists()


def test_stalled_server_times_out(server, tmp_path):
    state, base = server
    _publish(state, "slow.bin", b"abc")
    state.rules["/slow.bin"] = {"delay": 0.6}
    with pytest.raises(DownloadError, match="timed out"):
        fetch(f"{base}/slow.bin", tmp_path / "slow.bin", timeout_seconds=0.15, retries=0,
              progress=False)
    assert not (tmp_path / "slow.bin").exists()


# ----------------------------------------------------------------------------- extract


def test_extract_zip_strips_single_wrapper_and_merges(tmp_path):
    audio = tmp_path / "audio.zip"
    audio.write_bytes(_zip_bytes({**MIDLEVEL_AUDIO, "__MACOSX/Midlevel_Audio/._1.mp3": b"x"}))
    dest = tmp_path / "raw" / "midlevel"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("already here")

    files = extract_zip(audio, dest)

    assert files == [dest / "audio" / "1.mp3", dest / "audio" / "2.mp3"]
    assert (dest / "audio" / "1.mp3").read_bytes() == MIDLEVEL_AUDIO["Midlevel_Audio/audio/1.mp3"]
    assert (dest / "keep.txt").read_text() == "already here"
    assert not (dest / "__MACOSX").exists()
    # No temporary extraction directories left behind.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["midlevel"]

    # A lone top folder holding only files is the layout itself: kept by default.
    ann = tmp_path / "ann.zip"
    ann.write_bytes(_zip_bytes(ANNOTATIONS))
    files = extract_zip(ann, dest)
    assert files == [dest / "metadata_annotations" / n for n in ("annotations.csv", "metadata.csv")]
    # Re-extracting is idempotent.
    assert extract_zip(audio, dest) == [dest / "audio" / "1.mp3", dest / "audio" / "2.mp3"]
    assert extract_zip(audio, dest, strip_single_top_dir=False) == [
        dest / "Midlevel_Audio" / "audio" / n for n in ("1.mp3", "2.mp3")
    ]


def test_extract_zip_keeps_top_level_layout_without_wrapper(tmp_path):
    archive = tmp_path / "set1.zip"
    archive.write_bytes(_zip_bytes(SOUNDTRACKS))
    dest = tmp_path / "soundtracks"
    assert extract_zip(archive, dest) == [
        dest / "audio" / "001.mp3", dest / "mean_ratings_set1.csv"
    ]
    assert (dest / "mean_ratings_set1.csv").read_bytes() == RATINGS_CSV


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_extract_zip_rejects_zip_slip(tmp_path, member):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip_bytes({"fine.txt": b"ok", member: b"pwned"}))
    dest = tmp_path / "out" / "x"
    with pytest.raises(ValueError) as info:
        extract_zip(archive, dest)
    assert isinstance(info.value, UnsafeArchiveError)
    assert str(archive) in str(info.value) and repr(member) in str(info.value)
    assert not dest.exists()
    assert not list(tmp_path.rglob("evil.txt"))


def test_extract_zip_rejects_corrupt_archive(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"<html>Sign in to OSF</html>")
    dest = tmp_path / "out"
    with pytest.raises(CorruptArchiveError) as info:
        extract_zip(archive, dest)
    assert str(archive) in str(info.value) and "not a valid zip" in str(info.value)
    assert not dest.exists()


def test_extract_zip_rejects_damaged_member(tmp_path):
    content = b"A" * 1000
    raw = bytearray(_zip_bytes({"a/1.mp3": content, "a/2.mp3": b"B" * 10}, zipfile.ZIP_STORED))
    at = bytes(raw).index(content)
    raw[at + 500] ^= 0xFF  # flip one byte of stored data -> CRC mismatch
    archive = tmp_path / "crc.zip"
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    with pytest.raises(CorruptArchiveError, match=r"member 'a/1.mp3' is damaged"):
        extract_zip(archive, dest)
    assert not (dest / "1.mp3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- archives


def _archives(state: ServerState, base: str) -> list[dict]:
    shas = {
        "midlevel_audio": _publish(state, "midlevel_audio.zip", _zip_bytes(MIDLEVEL_AUDIO)),
        "metadata_annotations": _publish(state, "ann.zip", _zip_bytes(ANNOTATIONS)),
        "soundtracks": _publish(state, "set1.zip", _zip_bytes(SOUNDTRACKS)),
        "readme": _publish(state, "README.txt", b"hello"),
    }
    return [
        {"name": "midlevel_audio", "url": f"{base}/midlevel_audio.zip",
         "sha256": shas["midlevel_audio"], "extract_to": "midlevel"},
        {"name": "metadata_annotations", "url": f"{base}/ann.zip",
         "sha256": shas["metadata_annotations"], "extract_to": "midlevel"},
        {"name": "soundtracks", "url": f"{base}/set1.zip", "sha256": None,
         "extract_to": "soundtracks", "kind": "zip"},
        {"name": "readme", "url": f"{base}/README.txt", "sha256": shas["readme"],
         "extract_to": "soundtracks", "kind": "file", "filename": "README.txt"},
    ]


def test_download_archives_happy_path_layout(server, tmp_path):
    state, base = server
    archives = _archives(state, base)
    raw = tmp_path / "data" / "raw"

    download_archives(archives, raw, progress=False)

    files = sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())
    kept = [f"_archives/{name}{suffix}"
            for name in ("metadata_annotations.zip", "midlevel_audio.zip", "readme--README.txt",
                         "soundtracks.zip")
            for suffix in ("", ".lock", ".source.json")]
    assert files == [
        *kept,
        "midlevel/audio/1.mp3",
        "midlevel/audio/2.mp3",
        "midlevel/metadata_annotations/annotations.csv",
        "midlevel/metadata_annotations/metadata.csv",
        "soundtracks/README.txt",
        "soundtracks/audio/001.mp3",
        "soundtracks/mean_ratings_set1.csv",
    ]
    assert (raw / "midlevel/metadata_annotations/metadata.csv").read_bytes() == METADATA_CSV
    assert (raw / "soundtracks/mean_ratings_set1.csv").read_bytes() == RATINGS_CSV
    assert _sha((raw / "_archives/midlevel_audio.zip").read_bytes()) == archives[0]["sha256"]

    # A re-run downloads nothing again.
    n = len(state.requests)
    download_archives(archives, raw, progress=False)
    assert len(state.requests) == n


def test_download_archives_separate_archive_dir(server, tmp_path):
    state, base = server
    archives = _archives(state, base)[2:3]
    raw, keep = tmp_path / "data" / "raw", tmp_path / "data" / "archives"
    download_archives(archives, raw, progress=False, archive_dir=keep)
    assert (keep / "soundtracks.zip").is_file()
    assert not (raw / "_archives").exists()
    assert (raw / "soundtracks" / "audio" / "001.mp3").is_file()


def test_download_archives_lists_manual_paths_when_offline(tmp_path):
    base = f"http://127.0.0.1:{_free_port()}"
    raw = tmp_path / "data" / "raw"
    archives = [
        {"name": "midlevel_audio", "url": f"{base}/a.zip", "sha256": None,
         "extract_to": "midlevel"},
        {"name": "soundtracks", "url": f"{base}/s.zip", "sha256": None,
         "extract_to": "soundtracks"},
    ]
    with pytest.raises(DownloadError) as info:
        download_archives(archives, raw, progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "2 problems with the 2 dataset archives" in msg
    for name, url in (("midlevel_audio", f"{base}/a.zip"), ("soundtracks", f"{base}/s.zip")):
        assert url in msg
        assert f"put it at {(raw / '_archives' / f'{name}.zip').absolute()}" in msg
    assert not (raw / "midlevel").exists() and not (raw / "soundtracks").exists()


def test_download_archives_corrupt_archive_is_moved_aside(server, tmp_path):
    state, base = server
    _publish(state, "s.zip", b"<html>rate limited</html>")
    raw = tmp_path / "raw"
    archives = [{"name": "soundtracks", "url": f"{base}/s.zip", "sha256": None,
                 "extract_to": "soundtracks"}]
    with pytest.raises(DownloadError) as info:
        download_archives(archives, raw, progress=False)
    assert isinstance(info.value, CorruptArchiveError)
    msg = str(info.value)
    assert "soundtracks.zip" in msg and f"{base}/s.zip" in msg
    assert not (raw / "_archives" / "soundtracks.zip").exists()  # next run re-downloads
    assert (raw / "_archives" / "soundtracks.zip.corrupt").exists()
    assert not (raw / "soundtracks").exists()


def test_download_archives_rejects_malformed_spec(tmp_path):
    with pytest.raises(ValueError, match="extract_to"):
        download_archives([{"name": "x", "url": "http://127.0.0.1:1/x.zip", "sha256": None}],
                          tmp_path)
    with pytest.raises(ValueError, match=r"\.\."):
        download_archives([{"name": "x", "url": "http://127.0.0.1:1/x.zip", "sha256": None,
                            "extract_to": "../outside"}], tmp_path)


# ----------------------------------------------------------------------------- local


def test_copy_local_happy_path(tmp_path):
    mid = tmp_path / "user" / "MidLevel"
    for name, content in MIDLEVEL_AUDIO.items():
        (mid / name.split("/", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        (mid / name.split("/", 1)[1]).write_bytes(content)
    for name, content in ANNOTATIONS.items():
        (mid / name).parent.mkdir(parents=True, exist_ok=True)
        (mid / name).write_bytes(content)
    st = tmp_path / "user" / "Set1"
    for name, content in SOUNDTRACKS.items():
        (st / name).parent.mkdir(parents=True, exist_ok=True)
        (st / name).write_bytes(content)
    raw = tmp_path / "data" / "raw"

    copy_local(mid, st, raw)
    copy_local(mid, st, raw)  # idempotent

    for src_root, sub in ((mid, "midlevel"), (st, "soundtracks")):
        for src in (p for p in src_root.rglob("*") if p.is_file()):
            dst = raw / sub / src.relative_to(src_root)
            assert dst.read_bytes() == src.read_bytes()
    assert (raw / "midlevel/metadata_annotations/annotations.csv").is_file()
    assert (raw / "soundtracks/audio/001.mp3").is_file()

    # Only Soundtracks is fine too.
    raw2 = tmp_path / "raw2"
    copy_local(None, st, raw2)
    assert (raw2 / "soundtracks/mean_ratings_set1.csv").is_file()
    assert not (raw2 / "midlevel").exists()


def test_copy_local_missing_directory(tmp_path):
    st = tmp_path / "Set1"
    st.mkdir()
    (st / "mean_ratings_set1.csv").write_bytes(RATINGS_CSV)
    missing = tmp_path / "no_such_midlevel"
    raw = tmp_path / "raw"
    with pytest.raises(FileNotFoundError) as info:
        copy_local(missing, st, raw)
    assert str(missing) in str(info.value)
    assert not raw.exists()  # validated before copying anything
    with pytest.raises(ValueError):
        copy_local(None, None, raw)
