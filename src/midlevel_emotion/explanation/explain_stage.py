"""The ``explain`` DVC stage: Figures 3-5, Table 4 and their data (paper Section 7).

Route: labels -> Figure 4 (correlations of the annotations, no model); the Joint model of the
first run -> its test clips' predictions -> Figure 3 (effects over songs), Figure 5 (the
emotion layer's weights), the Section 7.2 song pair (:mod:`.pairs`) and Table 4; every run's
Joint model -> the pair's effects -> their mean and spread over runs (the song pair's effects
figure and ``song_pair_effects.csv``: one run's model is one draw of the training). Every output
in :data:`PLOT_OUTPUTS` / :data:`REPORT_OUTPUTS` always exists after a run: one that cannot be
made becomes an image stating why, a CSV with the header only, or a report saying so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import figures
from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, checkpoint_file
from ..data.labels import Labels, load_labels
from ..core.csvsafe import frame_text
from ..core.errors import CheckpointError
from .effects import effects, emotion_layer, spread
from .network import load_model
from ..signal.store import SpectrogramStore
from ..core.fileio import write_text
from ..core.config import Params
from .pairs import correlation_matrix, scaled_distances, select_pair, song_pair_frame, song_pair_markdown
from ..learning.inference import predict_checkpoint

#: Everything the stage writes (relative to --plots / --reports); all always exist after a run.
PLOT_OUTPUTS = ("effects.png", "effects.csv", "correlation_heatmap.png", "correlation.csv", "joint_weights.png",
                "joint_weights.csv", "song_pair.csv", "song_pair_effects.png", "song_pair_effects.csv")
REPORT_OUTPUTS = ("song_pair.md",)

# The outputs that need the Joint model: figure title (None for data files) ...
_MODEL_OUTPUTS = {"effects.png": "Figure 3 (effects)", "effects.csv": None,
                  "joint_weights.png": "Figure 5 (Joint weights)", "joint_weights.csv": None,
                  "song_pair.csv": None, "song_pair_effects.png": "Song pair effects",
                  "song_pair_effects.csv": None}
# ... and the header a data file keeps when it cannot be filled.
_COLUMNS = {"correlation.csv": ["feature", "emotion", "r"],
            "effects.csv": ["song", "emotion", "feature", "effect", "example"],
            "joint_weights.csv": ["feature", "emotion", "weight"],
            "song_pair.csv": ["emotion", "predicted_a", "predicted_b", "annotated_a", "annotated_b"],
            "song_pair_effects.csv": ["song", "emotion", "feature", "mean", "std", "min", "max", "sign_agreement"]}
# How many of the pair's largest mean effects song_pair.md lists with their sign agreement.
_REPORTED_EFFECTS = 8


def write_csv(path: Path | str, frame: pd.DataFrame) -> None:
    """Write a CSV atomically (floats with 6 significant digits, text cells spreadsheet-safe)."""
    write_text(path, frame_text(frame, float_format="%.6g"))


def effects_frame(song_ids: list[str], midlevel: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                  examples: dict[str, str] | None = None) -> pd.DataFrame:
    """Effects of many songs in long format (the data of Figure 3).

    Columns ``song, emotion, feature, effect, example`` (``example`` names the highlighted
    songs, e.g. ``"A: song #153"``; empty for the others). Rows: songs x emotions x features.
    """
    all_effects = effects(weight, bias, midlevel)  # (n, 8, 7)
    examples = examples or {}
    per_song = len(EMOTIONS) * len(MIDLEVEL_FEATURES)
    return pd.DataFrame({**_song_cells(song_ids), "effect": all_effects.reshape(-1),
                         "example": np.repeat([examples.get(s, "") for s in song_ids], per_song)})


def spread_frame(song_ids: list[str], run_effects: np.ndarray) -> pd.DataFrame:
    """Effects of songs over runs in long format: their mean and spread (``song_pair_effects.csv``).

    Parameters
    ----------
    song_ids : list of str
        The songs, in the order of ``run_effects``' second axis.
    run_effects : np.ndarray
        (n_runs, n_songs, 8, 7): each run's effects of each song.

    Returns
    -------
    pd.DataFrame
        Columns ``song, emotion, feature, mean, std, min, max, sign_agreement``; rows as in
        :func:`effects_frame`. ``std`` (ddof=1), ``min``, ``max`` and ``sign_agreement`` are
        :func:`midlevel_emotion.explanation.effects.spread`'s; with one run ``std`` is empty (NaN),
        ``min = max = mean`` and ``sign_agreement`` is 1.
    """
    run_effects = np.asarray(run_effects, dtype=np.float64)
    shape = (len(song_ids), len(EMOTIONS), len(MIDLEVEL_FEATURES))
    if run_effects.ndim != 4 or run_effects.shape[1:] != shape or len(run_effects) < 1:
        raise ValueError(f"expected (n_runs, *{shape}) effects, got {run_effects.shape}")
    cells = run_effects.reshape(len(run_effects), -1)  # one column per song x emotion x feature
    stats = pd.DataFrame([spread(cells[:, k]) for k in range(cells.shape[1])])
    return pd.DataFrame({**_song_cells(song_ids), "mean": cells.mean(axis=0),
                         **{key: stats[key].to_numpy() for key in ("std", "min", "max", "sign_agreement")}})


def _song_cells(song_ids: list[str]) -> dict[str, np.ndarray]:
    """The ``song, emotion, feature`` columns of songs x emotions x features, features fastest."""
    n = len(song_ids)
    return {"song": np.repeat(song_ids, len(EMOTIONS) * len(MIDLEVEL_FEATURES)),
            "emotion": np.tile(np.repeat(EMOTIONS, len(MIDLEVEL_FEATURES)), n),
            "feature": np.tile(MIDLEVEL_FEATURES, n * len(EMOTIONS))}


def matrix_frame(matrix: np.ndarray, value: str) -> pd.DataFrame:
    """A (7, 8) feature x emotion matrix in long format: ``feature, emotion, <value>``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(MIDLEVEL_FEATURES), len(EMOTIONS)):
        raise ValueError(f"expected a (7, 8) matrix, got {matrix.shape}")
    return pd.DataFrame({"feature": np.repeat(MIDLEVEL_FEATURES, len(EMOTIONS)),
                         "emotion": np.tile(EMOTIONS, len(MIDLEVEL_FEATURES)),
                         value: matrix.reshape(-1)})


