"""Tests for ``midlevel_emotion.data.download_stage`` against a local HTTP server on 127.0.0.1.

The real hosts (OSF) are unreachable from the build machines, so a small threaded
``http.server`` serves miniature archives with the published layout and can misbehave
on request: truncate bodies, answer 404, ignore ``Range``, or stall.
"""

from __future__ import annotations

import hashlib
import json
import os
import http.server
import io
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from midlevel_emotion.data import download_stage as dl
from midlevel_emotion.data import transfer
from midlevel_emotion.data.download_stage import copy_local, download_archives, extract_zip, fetch
from midlevel_emotion.core.config import Params
from midlevel_emotion.core.params import load_params
from midlevel_emotion.core.errors import CorruptArchiveError, DownloadError, ParamsError, UnsafeArchiveError

# ----------------------------------------------------------------------------- server


@dataclass
class ServerState:
    root: Path
    # path -> behaviour: {"truncate": n (or -1 = always), "status": code,
    #                      "ignore_range": bool, "delay": seconds, "trickle": seconds per
    #                      byte, "no_length": bool (no Content-Length; close to end the body)}
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
        if rules.get("no_length"):
            self.close_connection = True  # the end of the body is the end of the connection
        else:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if rules.get("trickle"):
            for i in range(len(body)):  # one byte per `trickle` seconds
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(rules["trickle"])
            return
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
#: The repository's download bounds (params.yaml is their only home; download_archives has no defaults).
LIMITS = load_params(Path(__file__).resolve().parents[1] / "params.yaml").download

ANNOTATIONS_CSV = b"song_id, melody, articulation\r\n1,5.0,4.0\r\n2,6.0,3.0\r\n"
METADATA_CSV = b"song id;Source;ID at file source\n1;soundtracks;1\n2;allmusic;x\n"
RATINGS_CSV = ("\ufeffnumber,valence,energy,tension,anger,fear,happy,sad,tender,TARGET\r\n"
               "001,5.1,3.2,4.0,2.5,3.3,4.4,2.2,5.0,HAPPY\r\n").encode()
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

    download_archives(archives, raw, limits=LIMITS, progress=False)

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
    download_archives(archives, raw, limits=LIMITS, progress=False)
    assert len(state.requests) == n


def test_download_archives_separate_archive_dir(server, tmp_path):
    state, base = server
    archives = _archives(state, base)[2:3]
    raw, keep = tmp_path / "data" / "raw", tmp_path / "data" / "archives"
    download_archives(archives, raw, limits=LIMITS, progress=False, archive_dir=keep)
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
        download_archives(archives, raw, limits=LIMITS, progress=False)
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
        download_archives(archives, raw, limits=LIMITS, progress=False)
    assert isinstance(info.value, CorruptArchiveError)
    msg = str(info.value)
    assert "soundtracks.zip" in msg and f"{base}/s.zip" in msg
    assert not (raw / "_archives" / "soundtracks.zip").exists()  # next run re-downloads
    assert (raw / "_archives" / "soundtracks.zip.corrupt").exists()
    assert not (raw / "soundtracks").exists()


def test_download_archives_rejects_malformed_spec(tmp_path):
    with pytest.raises(ValueError, match="extract_to"):
        download_archives([{"name": "x", "url": "http://127.0.0.1:1/x.zip", "sha256": None}],
                          tmp_path, limits=LIMITS)
    with pytest.raises(ValueError, match=r"\.\."):
        download_archives([{"name": "x", "url": "http://127.0.0.1:1/x.zip", "sha256": None,
                            "extract_to": "../outside"}], tmp_path, limits=LIMITS)


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


# ----------------------------------------------------------------------------- fault injection
# One test per way a download can go wrong (issue 11, items 2-9), through the public entry
# points: fetch, extract_zip, download_archives, prepare_raw, and DVC itself.


def _absolute_paths(message: str) -> list[Path]:
    return [Path(token.rstrip(",;)")) for token in message.split() if token.startswith("/")]


