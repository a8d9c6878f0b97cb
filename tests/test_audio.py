"""Decoding, resampling and the resample stage's handling of bad files."""

import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

from midlevel_emotion.signal.audio import (decode, is_decoder_chatter, is_truncated, load, native_stderr, resample,
                                           truncation_note)
from midlevel_emotion.signal.resample_stage import find_audio, resample_corpus
from midlevel_emotion.core.errors import AudioError, TooManyFailuresError


def stereo_tone(seconds=2.0, sample_rate=44100, freq=440.0, amplitude=0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    left = amplitude * np.sin(2 * np.pi * freq * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "ogg"])
def test_load_decodes_downmixes_resamples_and_normalises(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, stereo_tone(), 44100, format=fmt.upper() if fmt != "ogg" else "OGG")
    signal = load(path)
    assert signal.dtype == np.float32 and signal.ndim == 1
    # mp3 adds encoder delay/padding of a few ms; lossless formats are exact
    assert abs(len(signal) - 2.0 * 22050) <= (2500 if fmt in ("mp3", "ogg") else 0)
    assert np.max(np.abs(signal)) == pytest.approx(1.0, abs=1e-6)
    # the 440 Hz tone survives resampling: spectral peak at 440 Hz
    spectrum = np.abs(np.fft.rfft(signal[2000:2000 + 16384]))
    assert np.fft.rfftfreq(16384, 1 / 22050)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_resample_removes_content_above_new_nyquist():
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 15000 * t) + np.sin(2 * np.pi * 1000 * t)
    y = resample(x, 44100, 22050)
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / 22050)
    # 15 kHz would alias to 7.05 kHz without the anti-aliasing filter
    assert spectrum[np.abs(freqs - 7050) < 20].max() < 1e-3 * spectrum.max()
    assert len(y) == 22050


def make_bad_files(directory):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "corrupt.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)
    (directory / "empty.mp3").write_bytes(b"")
    sf.write(directory / "zerolength.wav", np.zeros((0, 2), np.float32), 44100)
    sf.write(directory / "silent.wav", np.zeros((44100, 2), np.float32), 44100)
    (directory / "text.flac").write_text("this is not audio")


@pytest.mark.parametrize("name,reason", [
    ("corrupt.mp3", "cannot decode"),
    ("empty.mp3", "empty file"),
    ("zerolength.wav", "zero samples"),
    ("silent.wav", "silent"),
    ("text.flac", "cannot decode"),
    ("missing.wav", "not found"),
])
def test_load_rejects_bad_files_with_file_and_reason(tmp_path, name, reason):
    make_bad_files(tmp_path)
    with pytest.raises(AudioError) as err:
        load(tmp_path / name)
    message = str(err.value)
    assert str(tmp_path / name) in message and reason in message
    assert "\n" not in message


def test_find_audio_rejects_ambiguous_stems(tmp_path):
    sf.write(tmp_path / "001.wav", stereo_tone(0.1), 44100)
    sf.write(tmp_path / "001.flac", stereo_tone(0.1), 44100)
    with pytest.raises(ValueError, match="two audio files for clip '001'"):
        find_audio(tmp_path)


def test_resample_corpus_reports_every_bad_file_and_enforces_threshold(tmp_path):
    raw = tmp_path / "raw"
    audio_dir = raw / "soundtracks" / "audio"
    make_bad_files(audio_dir)
    for i in range(1, 16):
        sf.write(audio_dir / f"{i:03d}.wav", stereo_tone(0.5, freq=200 + 10 * i), 44100)
    out = tmp_path / "resampled"
    # 5 bad of 20 = 25 %: allowed at 0.3, refused at the default 0.02
    report = resample_corpus(raw, out, jobs=2, max_failed_fraction=0.3, progress=False)
    st = report["datasets"]["soundtracks"]
    assert report["datasets"]["midlevel"] == "absent"
    assert st["n_files"] == 20 and st["n_ok"] == 15
    assert {f["clip_id"]: f["reason"].split(" ")[0] for f in st["failed"]} == {
        "corrupt": "cannot", "empty": "empty", "zerolength": "decoded", "silent": "silent", "text": "cannot"}
    assert sorted(p.stem for p in (out / "soundtracks").glob("*.npy")) == [f"{i:03d}" for i in range(1, 16)]
    assert not list((out / "soundtracks").glob(".*"))  # no temporary files left behind
    assert np.load(out / "soundtracks" / "001.npy").shape == (11025,)
    with pytest.raises(TooManyFailuresError, match=r"5 of 20 audio files failed .*report.json"):
        resample_corpus(raw, tmp_path / "again", jobs=1, progress=False)
    # the report is there to read even though the stage failed
    saved = json.loads((tmp_path / "again" / "report.json").read_text())
    assert saved["n_failed"] == 5


def test_resample_corpus_without_any_audio_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio directory"):
        resample_corpus(tmp_path / "raw", tmp_path / "out", progress=False)