@dataclass
class _Outputs:
    """Where the stage writes, and the summary of what it wrote or could not make."""

    plots_dir: Path
    reports_dir: Path
    summary: dict[str, Any] = field(default_factory=lambda: {"written": [], "not_run": {}, "pair": None})

    def not_run(self, name: str, title: str | None, reason: str) -> None:
        """The placeholder for ``name``: an image stating ``reason``, or a header-only CSV."""
        path = self.plots_dir / name
        if name.endswith(".png"):
            figures.not_run_figure(path, title or name, reason)
        else:
            write_csv(path, pd.DataFrame(columns=_COLUMNS.get(name, [])))
        self.summary["not_run"][name] = reason


def explain_stage(raw_dir: Path, spectrogram_dir: Path, models_dir: Path, plots_dir: Path, reports_dir: Path,
                  params: Params, *, log: Any = print) -> dict[str, Any]:
    """The ``explain`` stage: Figures 3-5, Table 4 and their data.

    Uses the Joint model of the first run (``models/joint/joint_seed_<runs.seeds[0]>.pt``) and
    that run's test clips (``extra.test_ids`` in the checkpoint) for Figures 3 and 5, the pair
    and Table 4; the pair's effects figure and ``song_pair_effects.csv`` show the pair's effects
    under the Joint model of every run in ``runs.seeds`` (their mean and spread). Every output in
    :data:`PLOT_OUTPUTS` / :data:`REPORT_OUTPUTS` is written: a figure that cannot be made
    (no Joint model, no mid-level annotations) becomes an image stating why, its CSV has the
    header only, and ``song_pair.md`` says what was not run.

    Returns
    -------
    dict
        ``{"written": [...], "not_run": {output: reason}, "pair": {...} or None}``.
    """
    raw_dir, models_dir = Path(raw_dir), Path(models_dir)
    rule = params.explain.pair_selection  # its options: checked as params.yaml is read
    seeds = list(params.runs.seeds)
    out = _Outputs(Path(plots_dir), Path(reports_dir))
    labels = load_labels(raw_dir)
    _correlation_outputs(labels, out)

    checkpoints = [checkpoint_file(models_dir / "joint", "joint", seed) for seed in seeds]
    reason = _joint_not_run(models_dir, checkpoints, seeds)
    if reason is not None:
        for name, title in _MODEL_OUTPUTS.items():
            out.not_run(name, f"{title} not available" if title else None, reason)
        write_text(out.reports_dir / "song_pair.md", f"# Song-level explanation (Section 7.2): not run\n\n{reason}\n")
        out.summary["not_run"]["song_pair.md"] = reason
        return out.summary

    model, meta = load_model(checkpoints[0])
    test_ids = _test_ids(checkpoints[0], meta, labels, raw_dir)
    store = SpectrogramStore.open(Path(spectrogram_dir) / "soundtracks")
    started = time.perf_counter()
    outputs = predict_checkpoint(model, meta, [store.clip(i) for i in test_ids])
    log(f"explain: predicted {len(test_ids)} test clips in {time.perf_counter() - started:.1f} s")
    pair = _select_song_pair(labels, test_ids, rule)
    started = time.perf_counter()
    runs = _pair_runs(pair, model, outputs, checkpoints[1:], store)
    log(f"explain: effects of the song pair under {len(seeds)} runs' Joint models in "
        f"{time.perf_counter() - started:.1f} s")
    _model_outputs(out, model, outputs, test_ids, pair, runs, str(checkpoints[0]), seeds)
    return out.summary