def test_trickling_server_is_abandoned_by_rate_and_by_deadline(server, tmp_path):
    state, base = server
    _publish(state, "slow.zip", _payload(5000))
    state.rules["/slow.zip"] = {"trickle": 0.02}  # ~50 bytes/s: each read succeeds, forever
    dest = tmp_path / "slow.zip"
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(f"{base}/slow.zip", dest, retries=1, progress=False, min_bytes_per_second=1000,
              rate_window_seconds=0.3)
    assert time.monotonic() - started < 3
    msg = str(info.value)
    assert "too slow" in msg and "download.min_bytes_per_second=1000" in msg
    assert "gave up after 2 attempts" in msg and "\n" not in msg
    assert len(state.ranges("/slow.zip")) == 2 and not dest.exists()

    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"not complete within download.deadline_seconds"):
        fetch(f"{base}/slow.zip", dest, retries=5, progress=False, deadline_seconds=0.4)
    assert time.monotonic() - started < 2  # the deadline is not per attempt: no retries after it
    assert dest.with_name("slow.zip.part").stat().st_size > 0  # kept for a resume


def test_body_without_length_is_complete_only_if_the_zip_checks(server, tmp_path):
    state, base = server
    data = _zip_bytes(SOUNDTRACKS)
    _publish(state, "s.zip", data)
    state.rules["/s.zip"] = {"no_length": True, "truncate": -1}
    dest = tmp_path / "s.zip"
    with pytest.raises(DownloadError, match=r"sent no length and the body is not a complete zip"):
        fetch(f"{base}/s.zip", dest, retries=0, progress=False, verify=dl.verify_zip)
    assert not dest.exists()
    assert dest.with_name("s.zip.part").is_file()  # partial, resumed by the next run

    state.rules["/s.zip"] = {"no_length": True}
    fetch(f"{base}/s.zip", dest, retries=0, progress=False, verify=dl.verify_zip)
    assert dest.read_bytes() == data
    assert state.ranges("/s.zip")[-1] is not None  # resumed from the kept part