def write_mp3(path, seconds, keep_fraction=1.0):
    """A 44.1 kHz stereo mp3 (with the LAME/Xing header that states its length), optionally cut short."""
    sf.write(path, stereo_tone(seconds), 44100, format="MP3")
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    return path


def test_decode_reports_a_file_cut_short_of_its_stated_length(tmp_path):
    whole = decode(write_mp3(tmp_path / "whole.mp3", 6.0))
    assert whole.stated_seconds == pytest.approx(6.0, abs=0.05) and not whole.truncated
    cut = write_mp3(tmp_path / "cut.mp3", 6.0, keep_fraction=0.1)
    with native_stderr():  # libmpg123 notes the short stream on fd 2
        decoded = decode(cut)
    assert decoded.stated_seconds == pytest.approx(6.0, abs=0.05)
    assert decoded.seconds < 1.0 and decoded.truncated
    note = truncation_note(cut, decoded.seconds)
    assert note == f"{cut}: decoded {decoded.seconds:.1f} s of a file whose header says 6.0 s"
    assert truncation_note(tmp_path / "whole.mp3", whole.seconds) is None
    assert truncation_note(tmp_path / "missing.mp3", 1.0) is None


@pytest.mark.parametrize("decoded,stated,truncated", [
    (15.0, 15.0, False), (14.9, 15.0, False), (0.6, 15.0, True), (13.0, 15.0, True), (0.1, 0.3, False)])
def test_truncation_needs_a_clear_shortfall(decoded, stated, truncated):
    assert is_truncated(decoded, stated) is truncated


def test_non_finite_samples_are_one_line(tmp_path):
    samples = stereo_tone(0.5)
    samples[100, 0] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: contains non-finite samples$"):
        load(tmp_path / "nan.wav")


def test_native_stderr_captures_file_descriptor_2(capfd):
    with native_stderr() as lines:
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 20076.\n\n")
        os.write(2, b"something else\n")
        assert lines == []  # filled when the block ends
    assert lines == ["Note: Illegal Audio-MPEG-Header 0x00000000 at offset 20076.", "something else"]
    assert capfd.readouterr().err == ""
    # the CLI's use: pass on what is not decoder chatter, also when the block raises
    with pytest.raises(KeyError):
        with native_stderr(echo=lambda line: not is_decoder_chatter(line)) as lines:
            os.write(2, b"Warning: Xing stream size off\nreal problem\n")
            raise KeyError("x")
    assert capfd.readouterr().err == "real problem\n" and len(lines) == 2


def test_resample_reports_short_truncated_and_noisy_files(tmp_path):
    raw = tmp_path / "raw"
    audio_dir = raw / "midlevel" / "audio"
    audio_dir.mkdir(parents=True)
    for i in range(1, 9):
        sf.write(audio_dir / f"{i}.wav", stereo_tone(0.5, freq=300 + 20 * i), 44100)
    sf.write(audio_dir / "9.wav", stereo_tone(0.01), 44100)  # 441 samples: 220 at 22050 Hz
    write_mp3(audio_dir / "10.mp3", 6.0, keep_fraction=0.1)
    damaged = write_mp3(audio_dir / "11.mp3", 3.0)
    data = bytearray(damaged.read_bytes())
    data[4000:-500] = bytes(len(data) - 4500)
    damaged.write_bytes(bytes(data))
    out = tmp_path / "resampled"
    # one hop at 31.25 fps is 706 samples: clip 9 fails, as does the zeroed mp3 (2 of 11)
    report = resample_corpus(raw, out, min_samples=706, jobs=2, max_failed_fraction=0.2, progress=False)
    mid = report["datasets"]["midlevel"]
    assert report["n_failed"] == 2 and mid["n_ok"] == 9
    reasons = {f["clip_id"]: f["reason"] for f in mid["failed"]}
    assert reasons["9"] == "decoded 0.010 s, shorter than one spectrogram hop (706 samples at 22050 Hz)"
    assert reasons["11"].startswith("cannot decode audio")
    assert not (out / "midlevel" / "9.npy").exists() and (out / "midlevel" / "10.npy").is_file()
    [truncated] = mid["truncated"]
    assert truncated["clip_id"] == "10" and truncated["stated_seconds"] == pytest.approx(6.0, abs=0.05)
    assert 0 < truncated["decoded_seconds"] < 1.0
    noisy = {m["clip_id"]: m for m in mid["decoder_messages"]}
    assert set(noisy) == {"10", "11"}
    assert re.fullmatch(r"\d+ line\(s\) of decoder messages, first: 'Note: Illegal Audio-MPEG-Header.*'",
                        noisy["11"]["summary"])
    assert len(noisy["11"]["lines"]) == len(set(noisy["11"]["lines"])) <= 5
    assert json.loads((out / "report.json").read_text()) == report
    # the short clip counts against resample.max_failed_fraction like any failure
    with pytest.raises(TooManyFailuresError, match="2 of 11 audio files failed") as err:
        resample_corpus(raw, out, min_samples=706, jobs=1, max_failed_fraction=0.1, progress=False)
    assert err.value.report["n_failed"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".resampled.")]  # no staging left