def _correlation_outputs(labels: Labels, out: _Outputs) -> None:
    """Figure 4: correlations between the annotated mid-level features and emotions (no model)."""
    if labels.soundtracks_midlevel is None or labels.emotions is None:
        reason = ("No mid-level annotations for the Soundtracks clips in data/raw: the correlation needs both "
                  "the mid-level annotations and the emotion ratings.")
        out.not_run("correlation_heatmap.png", "Figure 4 (correlations) not available", reason)
        out.not_run("correlation.csv", None, reason)
        return
    ids = [i for i in labels.emotions.index if i in labels.soundtracks_midlevel.index]
    mid = labels.soundtracks_midlevel.loc[ids, list(MIDLEVEL_FEATURES)].to_numpy()
    emo = labels.emotions.loc[ids, list(EMOTIONS)].to_numpy()
    r = correlation_matrix(mid, emo)
    figures.heatmap_figure(r, out.plots_dir / "correlation_heatmap.png", row_labels=MIDLEVEL_FEATURES,
                           col_labels=EMOTIONS, title=f"Pearson correlation between annotated mid-level "
                           f"features and emotions ({len(ids)} Soundtracks clips)",
                           colorbar_label="Pearson r", limit=1.0)
    write_csv(out.plots_dir / "correlation.csv", matrix_frame(r, "r"))
    out.summary["written"] += ["correlation_heatmap.png", "correlation.csv"]


def _joint_not_run(models_dir: Path, checkpoints: list[Path], seeds: list[int]) -> str | None:
    """Why the Joint model's outputs cannot be made (its stage recorded NOT_RUN.md), or None.

    Raises
    ------
    CheckpointError
        A run's checkpoint is missing: train_joint writes one per seed, so a missing one is a
        stale or damaged pipeline, not a reason to show fewer runs. Checked before any work.
    """
    not_run_file = models_dir / "joint" / "NOT_RUN.md"
    if not_run_file.is_file():
        detail = " ".join(not_run_file.read_text(encoding="utf-8").split("\n", 1)[-1].split())
        return f"The Joint model was not run ({not_run_file}): {detail}"
    for k, (checkpoint, seed) in enumerate(zip(checkpoints, seeds)):
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: checkpoint not found (run the train_joint stage first; "
                                  f"runs.seeds[{k}] = {seed})")
    return None


def _test_ids(checkpoint: Path, meta: dict, labels: Labels, raw_dir: Path) -> list[str]:
    """The run's test clips, each with emotion ratings and mid-level annotations."""
    test_ids = [str(i) for i in (meta.get("extra") or {}).get("test_ids", [])]
    if len(test_ids) < 2:
        raise CheckpointError(f"{checkpoint}: records {len(test_ids)} test clip(s) (extra.test_ids); "
                              "the song-level explanation needs at least two")
    if labels.emotions is None or labels.soundtracks_midlevel is None:
        raise ValueError(f"{checkpoint} exists but {raw_dir} has no emotion ratings and mid-level annotations for "
                         "the Soundtracks clips: the model is stale; re-run the pipeline (dvc repro)")
    unlabelled = [i for i in test_ids if i not in labels.emotions.index or i not in labels.soundtracks_midlevel.index]
    if unlabelled:
        raise ValueError(f"{checkpoint}: test clips {unlabelled[:5]} have no labels in {raw_dir}: the model is "
                         "stale; re-run the pipeline (dvc repro)")
    return test_ids


