"""Decoding, resampling and the resample stage's handling of bad files."""

import json

import numpy as np
import pytest
import soundfile as sf

from midlevel_emotion.audio import (AudioError, TooManyFailuresError, find_audio, load, resample,
                                    resample_corpus)


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
