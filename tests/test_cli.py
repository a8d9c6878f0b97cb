"""The ``midlevel-emotion`` command line: explain, batch CSV, compare, info, and bad input."""

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel_emotion import __version__
from midlevel_emotion.cli import chart, main, output
from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.core.constants import SpectrogramSettings
from midlevel_emotion.learning.models import build_model
from midlevel_emotion.learning.checkpoints import save_checkpoint
from midlevel_emotion.learning.clips import ClipSet
from midlevel_emotion.learning.training import train
from configs import train_config

SR = 44100
CONFIG = train_config(crop_seconds=1.0, eval_hop_seconds=1.0, max_epochs=1, batch_size=4)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _clip_set(n, seed):
    rng = np.random.default_rng(seed)
    targets = rng.uniform(size=(n, 15)).astype(np.float32)
    specs = [rng.normal(size=(40 + 5 * i, 149)).astype(np.float32) + targets[i, 0] for i in range(n)]
    return ClipSet([str(i) for i in range(n)], specs, targets)


def _save(path, model, kind, corpus="synthetic"):
    spec = {**SpectrogramSettings().as_dict(), "mean": 0.3, "std": 0.4}
    save_checkpoint(path, model, kind=kind, config=CONFIG, spectrogram=spec, corpus=corpus, seed=0,
                    params_digest="0123456789ab", test_pearson={**{f: 0.5 for f in MIDLEVEL_FEATURES},
                                                                **{e: 0.25 for e in EMOTIONS}})


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """A tiny trained Joint checkpoint (1 s window), a real-corpus twin, and unusable ones."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("checkpoints")
    result = train("joint", _clip_set(8, 0), _clip_set(4, 1), mean=0.3, std=0.4, config=CONFIG, seed=0,
                   progress=False)
    paths = {"joint": root / "joint.pt", "real": root / "joint_real.pt", "a2e": root / "a2e.pt",
             "junk": root / "junk.pt"}
    _save(paths["joint"], result.model, "joint")
    _save(paths["real"], result.model, "joint", corpus="soundtracks")
    _save(paths["a2e"], build_model("a2e", width=CONFIG.width).eval(), "a2e")
    paths["junk"].write_bytes(b"this is not a checkpoint")
    return paths


def _chords(seconds, chords, stereo=True):
    """A few seconds per chord of additive tones with a gentle envelope."""
    t = np.arange(int(seconds * SR)) / SR
    parts = np.array_split(t, len(chords))
    out = []
    for chord, part in zip(chords, parts):
        local = part - part[0]
        tone = sum(np.sin(2 * np.pi * f * local) for f in chord) / len(chord)
        env = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2 * local))  # pulse at 4 Hz
        out.append(0.5 * tone * env)
    mono = np.concatenate(out).astype(np.float32)
    return np.stack([mono, 0.8 * mono], axis=1) if stereo else mono


C_MAJOR = (261.63, 329.63, 392.00)
A_MINOR = (220.00, 261.63, 329.63)


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    """Good and bad input files, each kind in its own path (and all of them in ``music/``)."""
    root = tmp_path_factory.mktemp("audio")
    music = root / "music"
    music.mkdir()
    files = {
        "song_wav": music / "song.wav",
        "song_mp3": music / "song.mp3",
        "clip3": music / "clip3.flac",
        "short": music / "short.wav",
        "silent": music / "silent.wav",
        "empty": music / "empty.wav",
        "corrupt": music / "corrupt.mp3",
        "text": music / "notes.txt",
    }
    song = _chords(20.0, [C_MAJOR, A_MINOR])
    sf.write(files["song_wav"], song, SR)
    sf.write(files["song_mp3"], song, SR)
    sf.write(files["clip3"], _chords(3.0, [A_MINOR, C_MAJOR], stereo=False), SR)
    sf.write(files["short"], _chords(0.5, [C_MAJOR]), SR)  # shorter than the 1 s window
    sf.write(files["silent"], np.zeros((2 * SR, 2), dtype=np.float32), SR)
    files["empty"].write_bytes(b"")
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    files["text"].write_text("not audio at all\n" * 20)
    good = root / "good"
    good.mkdir()
    shutil.copy(files["song_wav"], good / "b_song.wav")
    shutil.copy(files["clip3"], good / "a_clip.flac")
    files["good_dir"] = good
    files["music"] = music
    return files


def run(capsys, *argv):
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def err_lines(err):
    return [line for line in err.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------
# explain, one file


def test_explain_table_lists_every_feature_and_emotion_with_the_synthetic_warning(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["song_wav"], "--checkpoint", checkpoints["joint"])
    assert code == 0, err
    for name in (*MIDLEVEL_FEATURES, *EMOTIONS, "bias", "prediction"):
        assert name in out
    header = next(line for line in out.splitlines() if line.startswith("feature"))
    assert header.split() == ["feature", "value", "test", "r", *EMOTIONS]
    # rows are aligned: every row of the effects table ends where the header ends, or one further
    # in the column of the "*" that marks an unreliable feature (the rules span that column)
    table = out.split(header)[1].split("\n\n")[0].splitlines()
    assert all(len(line) == len(header) + (line.endswith(("*", "-"))) for line in table[1:] if line.strip())
    assert "song.wav" in out and "windows" in out  # 20 s -> a song-level mean over windows
    warnings = [line for line in err_lines(err) if "synthetic" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:")


def test_explain_warns_about_a_file_that_decodes_short_of_its_stated_length(capsys, checkpoints, tmp_path):
    import soundfile as sf
    t = np.arange(int(44100 * 6.0)) / 44100
    sf.write(tmp_path / "cut.mp3", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3, 44100, format="MP3")
    data = (tmp_path / "cut.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[:len(data) // 10])  # the header still says 6 s
    code, out, err = run(capsys, "explain", tmp_path / "cut.mp3", "--checkpoint", checkpoints["joint"])
    assert code == 0, err
    notes = [line for line in err_lines(err) if "decoded" in line]
    assert len(notes) == 1 and notes[0].endswith("of a file whose header says 6.0 s"), err
    code, out, err = run(capsys, "explain", tmp_path / "cut.mp3", "--checkpoint", checkpoints["joint"],
                         "--csv", tmp_path / "out.csv")
    assert code == 0 and sum("whose header says 6.0 s" in line for line in err_lines(err)) == 1, err


def test_explain_without_synthetic_corpus_has_no_warning(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["clip3"], "-c", checkpoints["real"])
    assert code == 0 and "synthetic" not in err and "warning" not in err
    code, out, _ = run(capsys, "explain", audio["clip3"], "-c", checkpoints["real"], "--json")
    assert json.loads(out)["warning"] is None


def test_explain_json_effects_plus_bias_equal_the_prediction(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["song_mp3"], "-c", checkpoints["joint"], "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data["midlevel"]) == list(MIDLEVEL_FEATURES) and list(data["emotions"]) == list(EMOTIONS)
    for e in EMOTIONS:
        total = sum(data["effects"][e][f] for f in MIDLEVEL_FEATURES) + data["bias"][e]
        assert total == pytest.approx(data["emotions"][e], abs=1e-5)
    assert "synthetic" in data["warning"]
    assert "synthetic" not in err  # JSON mode: the warning is a field, stdout stays pure JSON
    # a 20 s song heard through a 1 s window: a time curve, and its mean is the song-level value
    curve = np.asarray(data["emotion_curve"])
    assert curve.shape == (len(data["times"]), 8) and len(data["times"]) >= 10
    assert np.allclose(curve.mean(axis=0), [data["emotions"][e] for e in EMOTIONS], atol=1e-5)
    assert np.asarray(data["midlevel_curve"]).shape == (len(data["times"]), 7)


def test_hop_sets_the_number_of_windows(capsys, checkpoints, audio):
    def n_windows(hop):
        code, out, _ = run(capsys, "explain", audio["song_wav"], "-c", checkpoints["joint"], "--json",
                           "--hop", hop)
        assert code == 0
        return len(json.loads(out)["times"])

    dense, sparse = n_windows(1), n_windows(5)
    assert dense > sparse >= 4


def test_plot_writes_a_bar_chart_for_one_window_and_curves_for_a_song(capsys, checkpoints, audio, tmp_path,
                                                                      monkeypatch):
    drawn = []
    original = chart.plot
    monkeypatch.setattr(chart, "plot", lambda exp, out, warning: (drawn.append(len(exp.times)),
                                                            original(exp, out, warning)))
    bars, curves = tmp_path / "bars.png", tmp_path / "sub" / "curves.png"
    assert run(capsys, "explain", audio["short"], "-c", checkpoints["joint"], "--plot", bars)[0] == 0
    assert run(capsys, "explain", audio["song_wav"], "-c", checkpoints["joint"], "--plot", curves)[0] == 0
    for png in (bars, curves):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert drawn[0] == 1 and drawn[1] > 1
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["bars.png", "curves.png"]


def test_short_clip_is_padded_with_one_note(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["short"], "-c", checkpoints["joint"])
    assert code == 0
    notes = [line for line in err_lines(err) if "shorter" in line]
    assert len(notes) == 1 and "short.wav" in notes[0] and "window" in notes[0]
    assert "prediction" in out


# ---------------------------------------------------------------------------------------
# batch


def test_batch_csv_has_one_row_per_file_and_lists_failures(capsys, checkpoints, audio, tmp_path):
    out_csv = tmp_path / "out" / "emotions.csv"
    code, out, err = run(capsys, "explain", audio["music"], "--csv", out_csv, "-c", checkpoints["joint"])
    assert code == 1
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    expected = sorted(p for p in audio["music"].iterdir() if p.suffix in (".mp3", ".wav", ".flac", ".ogg"))
    assert [Path(r["file"]) for r in rows] == expected  # notes.txt is not an audio file: skipped
    assert list(rows[0]) == ["file", "status", *MIDLEVEL_FEATURES, *EMOTIONS, "error", "n_runs",
                             *(f"r_{f}" for f in MIDLEVEL_FEATURES), "unreliable"]
    status = {Path(r["file"]).name: r for r in rows}
    failed = {"silent.wav", "empty.wav", "corrupt.mp3"}
    assert {n for n, r in status.items() if r["status"] == "failed"} == failed
    assert "silent" in status["silent.wav"]["error"] and "empty" in status["empty.wav"]["error"]
    assert "decode" in status["corrupt.mp3"]["error"]
    for name, row in status.items():
        if name not in failed:
            assert row["error"] == "" and all(0 <= abs(float(row[e])) < 1e3 for e in EMOTIONS)
    lines = err_lines(err)
    tail = lines[lines.index(next(line for line in lines if "of 7 files failed" in line)):]
    assert len(tail) == 4 and all(any(n in line for line in tail[1:]) for n in failed)
    assert sum("synthetic" in line for line in lines) == 1
    assert "Traceback" not in err and out == ""
    assert [p.name for p in out_csv.parent.iterdir()] == ["emotions.csv"]  # no temporary file left


def test_batch_all_good_exits_zero_and_explicit_files_keep_their_order(capsys, checkpoints, audio, tmp_path):
    out_csv = tmp_path / "good.csv"
    code, out, err = run(capsys, "explain", audio["good_dir"], "--csv", out_csv, "-c", checkpoints["joint"])
    assert code == 0, err
    names = [Path(r["file"]).name for r in csv.DictReader(out_csv.open())]
    assert names == ["a_clip.flac", "b_song.wav"]
    # several files without --csv: a summary table; an explicit non-audio file is a failed row
    code, out, err = run(capsys, "explain", audio["song_wav"], audio["text"], "-c", checkpoints["joint"])
    assert code == 1 and "song.wav" in out and "notes.txt" in err and "failed" in out
    code, out, err = run(capsys, "explain", audio["clip3"], audio["short"], "--csv", "-",
                         "-c", checkpoints["joint"])
    assert code == 0 and len(list(csv.DictReader(out.splitlines()))) == 2


def test_batch_json_lists_every_file(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["clip3"], audio["empty"], "--json", "-c", checkpoints["joint"])
    data = json.loads(out)
    assert code == 1 and [f["status"] for f in data["files"]] == ["ok", "failed"]
    assert "synthetic" in data["warning"] and data["files"][1]["error"]


THROUGHPUT = re.compile(r"^explain: (\d+) clips? in (\d+\.\d) s \((\d+\.\d) clips/s; decode (\d+) %, model (\d+) %\)$")


def test_batch_reports_clips_per_second_on_stderr_only(capsys, checkpoints, audio):
    code, out, err = run(capsys, "explain", audio["music"], "--csv", "-", "-c", checkpoints["joint"], "--no-progress")
    assert code == 1  # three bad files
    rows = list(csv.DictReader(out.splitlines()))  # stdout stays a clean CSV
    assert len(rows) == 7 and "clips/s" not in out
    matches = [THROUGHPUT.match(line) for line in err_lines(err)]
    found = [m for m in matches if m]
    assert len(found) == 1 and "clips/s" not in err.replace(found[0].group(0), ""), err
    clips, seconds, rate, decode, model = found[0].groups()
    assert int(clips) == sum(r["status"] == "ok" for r in rows) == 4  # explained files, failed ones not
    # the rate is clips over the unrounded seconds: within the rounding of both printed numbers
    low, high = float(seconds) - 0.05, float(seconds) + 0.05
    assert float(seconds) > 0 and int(clips) / high - 0.05 <= float(rate) <= int(clips) / max(low, 1e-9) + 0.05
    assert int(decode) > 0 and int(model) > 0 and int(decode) + int(model) <= 101
    lines = err_lines(err)  # after the summary line, before the list of failures
    assert THROUGHPUT.match(lines[lines.index(next(line for line in lines if "4 explained" in line)) + 1])
    code, out, err = run(capsys, "explain", audio["good_dir"], "--json", "-c", checkpoints["joint"])
    assert code == 0 and json.loads(out)["n_files"] == 2
    assert sum(bool(THROUGHPUT.match(line)) for line in err_lines(err)) == 1
    # one file is not a batch: its table, no counts and no clips/s
    code, out, err = run(capsys, "explain", audio["clip3"], "-c", checkpoints["joint"])
    assert code == 0 and "clips/s" not in err + out


def test_batch_results_equal_each_file_explained_alone(capsys, checkpoints, audio, tmp_path):
    """Windows of several files share forward passes; the numbers are those of one file at a time."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("song_wav", "clip3", "short"):
        shutil.copy(audio[name], folder / audio[name].name)
    shutil.copy(audio["corrupt"], folder / "bad.mp3")
    code, out, err = run(capsys, "explain", folder, "--json", "-c", checkpoints["joint"], "--no-progress")
    batch = json.loads(out)["files"]
    assert code == 1 and [Path(f["file"]).name for f in batch] == ["bad.mp3", "clip3.flac", "short.wav", "song.wav"]
    assert batch[0]["status"] == "failed" and "decode" in batch[0]["error"] and batch[0]["explanation"] is None
    for entry in batch[1:]:
        code, out, err = run(capsys, "explain", entry["file"], "--json", "-c", checkpoints["joint"])
        alone, together = json.loads(out), entry["explanation"]
        assert code == 0 and entry["status"] == "ok" and together["times"] == alone["times"]
        for key in ("midlevel_curve", "emotion_curve"):  # float summation order only (BatchNorm in eval mode)
            np.testing.assert_allclose(together[key], alone[key], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(list(together["emotions"].values()), list(alone["emotions"].values()),
                                   rtol=1e-5, atol=1e-5)


def test_batch_usage_errors(capsys, checkpoints, audio, tmp_path):
    (tmp_path / "nothing").mkdir()
    code, _, err = run(capsys, "explain", tmp_path / "nothing", "--csv", tmp_path / "x.csv",
                       "-c", checkpoints["joint"])
    assert code == 2 and len(err_lines(err)) == 1 and "nothing" in err
    code, _, err = run(capsys, "explain", audio["song_wav"], tmp_path / "missing.mp3", "--csv",
                       tmp_path / "x.csv", "-c", checkpoints["joint"])
    assert code == 2 and len(err_lines(err)) == 1 and "missing.mp3" in err
    assert not (tmp_path / "x.csv").exists()
    code, _, err = run(capsys, "explain", audio["good_dir"], "--plot", tmp_path / "p.png",
                       "-c", checkpoints["joint"])
    assert code == 2 and "--plot" in err


# ---------------------------------------------------------------------------------------
# compare and info


def test_compare_shows_both_profiles_and_drivers(capsys, checkpoints, audio):
    code, out, err = run(capsys, "compare", audio["song_wav"], audio["clip3"], "-c", checkpoints["joint"])
    assert code == 0, err
    text = out
    assert "song.wav" in out and "clip3.flac" in out and "main drivers of A - B" in out
    for name in (*EMOTIONS, *MIDLEVEL_FEATURES):
        assert name in out
    assert sum("synthetic" in line for line in err_lines(err)) == 1
    code, out, _ = run(capsys, "compare", audio["song_wav"], audio["clip3"], "-c", checkpoints["joint"], "--json")
    data = json.loads(out)
    assert code == 0 and {"a", "b", "comparison", "warning"} <= set(data)
    for e in EMOTIONS:
        entry = data["comparison"]["emotions"][e]
        assert entry["a"] == pytest.approx(data["a"]["emotions"][e]) and entry["b"] == data["b"]["emotions"][e]
        shares = sum(f["difference"] for f in entry["features"]) + entry["bias_difference"]
        assert shares == pytest.approx(entry["difference"], abs=1e-5)
        # the table row names the emotion's largest driver with its share
        top = entry["features"][0]
        row = next(line for line in text.splitlines() if line.startswith(e + " "))
        assert f"{top['feature']} {output.num(top['difference'], sign=True)}" in row
        assert output.num(entry['difference'], sign=True) in row


def test_info_describes_the_checkpoint(capsys, checkpoints):
    code, out, err = run(capsys, "info", checkpoints["joint"])
    assert code == 0, err
    for text in ("joint", "synthetic", "0123456789ab", "1.00 s", "32 frames", "valence", "minorness", "0.250"):
        assert text in out
    assert "synthetic" in err
    code, out, _ = run(capsys, "info", checkpoints["a2e"], "--json")
    data = json.loads(out)
    assert data["kind"] == "a2e" and data["explainable"] is False and data["seed"] == 0
    assert data["test_pearson"]["valence"] == 0.25 and "synthetic" in data["warning"]
    assert data["input"]["crop_seconds"] == 1.0 and data["params_hash"] == "0123456789ab"


# ---------------------------------------------------------------------------------------
# bad input: one line, the right exit status, no traceback


@pytest.mark.parametrize("key, code, reason", [
    ("text", 2, "decode"),
    ("corrupt", 2, "decode"),
    ("empty", 2, "empty"),
    ("silent", 2, "silent"),
])
def test_bad_audio_is_one_line_naming_the_file(capsys, checkpoints, audio, key, code, reason):
    got, out, err = run(capsys, "explain", audio[key], "-c", checkpoints["joint"])
    lines = err_lines(err)
    assert got == code and out == ""
    assert len(lines) == 1 and str(audio[key]) in lines[0] and reason in lines[0]
    assert "Traceback" not in err


def test_missing_input_and_directory_without_csv(capsys, checkpoints, audio, tmp_path):
    got, out, err = run(capsys, "explain", tmp_path / "nope.mp3", "-c", checkpoints["joint"])
    assert got == 2 and err_lines(err) == [f"midlevel-emotion: error: {tmp_path / 'nope.mp3'}: file not found"]
    got, out, err = run(capsys, "compare", audio["song_wav"], tmp_path / "nope.mp3", "-c", checkpoints["joint"])
    assert got == 2 and len(err_lines(err)) == 1 and "nope.mp3" in err


@pytest.mark.parametrize("key, reason", [("missing", "not found"), ("junk", "not a readable checkpoint"),
                                         ("a2e", "a2e")])
def test_missing_or_incompatible_checkpoint(capsys, checkpoints, audio, tmp_path, key, reason):
    path = checkpoints.get(key, tmp_path / "models" / "none.pt")
    for argv in (["explain", audio["song_wav"], "-c", path], ["info", path]):
        if key == "a2e" and argv[0] == "info":
            continue  # info reads any checkpoint kind
        got, out, err = run(capsys, *argv)
        lines = err_lines(err)
        assert got == 2 and out == "" and "Traceback" not in err
        assert len(lines) == 1 and str(path) in lines[0] and reason in lines[0]


def test_default_checkpoint_is_relative_to_the_current_directory(capsys, audio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, _, err = run(capsys, "explain", audio["song_wav"])
    assert got == 2 and "models/joint/joint_seed_0.pt" in err and len(err_lines(err)) == 1


def test_model_error_is_exit_1_and_debug_shows_the_traceback(capsys, checkpoints, audio, monkeypatch):
    import midlevel_emotion.explanation.song as song_module

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch in layer 3\nsecond line")

    monkeypatch.setattr(song_module, "explain", broken)
    got, out, err = run(capsys, "explain", audio["song_wav"], "-c", checkpoints["joint"])
    lines = err_lines(err)
    assert got == 1 and len(lines) == 1 and "song.wav" in lines[0] and "RuntimeError" in lines[0]
    assert "Traceback" not in err
    got, out, err = run(capsys, "explain", audio["song_wav"], "-c", checkpoints["joint"], "--debug")
    assert got == 1 and "Traceback" in err and "shape mismatch" in err
    monkeypatch.undo()
    got, out, err = run(capsys, "--debug", "explain", audio["corrupt"], "-c", checkpoints["joint"])
    assert got == 2 and "Traceback" in err and "AudioError" in err


@pytest.mark.parametrize("argv", [
    ["explain"],
    ["explain", "x.wav", "--hop", "-1"],
    ["explain", "x.wav", "--hop", "soon"],
    ["explain", "x.wav", "--plot", "out.xyz"],
    ["compare", "a.wav"],
    ["frobnicate"],
    [],
])
def test_usage_errors_exit_2(capsys, argv, audio):
    argv = [str(audio["song_wav"]) if a == "x.wav" else a for a in argv]
    got, out, err = run(capsys, *argv)
    assert got == 2 and "Traceback" not in err and err.strip()


# ---------------------------------------------------------------------------------------
# the installed executable


def _executable():
    exe = Path(sys.executable).parent / "midlevel-emotion"
    if not exe.exists():
        exe = shutil.which("midlevel-emotion")
    assert exe, "midlevel-emotion is not installed (pip install -e .)"
    return str(exe)


def test_installed_executable_version_and_help():
    exe = _executable()
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"midlevel-emotion {__version__}"
    for command in ([], ["explain"], ["compare"], ["info"]):
        done = subprocess.run([str(exe), *command, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "examples:" in done.stdout and "usage: midlevel-emotion" in done.stdout


def test_installed_executable_corrupt_mp3_is_one_line_without_decoder_noise(checkpoints, audio):
    """The mp3 decoder writes its own notes to file descriptor 2; the user still sees one line."""
    done = subprocess.run([_executable(), "explain", str(audio["corrupt"]), "-c", str(checkpoints["joint"])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"midlevel-emotion: error: {audio['corrupt']}: "
                                        + done.stderr.split(f"{audio['corrupt']}: ", 1)[1].strip()]
    assert "decode" in done.stderr and "Traceback" not in done.stderr and "Error opening ''" not in done.stderr


# ---------------------------------------------------------------------------------------
# no data loss: an output never replaces an input


def _snapshot(paths):
    return {p: p.read_bytes() for p in paths}


def test_output_over_an_input_or_with_an_audio_suffix_is_refused(capsys, checkpoints, audio, tmp_path):
    song = tmp_path / "a.wav"
    shutil.copy(audio["song_wav"], song)
    (tmp_path / "link.csv").symlink_to(song)
    (tmp_path / "link.png").symlink_to(song)
    os.link(song, tmp_path / "hard.csv")
    ckpt = tmp_path / "model.pt"
    shutil.copy(checkpoints["joint"], ckpt)
    (tmp_path / "folder.csv").mkdir()
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(audio["clip3"], batch / "x.flac")
    before = _snapshot([song, ckpt, batch / "x.flac"])
    cases = [
        (["explain", song, "--csv", song], "audio suffix"),                       # the case
        (["explain", song, "--csv", tmp_path / "new.mp3"], "audio suffix"),        # any audio name
        (["explain", song, "--csv", tmp_path / "NEW.OPUS"], "audio suffix"),
        (["explain", song, "--csv", tmp_path / "link.csv"], "over the input"),     # via a symlink
        (["explain", song, "--csv", tmp_path / "hard.csv"], "over the input"),     # via a hard link
        (["explain", song, "--csv", ckpt], "over the input"),                      # the checkpoint
        (["explain", song, "--csv", tmp_path / "folder.csv"], "is a directory"),
        (["explain", song, "--plot", song], "unsupported plot format"),
        (["explain", song, "--plot", tmp_path / "link.png"], "over the input"),
        (["explain", batch, "--csv", batch / "x.flac"], "audio suffix"),           # a file found in a folder
        (["explain", batch, "--csv", tmp_path / "batch" / ".." / "batch" / "x.flac"], "audio suffix"),
    ]
    for argv, reason in cases:
        if "--checkpoint" not in argv:
            argv = [*argv, "--checkpoint", ckpt]
        code, out, err = run(capsys, *argv)
        lines = err_lines(err)
        assert code == 2 and out == "", (argv, err)
        assert len(lines) == 1 and reason in lines[0] and "Traceback" not in err, (argv, err)
    assert _snapshot([song, ckpt, batch / "x.flac"]) == before
    assert (tmp_path / "link.csv").is_symlink() and not (tmp_path / "new.mp3").exists()
    # a plain new name next to the input is fine
    assert run(capsys, "explain", song, "--csv", tmp_path / "a.csv", "-c", ckpt)[0] == 0
    assert _snapshot([song, ckpt]) == {k: before[k] for k in (song, ckpt)}


# ---------------------------------------------------------------------------------------
# damaged checkpoints: exit 2, one line naming the file and what is wrong


def _damaged(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    return payload


def _nan_weight(payload):
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = payload["state_dict"][name].clone().fill_(float("nan"))


DAMAGE = {
    "no spectrogram": (lambda p: p.pop("spectrogram"), "lacks 'spectrogram'"),
    "no input": (lambda p: p.pop("input"), "lacks 'input'"),
    "no state_dict": (lambda p: p.pop("state_dict"), "lacks 'state_dict'"),
    "no std": (lambda p: p["spectrogram"].pop("std"), "lacks spectrogram.std"),
    "unknown kind": (lambda p: p.update(kind="a2x"), "unknown model kind 'a2x'"),
    "extra architecture key": (lambda p: p["architecture"].update(depth=64), "unknown architecture key(s) 'depth'"),
    "zero sample rate": (lambda p: p["spectrogram"].update(sample_rate=0), "spectrogram.sample_rate must be a positive"),
    "zero fps": (lambda p: p["spectrogram"].update(fps=0.0), "spectrogram.fps must be a positive"),
    "negative fps": (lambda p: p["spectrogram"].update(fps=-31.25), "spectrogram.fps must be a positive"),
    "zero crop": (lambda p: p["input"].update(crop_frames=0), "input.crop_frames must be a positive"),
    "zero crop seconds": (lambda p: p["input"].update(crop_seconds=0.0), "input.crop_seconds must be a positive"),
    "zero std": (lambda p: p["spectrogram"].update(std=0.0), "std > 0"),
    "nan std": (lambda p: p["spectrogram"].update(std=float("nan")), "std > 0"),
    "nan weights": (_nan_weight, "contains NaN or infinite values"),
    "fmin above fmax": (lambda p: p["spectrogram"].update(fmin=p["spectrogram"]["fmax"] + 1.0), "0 < fmin < fmax"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_checkpoint_is_exit_2_with_one_line(capsys, checkpoints, audio, tmp_path, name):
    change, reason = DAMAGE[name]
    path = tmp_path / "damaged.pt"
    torch.save(_damaged(checkpoints["joint"], change), path)
    commands = [["explain", audio["clip3"], "-c", path], ["explain", audio["good_dir"], "--csv", "-", "-c", path],
                ["compare", audio["clip3"], audio["song_wav"], "-c", path]]
    if name != "fmin above fmax":  # info shows any loadable checkpoint; only explaining needs a usable filterbank
        commands.append(["info", path])
    for argv in commands:
        code, out, err = run(capsys, *argv)
        lines = err_lines(err)
        assert code == 2 and out == "" and "Traceback" not in err, (argv, err)
        assert len(lines) == 1 and str(path) in lines[0] and reason in lines[0], (argv, err)


def test_non_finite_model_output_is_exit_2_not_a_table_of_n_a(capsys, audio, tmp_path):
    """Finite but huge weights overflow float32: an error naming the checkpoint, not "n/a" cells."""
    result_model = build_model("joint", width=CONFIG.width).eval()
    with torch.no_grad():
        result_model.midlevel_layer.weight.fill_(3e38)
    path = tmp_path / "overflow.pt"
    _save(path, result_model, "joint")
    for argv in (["explain", audio["clip3"], "-c", path], ["explain", audio["good_dir"], "--csv", tmp_path / "o.csv",
                                                           "-c", path, "--no-progress"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and "n/a" not in out and len(err_lines(err)) == 1, err
        assert str(path) in err and "not finite" in err
    assert not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------------------------------
# CSV cells a spreadsheet would run are quoted; numbers stay numbers


def test_batch_csv_escapes_formula_cells_but_not_numbers(capsys, checkpoints, audio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).wav", "+1.wav", "-2.wav", "@SUM(A1).wav", "plain.wav"]
    for name in names:
        shutil.copy(audio["clip3"].with_suffix(".flac"), tmp_path / name.replace(".wav", ".flac"))
    (tmp_path / "=bad.wav").write_text("not audio")
    inputs = [n.replace(".wav", ".flac") for n in names] + ["=bad.wav"]
    code, out, err = run(capsys, "explain", "--csv", "out.csv", "-c", checkpoints["joint"], "--no-progress", "--",
                         *inputs)
    assert code == 1  # =bad.wav fails
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = [r["file"] for r in rows]
    assert files == ["'=HYPERLINK(1).flac", "'+1.flac", "'-2.flac", "'@SUM(A1).flac", "plain.flac", "'=bad.wav"]
    for row in rows[:-1]:
        values = [row[c] for c in (*MIDLEVEL_FEATURES, *EMOTIONS)]
        assert all(not v.startswith("'") for v in values)
        assert all(np.isfinite(float(v)) for v in values)  # numbers, negative ones included, stay numbers
    assert rows[-1]["status"] == "failed" and rows[-1]["error"]


def test_csvsafe_escapes_only_text():
    from midlevel_emotion.core.csvsafe import frame_text, rows_text, safe_cell
    import pandas as pd

    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "a=b", "", -0.12, 3)] == \
        ["'=1+1", "'+1", "'-1", "'@x", "'\tx", "'\rx", "a=b", "", -0.12, 3]
    text = rows_text(["file", "v"], [{"file": "-x.wav", "v": -0.12}, {"file": "ok.wav", "v": None}])
    assert text == "file,v\n'-x.wav,-0.120000\nok.wav,\n"
    frame = pd.DataFrame({"song": ["=cmd", "1"], "effect": [-0.5, 0.25]})
    assert frame_text(frame) == "song,effect\n'=cmd,-0.5\n1,0.25\n"


# ---------------------------------------------------------------------------------------
# permissions follow the umask


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_umask_permissions(capsys, checkpoints, audio, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert run(capsys, "explain", audio["clip3"], "--plot", tmp_path / "chart.png", "-c", checkpoints["joint"])[0] == 0
        assert run(capsys, "explain", audio["good_dir"], "--csv", tmp_path / "out" / "t.csv", "-c", checkpoints["joint"],
                   "--no-progress")[0] == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "chart.png", tmp_path / "out" / "t.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["chart.png", "out", "t.csv"]  # no temporary files


# ---------------------------------------------------------------------------------------
# Ctrl-C: exit 130, one line, nothing half-written


def test_interrupt_mid_batch_is_130_one_line_and_keeps_the_old_csv(capsys, checkpoints, audio, tmp_path, monkeypatch):
    import midlevel_emotion.explanation.clip as clip_module

    target = tmp_path / "out.csv"
    target.write_text("the previous table\n")
    original, calls = clip_module.prepare_clip, []

    def interrupted(*args, **kwargs):  # the batch decodes each file through prepare_clip
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(clip_module, "prepare_clip", interrupted)
    code, out, err = run(capsys, "explain", audio["good_dir"], audio["clip3"], "--csv", target,
                         "-c", checkpoints["joint"], "--no-progress")
    assert code == 130 and out == "" and err_lines(err) == ["midlevel-emotion: interrupted"]
    assert target.read_text() == "the previous table\n" and sorted(tmp_path.iterdir()) == [target]


def test_interrupt_while_the_csv_is_renamed_leaves_no_temporary_file(capsys, checkpoints, audio, tmp_path,
                                                                      monkeypatch):
    from midlevel_emotion.core import fileio

    def interrupted_replace(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted_replace)
    code, _, err = run(capsys, "explain", audio["good_dir"], "--csv", tmp_path / "out.csv",
                       "-c", checkpoints["joint"], "--no-progress")
    assert code == 130 and err_lines(err)[-1] == "midlevel-emotion: interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


SIGINT_ON_SECOND_FILE = """
import os, signal, sys
from midlevel_emotion.cli import main
from midlevel_emotion.explanation import clip
original, calls = clip.prepare_clip, []
def prepare_clip(*args, **kwargs):  # the batch decodes each file through prepare_clip
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered in the middle of the batch
    return original(*args, **kwargs)
clip.prepare_clip = prepare_clip
sys.exit(main.main(sys.argv[1:]))
"""


def test_real_sigint_in_a_batch_process(checkpoints, audio, tmp_path):
    from test_stages import ctrl_c_as_in_a_terminal

    done = subprocess.run([sys.executable, "-c", SIGINT_ON_SECOND_FILE, "explain", str(audio["good_dir"]),
                           str(audio["clip3"]), "--csv", str(tmp_path / "out.csv"), "-c", str(checkpoints["joint"]),
                           "--no-progress"], capture_output=True, text=True, timeout=300,
                          preexec_fn=ctrl_c_as_in_a_terminal)
    assert done.returncode == 130 and done.stdout == ""
    assert done.stderr.splitlines() == ["midlevel-emotion: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_interrupt_in_every_command_is_130_and_one_line(capsys, checkpoints, audio, tmp_path, monkeypatch):
    import midlevel_emotion.explanation.song as song_module
    import midlevel_emotion.learning.checkpoints as checkpoints_module
    from midlevel_emotion.core import fileio

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    cases = [
        (checkpoints_module, "load_checkpoint", ["info", checkpoints["joint"]]),
        (song_module, "explain", ["compare", audio["clip3"], audio["song_wav"], "-c", checkpoints["joint"]]),
        (song_module, "explain", ["explain", audio["clip3"], "--json", "-c", checkpoints["joint"]]),
        (fileio.os, "replace", ["explain", audio["clip3"], "--plot", tmp_path / "chart.png", "-c", checkpoints["joint"]]),
    ]
    for module, name, argv in cases:
        with monkeypatch.context() as patch:
            patch.setattr(module, name, interrupt)
            code, out, err = run(capsys, *argv)
        assert code == 130 and err_lines(err)[-1] == "midlevel-emotion: interrupted" and "Traceback" not in err, argv
    assert list(tmp_path.iterdir()) == []  # the chart was never half-written