@dataclass(frozen=True)
class _Pair:
    """The Section 7.2 song pair: rows ``i``, ``j`` of the first run's test clips, and why."""

    i: int
    j: int
    id_a: str
    id_b: str
    rule: str
    score: float
    d_emotion: float
    d_midlevel: float
    annotated: np.ndarray  # (2, 8) annotated emotions of A and B


@dataclass(frozen=True)
class _PairRuns:
    """The pair under every run's Joint model, in the order of ``runs.seeds`` (the first run first)."""

    effects: np.ndarray  # (n_runs, 2, 8, 7)
    predicted: np.ndarray  # (n_runs, 2, 8) emotion predictions
    bias: np.ndarray  # (n_runs, 8)
    held_out: int  # runs whose test split holds both songs


def _select_song_pair(labels: Labels, test_ids: list[str], rule: str) -> _Pair:
    """The pair of test clips ``rule`` picks from their annotated emotions and mid-level features."""
    annotated_emo = labels.emotions.loc[test_ids, list(EMOTIONS)].to_numpy()
    annotated_mid = labels.soundtracks_midlevel.loc[test_ids, list(MIDLEVEL_FEATURES)].to_numpy()
    d_e, d_mid = scaled_distances(annotated_emo), scaled_distances(annotated_mid)
    i, j, score = select_pair(d_e, d_mid, rule)
    return _Pair(i, j, test_ids[i], test_ids[j], rule, score, float(d_e[i, j]), float(d_mid[i, j]),
                 annotated_emo[[i, j]])


def _pair_runs(pair: _Pair, model: Any, outputs: np.ndarray, others: list[Path],
               store: SpectrogramStore) -> _PairRuns:
    """The pair's effects, predictions and bias under the first run's model and each of ``others``.

    The first run's come from its test predictions (``outputs``), so with one run every number
    is the one the first run's outputs show; each other run predicts the two songs from the
    spectrogram store as the first run did.
    """
    ids = [pair.id_a, pair.id_b]
    per_run = [_pair_outputs(model, outputs[[pair.i, pair.j]])]
    held_out = 1  # the pair is chosen among the first run's test clips
    for checkpoint in others:
        run_model, meta = load_model(checkpoint)
        per_run.append(_pair_outputs(run_model, predict_checkpoint(run_model, meta, [store.clip(i) for i in ids])))
        # A run that trained on a song may explain it more confidently: count the runs that did not.
        held_out += set(ids) <= {str(i) for i in (meta.get("extra") or {}).get("test_ids", [])}
    run_effects, predicted, bias = (np.stack(parts) for parts in zip(*per_run))
    return _PairRuns(run_effects, predicted, bias, held_out)


