"""The stage scripts as DVC runs them: a bad input is one line on stderr, never a traceback.

Each test starts a stage script in a subprocess, as ``dvc repro`` does, and checks its exit
status, its stderr and what it left on disk.
"""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "stages"
STAGE_SCRIPTS = sorted(p for p in STAGES.glob("*.py") if not p.name.startswith("_"))

RATINGS = ("\ufeffnumber,valence,energy,tension,anger,fear,happy,sad,tender,TARGET\r\n"
           "001,4.5,3.2,2.1,1.0,1.33,5.67,2,3.5,HAPPY\r\n"
           "007,2.0,6.5,7.83,4.2,5.1,1.1,1.5,1.2,FEAR\r\n")


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("MIDLEVEL_EMOTION_DEBUG", None)
    return env


def run_stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STAGES / f"{name}.py"), *map(str, args)], cwd=cwd,
                          env=environment(), capture_output=True, text=True, timeout=600)


def write_params(tmp_path: Path, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__")
        params[section][name] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def soundtracks_dir(root: Path, ratings: str = RATINGS) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "mean_ratings_set1.csv").write_bytes(ratings.encode("utf-8"))
    return root


def error_lines(stderr: str) -> list[str]:
    """stderr without the progress bars' carriage-return updates."""
    return [line.rsplit("\r", 1)[-1] for line in stderr.splitlines() if line.rsplit("\r", 1)[-1].strip()]


@pytest.mark.parametrize("script", STAGE_SCRIPTS, ids=lambda p: p.stem)
def test_every_stage_ends_through_the_shared_wrapper(script):
    tree = ast.parse(script.read_text())
    guard = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert guard, f"{script.name} has no __main__ block"
    assert ast.unparse(guard[0].body[-1]) == f"run(main, {script.stem!r})", \
        f"{script.name} must end with run(main, {script.stem!r}) (stages/_common.py)"


def test_download_refuses_a_bad_label_file_in_one_line_and_keeps_nothing(tmp_path):
    source = soundtracks_dir(tmp_path / "mine", RATINGS.replace("007,", '"007,'))
    params = write_params(tmp_path, data__source="local", local__soundtracks_dir=str(source))
    done = run_stage("download", "--out", tmp_path / "data" / "raw", "--params", params, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"download: error: {tmp_path / 'data' / 'raw' / 'soundtracks' / 'mean_ratings_set1.csv'}: "
        "line 3: a quoted value is never closed (unclosed quote)"]
    assert list((tmp_path / "data").iterdir()) == []  # neither data/raw nor a staging folder