def test_two_downloads_of_one_archive_share_it_through_the_lock(server, tmp_path):
    state, base = server
    data = _payload(20_000)
    digest = _publish(state, "big.zip", data)
    state.rules["/big.zip"] = {"delay": 0.4}
    dest = tmp_path / "big.zip"
    results: list[object] = []

    def run():
        try:
            results.append(fetch(f"{base}/big.zip", dest, sha256=digest, progress=False))
        except Exception as exc:  # noqa: BLE001 (the assertion below shows it)
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [dest, dest]
    assert dest.read_bytes() == data
    assert len(state.ranges("/big.zip")) == 1  # the second waited, then found it complete

    # A second download that cannot wait long enough fails with one line naming the lock.
    import fcntl
    with open(dest.with_name("big.zip.lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        dest.unlink()
        with pytest.raises(DownloadError) as info:
            fetch(f"{base}/big.zip", dest, progress=False, deadline_seconds=0.3)
    assert "another process is still downloading it" in str(info.value)
    assert "big.zip.lock" in str(info.value) and "\n" not in str(info.value)


def test_changed_url_or_digest_downloads_again_but_a_hand_placed_file_is_kept(server, tmp_path):
    state, base = server
    old, new = _payload(3000), _payload(4000)
    _publish(state, "old.zip", old)
    new_sha = _publish(state, "new.zip", new)
    dest = tmp_path / "a.zip"
    fetch(f"{base}/old.zip", dest, progress=False)
    fetch(f"{base}/old.zip", dest, progress=False)
    assert len(state.requests) == 1

    fetch(f"{base}/new.zip", dest, progress=False)  # URL changed in params
    assert dest.read_bytes() == new and state.ranges("/new.zip") == [None]
    fetch(f"{base}/new.zip", dest, sha256=new_sha, progress=False)  # digest added
    assert len(state.ranges("/new.zip")) == 2

    # No record: the user put it there by hand (the manual fallback); it is used as is.
    hand = tmp_path / "hand.zip"
    hand.write_bytes(b"my copy")
    assert fetch(f"{base}/new.zip", hand, progress=False).read_bytes() == b"my copy"
    assert len(state.ranges("/new.zip")) == 2


def _bomb(size: int = 3 << 20) -> bytes:
    return _zip_bytes({"audio/001.mp3": b"ID3", "mean_ratings_set1.csv": b"\0" * size})


@pytest.mark.parametrize("members, limits, reason", [
    ({"a/x.mp3": b"1", "a/y.mp3": b"2"}, {}, None),
    (None, {"max_compression_ratio": 200}, r"expands \d+-fold .*possible zip bomb"),
    ({"x.mp3": b"1" * 5000}, {"max_extracted_bytes": 1000}, r"expands to 5000 bytes, over "
     r"download.max_extracted_bytes=1000"),
    ({"x/a.mp3": b"1", "x\\a.mp3": b"2"}, {}, r"member 'x\\\\a.mp3' appears twice"),
    ({"x": b"1", "x/a.mp3": b"2"}, {}, r"member 'x' is both a file and a folder"),
    ({"a" * 300 + ".mp3": b"1"}, {}, r"is too long"),
])
def test_extract_zip_refuses_hostile_archives_before_writing(tmp_path, members, limits, reason):
    archive = tmp_path / "in.zip"
    archive.write_bytes(_bomb() if members is None else _zip_bytes(members))
    dest = tmp_path / "out"
    if reason is None:
        assert len(extract_zip(archive, dest, **limits)) == 2
        return
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        extract_zip(archive, dest, **limits)
    assert "\n" not in str(info.value)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["in.zip"]


def test_extract_zip_refuses_duplicate_and_encrypted_members(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("audio/1.mp3", b"first")
        zf.writestr("audio/1.mp3", b"second")
    archive = tmp_path / "dup.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match=r"'audio/1.mp3' appears twice"):
        extract_zip(archive, tmp_path / "out")

    # zipfile cannot write encrypted members: set the "encrypted" flag bit in the local
    # and central headers, as a password-protected zip has it.
    raw = bytearray(_zip_bytes({"secret.mp3": b"x"}))
    raw[raw.index(b"PK\x03\x04") + 6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchiveError, match=r"'secret.mp3' is encrypted"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_archives_and_urls_are_reported_together_and_the_rest_still_tried(server, tmp_path):
    state, base = server
    _publish(state, "bomb.zip", _bomb())
    _publish(state, "ok.zip", _zip_bytes(ANNOTATIONS))
    archives = [
        {"name": "bad_url", "url": "htp:/nowhere", "extract_to": "x"},
        {"name": "bad_port", "url": "http://127.0.0.1:port/x.zip", "extract_to": "x"},
        {"name": "no_url", "extract_to": "x"},
        {"name": "bomb", "url": f"{base}/bomb.zip", "extract_to": "soundtracks"},
        {"name": "ok", "url": f"{base}/ok.zip", "extract_to": "midlevel"},
    ]
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError) as info:
        download_archives(archives, raw, limits=LIMITS, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "problems with the 5 dataset archives" in msg
    for part in ("[bad_url] Could not download 'htp:/nowhere': malformed URL",
                 "[bad_port] Could not download", "[no_url] dataset archive",
                 "the required key 'url' is missing"):
        assert part in msg
    assert state.ranges("/ok.zip") == [None]  # still fetched
    # Downloads failed, so nothing was extracted; fix the params and only the bomb is left.
    with pytest.raises(UnsafeArchiveError) as info:
        download_archives(archives[3:], raw, limits=LIMITS, progress=False)
    msg = str(info.value)
    assert msg.startswith("[bomb] bomb.zip from ") and "possible zip bomb" in msg
    assert (raw / "midlevel/metadata_annotations/annotations.csv").is_file()  # the rest: done
    assert (raw / "_archives/bomb.zip.corrupt").is_file()
    assert not (raw / "_archives/bomb.zip").exists()
    assert all(p.exists() for p in _absolute_paths(msg) if not p.name == "bomb.zip")
    assert ".extracting-" not in msg
    assert len(state.ranges("/ok.zip")) == 1  # a re-run keeps the finished download


def _soundtracks_folder(root: Path) -> Path:
    for name, content in SOUNDTRACKS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def _local_params(tmp_path: Path, soundtracks_dir: str, midlevel_dir: str = "none") -> Params:
    """The repository's params with these ``local`` folders, as if read from ``tmp_path/params.yaml``."""
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["local"] = {"midlevel_dir": midlevel_dir, "soundtracks_dir": soundtracks_dir}
    return Params.from_mapping(raw, str(tmp_path / "params.yaml"))


def test_prepare_raw_local_removes_stale_staging_and_names_no_staging_folder(tmp_path):
    raw = tmp_path / "data" / "raw"
    stale = tmp_path / "data" / ".raw.k1ll3d"
    (stale / "midlevel").mkdir(parents=True)
    (stale / "midlevel" / "big.mp3").write_bytes(b"x" * 1000)
    source = _soundtracks_folder(tmp_path / "mine")
    present = dl.prepare_raw("local", raw, _local_params(tmp_path, str(source)), progress=False)
    assert present == {"midlevel": False, "soundtracks": True}
    assert (raw / "soundtracks/audio/001.mp3").is_file()
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]

    (source / "audio/001.mp3").unlink()
    (source / "audio").rmdir()
    with pytest.raises(ValueError) as info:
        dl.prepare_raw("local", raw, _local_params(tmp_path, str(source)), progress=False)
    assert str(raw / "soundtracks") in str(info.value) and ".raw." not in str(info.value)
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw"]


@pytest.mark.parametrize("inside", ["data/raw/soundtracks", "data/.raw.old1/soundtracks",
                                    "models/a2e/mine", "reports"])
def test_prepare_raw_refuses_local_folder_inside_a_pipeline_output(tmp_path, inside):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  download:\n    cmd: x\n    outs: [data/raw]\n"
        "  train:\n    cmd: y\n    outs: [models/a2e]\n    metrics: [{metrics/a.json: {cache: false}}]\n"
        "  report:\n    cmd: z\n    outs: [reports]\n")
    source = _soundtracks_folder(tmp_path / inside)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError) as info:
        dl.prepare_raw("local", tmp_path / "data" / "raw",
                       _local_params(tmp_path, str(source)), progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "local.soundtracks_dir" in msg and "lies inside" in msg
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing removed or written


def test_local_folder_params_none_and_tilde(tmp_path):
    with pytest.raises(ValueError, match=r"write the full path; DVC, .* does not expand '~'"):
        dl.prepare_raw("local", tmp_path / "raw", _local_params(tmp_path, "~/x"), progress=False)
    with pytest.raises(ValueError, match="both unset"):
        dl.prepare_raw("local", tmp_path / "raw", _local_params(tmp_path, "none", "none"),
                       progress=False)
    # null is refused as params.yaml is read (DVC cannot template it); the folder reader takes it as unset
    with pytest.raises(ParamsError, match=r"params.yaml: local.soundtracks_dir must be a non-empty text, got None"):
        _local_params(tmp_path, None)
    from midlevel_emotion.data.localcopy import local_dir
    assert local_dir(None, "local.soundtracks_dir") is None and local_dir("None", "local.midlevel_dir") is None


@pytest.mark.slow  # ~25 s: real DVC in a throwaway git repository
def test_dvc_status_sees_edits_in_the_local_folder_and_refuses_one_inside_an_output(tmp_path):
    """The real download stage of dvc.yaml in a throwaway git repo, with data.source: local."""
    root = Path(__file__).resolve().parents[1]
    repo = tmp_path / "repo"
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["download"]
    for dep in stage["deps"]:
        if "${" in dep:
            continue
        (repo / dep).parent.mkdir(parents=True, exist_ok=True)
        if (root / dep).is_dir():  # a package layer folder
            shutil.copytree(root / dep, repo / dep, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(root / dep, repo / dep)
    shutil.copy2(root / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(root / "none", repo / "none")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"download": stage}}))
    params = yaml.safe_load((root / "params.yaml").read_text())
    source = _soundtracks_folder(tmp_path / "mine")
    params["data"]["source"], params["local"]["soundtracks_dir"] = "local", str(source)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
                              capture_output=True, text=True)

    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert dvc("init", "-q").returncode == 0
    done = dvc("repro")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (repo / "data/raw/soundtracks/audio/001.mp3").is_file()
    assert "up to date" in dvc("status").stdout.lower()

    (source / "mean_ratings_set1.csv").write_bytes(RATINGS_CSV + b"002,4.0,2.0\r\n")
    status = dvc("status").stdout
    assert "download:" in status and f"modified:           {source}" in status

    # A local folder inside data/raw: DVC refuses before it deletes anything.
    params["local"]["soundtracks_dir"] = "data/raw/soundtracks"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    refused = dvc("repro")
    assert refused.returncode != 0
    assert "both a dependency and an output" in refused.stderr
    assert (repo / "data/raw/soundtracks/audio/001.mp3").is_file()