def _pair_outputs(model: Any, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(2, 8, 7) effects, (2, 8) emotion predictions and (8,) bias of two songs' (2, 7 + 8) outputs."""
    weight, bias = emotion_layer(model)
    n_mid = len(MIDLEVEL_FEATURES)
    return effects(weight, bias, outputs[:, :n_mid]), outputs[:, n_mid:], bias


def _model_outputs(out: _Outputs, model: Any, outputs: np.ndarray, test_ids: list[str], pair: _Pair,
                   runs: _PairRuns, checkpoint: str, seeds: list[int]) -> None:
    """Figures 3 and 5, Table 4 and song_pair.md from the first run; the pair's effects over all runs."""
    weight, bias = emotion_layer(model)
    n_mid = len(MIDLEVEL_FEATURES)
    predicted_mid, predicted_emo = outputs[:, :n_mid], outputs[:, n_mid:]
    i, j, id_a, id_b = pair.i, pair.j, pair.id_a, pair.id_b
    label_a, label_b = f"A: song #{id_a}", f"B: song #{id_b}"

    all_effects = effects(weight, bias, predicted_mid)
    plots = out.plots_dir
    figures.effects_figure(all_effects, plots / "effects.png", example_a=i, example_b=j,
                           label_a=label_a, label_b=label_b,
                           title=f"Effects of the mid-level features on the emotion predictions "
                                 f"(A2Mid2E-Joint, {len(test_ids)} test songs)")
    write_csv(plots / "effects.csv", effects_frame(test_ids, predicted_mid, weight, bias,
                                                   {id_a: label_a, id_b: label_b}))
    figures.heatmap_figure(weight.T, plots / "joint_weights.png", row_labels=MIDLEVEL_FEATURES,
                           col_labels=EMOTIONS, title="Weights of the A2Mid2E-Joint emotion layer "
                           "(mid-level feature -> emotion)", colorbar_label="weight (emotion per unit feature)")
    write_csv(plots / "joint_weights.csv", matrix_frame(weight.T, "weight"))
    table = song_pair_frame(predicted_emo[i], predicted_emo[j], pair.annotated[0], pair.annotated[1])
    write_csv(plots / "song_pair.csv", table)
    spread_table = _pair_effects_outputs(plots, pair, runs)
    write_text(out.reports_dir / "song_pair.md",
               song_pair_markdown(table, id_a, id_b, pair.rule, pair.score, pair.d_emotion, pair.d_midlevel,
                                  len(test_ids), checkpoint)
               + "\n" + _spread_markdown(spread_table, pair, runs, seeds))
    out.summary["written"] += list(_MODEL_OUTPUTS) + ["song_pair.md"]
    out.summary["pair"] = {"a": id_a, "b": id_b, "rule": pair.rule, "score": pair.score,
                           "d_emotion": pair.d_emotion, "d_midlevel": pair.d_midlevel}


def _pair_effects_outputs(plots: Path, pair: _Pair, runs: _PairRuns) -> pd.DataFrame:
    """``song_pair_effects.csv`` and ``.png``: the pair's mean effects over runs and their range.

    The figure is drawn from the CSV's columns, so the two always show the same numbers.
    """
    frame = spread_frame([pair.id_a, pair.id_b], runs.effects)
    write_csv(plots / "song_pair_effects.csv", frame)
    n_runs = len(runs.effects)

    def grid(column: str) -> np.ndarray:  # (2 songs, 8, 7)
        return frame[column].to_numpy(dtype=np.float64).reshape(runs.effects.shape[1:])

    mean, low, high = grid("mean"), grid("min"), grid("max")
    whiskers = ({"range_a": np.stack([low[0], high[0]]), "range_b": np.stack([low[1], high[1]])}
                if n_runs > 1 else {})
    predicted = runs.predicted.mean(axis=0)  # = mean effects summed + mean bias: the layer is linear
    figures.song_pair_effects_figure(mean[0], mean[1], plots / "song_pair_effects.png",
                                     label_a=f"song #{pair.id_a}", label_b=f"song #{pair.id_b}",
                                     predicted_a=predicted[0], predicted_b=predicted[1],
                                     bias=runs.bias.mean(axis=0), n_runs=n_runs, **whiskers,
                                     title=f"Song-level explanation: feature effects of songs #{pair.id_a} (A) "
                                           f"and #{pair.id_b} (B), A2Mid2E-Joint")
    return frame


def _spread_markdown(frame: pd.DataFrame, pair: _Pair, runs: _PairRuns, seeds: list[int]) -> str:
    """The paragraph of song_pair.md on the runs behind plots/song_pair_effects.png."""
    n_runs = len(runs.effects)
    if n_runs == 1:
        return (f"plots/song_pair_effects.png shows the effects under 1 run's Joint model (runs.seeds: {seeds[0]}): "
                "with one run there is no spread over runs to show.\n")
    lines = [f"plots/song_pair_effects.png shows each effect's mean over the Joint models of {n_runs} runs "
             f"(runs.seeds: {', '.join(map(str, seeds))}), with whiskers from the smallest to the largest run's "
             f"effect (numbers, with the std: plots/song_pair_effects.csv); both songs are test clips of "
             f"{runs.held_out} of these runs" + (" (the others may have trained on them)." if runs.held_out < n_runs
                                                 else "."),
             "", f"The {_REPORTED_EFFECTS} largest mean effects, and how many runs give them the mean's sign:", "",
             "| song | emotion | feature | mean effect | smallest to largest run | runs with the mean's sign |",
             "|---|---|---|---:|---:|---:|"]
    largest = frame.iloc[np.argsort(-frame["mean"].abs().to_numpy(), kind="stable")[:_REPORTED_EFFECTS]]
    for row in largest.itertuples(index=False):
        song = f"{'A' if row.song == pair.id_a else 'B'} #{row.song}"
        lines.append(f"| {song} | {row.emotion} | {row.feature} | {row.mean:+.3f} | {row.min:+.3f} to "
                     f"{row.max:+.3f} | {round(row.sign_agreement * n_runs)} of {n_runs} |")
    return "\n".join(lines + [""])


__all__ = ["PLOT_OUTPUTS", "REPORT_OUTPUTS", "explain_stage", "effects_frame", "matrix_frame", "spread_frame",
           "write_csv"]