def test_a_training_stage_prints_a_corpus_error_in_one_line(tmp_path):
    raw = tmp_path / "raw"
    soundtracks_dir(raw / "soundtracks", RATINGS.replace("007,", "7.5,"))
    (tmp_path / "spectrograms").mkdir()
    done = run_stage("train_a2e", "--raw", raw, "--spectrograms", tmp_path / "spectrograms",
                     "--params", ROOT / "params.yaml", "--models", tmp_path / "m", "--results", tmp_path / "r", "--metrics",
                     tmp_path / "m.json", "--plots", tmp_path / "p", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == [
        f"train_a2e: error: {raw / 'soundtracks' / 'mean_ratings_set1.csv'}: line 3, column 'number': "
        "'7.5' is not a whole number; ids are whole numbers from 1 to 360"]


def test_a_missing_params_key_is_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["spectrogram"]["fps"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "raw").mkdir()
    done = run_stage("resample", "--raw", tmp_path / "raw", "--out", tmp_path / "out",
                     "--params", tmp_path / "params.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("resample: error: ") and "spectrogram.fps" in line


def test_resample_fails_too_many_short_clips_in_one_line_per_file(tmp_path):
    audio_dir = tmp_path / "raw" / "soundtracks" / "audio"
    audio_dir.mkdir(parents=True)
    tone = np.sin(np.arange(44100) / 44100 * 2 * np.pi * 440).astype(np.float32)
    sf.write(audio_dir / "001.wav", tone, 44100)
    sf.write(audio_dir / "002.wav", tone[:600], 44100)  # 300 samples at 22050 Hz, under one hop
    params = write_params(tmp_path, resample__jobs=1)
    done = run_stage("resample", "--raw", tmp_path / "raw", "--out", tmp_path / "out", "--params", params,
                     cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = error_lines(done.stderr)
    assert lines[-2:] == [
        f"warning: skipped {audio_dir / '002.wav'}: decoded 0.014 s, shorter than one spectrogram hop "
        "(706 samples at 22050 Hz)",
        f"resample: error: resample: 1 of 2 audio files failed (50.0%, allowed 2% by "
        f"resample.max_failed_fraction); reasons per file in {tmp_path / 'out' / 'report.json'}"]


def ctrl_c_as_in_a_terminal() -> None:
    """A process started in the background by a non-interactive shell inherits SIGINT ignored
    (POSIX), and Python then never raises KeyboardInterrupt; a terminal's Ctrl-C reaches a
    process whose SIGINT is at its default. Restore that in the child before it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing_half_written(tmp_path):
    audio_dir = tmp_path / "raw" / "soundtracks" / "audio"
    audio_dir.mkdir(parents=True)
    tone = (0.3 * np.sin(np.arange(44100) / 44100 * 2 * np.pi * 440)).astype(np.float32)
    for i in range(1, 401):
        sf.write(audio_dir / f"{i:03d}.wav", tone, 44100)
    params = write_params(tmp_path, resample__jobs=1)
    process = subprocess.Popen([sys.executable, str(STAGES / "resample.py"), "--raw", str(tmp_path / "raw"),
                                "--out", str(tmp_path / "out"), "--params", str(params)],
                               cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".out.*/soundtracks/*.npy")):  # it is resampling
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert error_lines(stderr)[-1] == "resample: interrupted"
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))  # the half-built folder is gone


def test_ctrl_c_that_a_library_turns_into_another_error_still_exits_130():
    # numpy's ndarray.tofile turns a KeyboardInterrupt that lands in its path check into a
    # TypeError; the stage was still interrupted by the user, not broken.
    code = ("import os, signal, sys; sys.path.insert(0, sys.argv[1]); from _common import run\n"
            "def main():\n"
            "    try:\n        os.kill(os.getpid(), signal.SIGINT)\n"
            "    except KeyboardInterrupt:\n        raise TypeError('expected str, not BufferedWriter')\n"
            "run(main, 'demo')\n")
    done = subprocess.run([sys.executable, "-c", code, str(STAGES)], env=environment(), capture_output=True,
                          text=True, timeout=120, preexec_fn=ctrl_c_as_in_a_terminal)
    assert (done.returncode, done.stderr) == (130, "demo: interrupted\n")
    bug = subprocess.run([sys.executable, "-c", code.replace("os.kill(os.getpid(), signal.SIGINT)",
                                                             "raise KeyboardInterrupt"), str(STAGES)],
                         env=environment(), capture_output=True, text=True, timeout=120,
                         preexec_fn=ctrl_c_as_in_a_terminal)
    assert bug.returncode == 1 and "TypeError" in bug.stderr  # no Ctrl-C came: still a bug


def test_a_bug_after_the_training_curves_opened_ends_with_its_traceback_and_no_shutdown_noise(tmp_path):
    # DVCLive opens the DVC repository, whose git packs complained ("Exception ignored in ...
    # __del__", about 60 lines) when the interpreter finalised them at exit after a traceback.
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    (tmp_path / "a").write_text("a")
    for command in (["init", "-q"], ["add", "a"], ["commit", "-qm", "a"], ["gc", "-q"]):
        subprocess.run([*git, *command], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=tmp_path, check=True,
                   capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from _common import run\n"
            "def main():\n"
            "    from midlevel_emotion.experiments.protocol import training_curves\n"
            "    curves = training_curves('plots')\n"
            "    return {}['missing']\n"
            "run(main, 'demo')\n")
    done = subprocess.run([sys.executable, "-c", code, str(STAGES)], cwd=tmp_path, env=environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.rstrip().endswith("KeyError: 'missing'"), done.stderr
    assert "Traceback" in done.stderr and "Exception ignored" not in done.stderr


def test_the_wrapper_re_raises_bugs_with_their_traceback(tmp_path):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from _common import run\n"
            "def main():\n    raise TypeError('a bug')\n"
            "run(main, 'demo')\n")
    done = subprocess.run([sys.executable, "-c", code, str(STAGES)], env=environment(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "TypeError: a bug" in done.stderr
    debug = subprocess.run([sys.executable, "-c", code.replace("TypeError", "ValueError"), str(STAGES)],
                           env={**environment(), "MIDLEVEL_EMOTION_DEBUG": "1"}, capture_output=True,
                           text=True, timeout=120)
    assert "Traceback" in debug.stderr  # the debug switch shows every traceback
    plain = subprocess.run([sys.executable, "-c", code.replace("TypeError", "ValueError"), str(STAGES)],
                           env=environment(), capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and plain.stderr == "demo: error: a bug\n"


def test_checkpoints_are_dated_by_the_last_commit_of_code_or_params(tmp_path):
    """SOURCE_DATE_EPOCH: the last commit that changed params.yaml (or code), not a later README commit."""
    env = {**environment(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("SOURCE_DATE_EPOCH", None)

    def git(*args, date=None):
        extra = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}
        subprocess.run(["git", *args], cwd=tmp_path, env={**env, **extra}, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "params.yaml").write_text("train: {}\n")
    git("add", "-A")
    git("commit", "-qm", "params", date="@1700000000 +0000")
    (tmp_path / "README.md").write_text("words\n")
    git("add", "-A")
    git("commit", "-qm", "readme", date="@1800000000 +0000")
    code = (f"import os, sys; sys.path.insert(0, {str(STAGES)!r}); from _common import set_source_date; "
            "set_source_date(); print(os.environ['SOURCE_DATE_EPOCH'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "1700000000", done.stderr
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "SOURCE_DATE_EPOCH": "5"},
                          capture_output=True, text=True)
    assert done.stdout.strip() == "5", done.stderr  # one set by the user is kept
