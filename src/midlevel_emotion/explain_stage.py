"""The ``explain`` DVC stage: Figures 3-5, Table 4 and their data (paper Section 7).

Route: labels -> Figure 4 (correlations of the annotations, no model); the Joint model of the
first run -> its test clips' predictions -> Figure 3 (effects over songs), Figure 5 (the
emotion layer's weights), the Section 7.2 song pair (:mod:`.pairs`) and Table 4. Every output
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
from .constants import EMOTIONS, MIDLEVEL_FEATURES, hop_frames
from .corpus import Labels, load_labels
from .csvsafe import frame_text
from .explanation import effects, emotion_layer, load_model
from .store import SpectrogramStore
from .fileio import write_text
from .pairs import PAIR_RULES, correlation_matrix, scaled_distances, select_pair, song_pair_frame, song_pair_markdown
from .checkpoints import CheckpointError
from .training import predict

#: Everything the stage writes (relative to --plots / --reports); all always exist after a run.
PLOT_OUTPUTS = ("effects.png", "effects.csv", "correlation_heatmap.png", "correlation.csv", "joint_weights.png",
                "joint_weights.csv", "song_pair.csv", "song_pair_effects.png")
REPORT_OUTPUTS = ("song_pair.md",)

# The outputs that need the Joint model: figure title (None for data files) ...
_MODEL_OUTPUTS = {"effects.png": "Figure 3 (effects)", "effects.csv": None,
                  "joint_weights.png": "Figure 5 (Joint weights)", "joint_weights.csv": None,
                  "song_pair.csv": None, "song_pair_effects.png": "Song pair effects"}
# ... and the header a data file keeps when it cannot be filled.
_COLUMNS = {"correlation.csv": ["feature", "emotion", "r"],
            "effects.csv": ["song", "emotion", "feature", "effect", "example"],
            "joint_weights.csv": ["feature", "emotion", "weight"],
            "song_pair.csv": ["emotion", "predicted_a", "predicted_b", "annotated_a", "annotated_b"]}


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
    n = len(song_ids)
    return pd.DataFrame({
        "song": np.repeat(song_ids, per_song),
        "emotion": np.tile(np.repeat(EMOTIONS, len(MIDLEVEL_FEATURES)), n),
        "feature": np.tile(MIDLEVEL_FEATURES, n * len(EMOTIONS)),
        "effect": all_effects.reshape(-1),
        "example": np.repeat([examples.get(s, "") for s in song_ids], per_song),
    })


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
                  params: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    """The ``explain`` stage: Figures 3-5, Table 4 and their data.

    Uses the Joint model of the first run (``models/joint/joint_seed_<runs.seeds[0]>.pt``) and
    that run's test clips (``extra.test_ids`` in the checkpoint). Every output in
    :data:`PLOT_OUTPUTS` / :data:`REPORT_OUTPUTS` is written: a figure that cannot be made
    (no Joint model, no mid-level annotations) becomes an image stating why, its CSV has the
    header only, and ``song_pair.md`` says what was not run.

    Returns
    -------
    dict
        ``{"written": [...], "not_run": {output: reason}, "pair": {...} or None}``.
    """
    raw_dir, models_dir = Path(raw_dir), Path(models_dir)
    rule = str(params.get("explain", {}).get("pair_selection", "words"))
    if rule not in PAIR_RULES:
        raise ValueError(f"{params.get('_path', 'params.yaml')}: explain.pair_selection must be one of "
                         f"{PAIR_RULES}, got {rule!r}")
    seed = int(params["runs"]["seeds"][0])
    out = _Outputs(Path(plots_dir), Path(reports_dir))
    labels = load_labels(raw_dir)
    _correlation_outputs(labels, out)

    checkpoint = models_dir / "joint" / f"joint_seed_{seed}.pt"
    reason = _joint_not_run(models_dir, checkpoint, seed)
    if reason is not None:
        for name, title in _MODEL_OUTPUTS.items():
            out.not_run(name, f"{title} not available" if title else None, reason)
        write_text(out.reports_dir / "song_pair.md", f"# Song-level explanation (Section 7.2): not run\n\n{reason}\n")
        out.summary["not_run"]["song_pair.md"] = reason
        return out.summary

    model, meta = load_model(checkpoint)
    test_ids = _test_ids(checkpoint, meta, labels, raw_dir)
    started = time.perf_counter()
    outputs = _predict_clips(model, meta, SpectrogramStore.open(Path(spectrogram_dir) / "soundtracks"), test_ids)
    log(f"explain: predicted {len(test_ids)} test clips in {time.perf_counter() - started:.1f} s")
    _model_outputs(out, model, outputs, labels, test_ids, rule, str(checkpoint))
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


def _joint_not_run(models_dir: Path, checkpoint: Path, seed: int) -> str | None:
    """Why the Joint model's outputs cannot be made (its stage recorded NOT_RUN.md), or None."""
    not_run_file = models_dir / "joint" / "NOT_RUN.md"
    if not_run_file.is_file():
        detail = " ".join(not_run_file.read_text(encoding="utf-8").split("\n", 1)[-1].split())
        return f"The Joint model was not run ({not_run_file}): {detail}"
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found (run the train_joint stage first; "
                              f"runs.seeds[0] = {seed})")
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


def _predict_clips(model: Any, meta: dict, store: SpectrogramStore, ids: list[str]) -> np.ndarray:
    """(n_clips, 7 + 8) song-level outputs: the mean over windows at the evaluation hop, as in testing."""
    spec = meta["spectrogram"]
    hop = hop_frames(float(meta["input"]["eval_hop_seconds"]), float(spec["fps"]))
    outputs = predict(model, [store.clip(i) for i in ids], mean=float(spec["mean"]), std=float(spec["std"]),
                      crop_frames=int(meta["input"]["crop_frames"]), hop_frames=hop)
    if not np.isfinite(outputs).all():
        raise CheckpointError(f"{meta.get('path', 'checkpoint')}: the model's predictions are not finite "
                              "(NaN or infinite); the checkpoint is damaged")
    return outputs


def _model_outputs(out: _Outputs, model: Any, outputs: np.ndarray, labels: Labels, test_ids: list[str],
                   rule: str, checkpoint: str) -> None:
    """Figures 3 and 5, the Section 7.2 pair, Table 4 and song_pair.md from the test predictions."""
    weight, bias = emotion_layer(model)
    n_mid = len(MIDLEVEL_FEATURES)
    predicted_mid, predicted_emo = outputs[:, :n_mid], outputs[:, n_mid:]
    annotated_emo = labels.emotions.loc[test_ids, list(EMOTIONS)].to_numpy()
    annotated_mid = labels.soundtracks_midlevel.loc[test_ids, list(MIDLEVEL_FEATURES)].to_numpy()
    d_e, d_mid = scaled_distances(annotated_emo), scaled_distances(annotated_mid)
    i, j, score = select_pair(d_e, d_mid, rule)
    id_a, id_b = test_ids[i], test_ids[j]
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
    pair = song_pair_frame(predicted_emo[i], predicted_emo[j], annotated_emo[i], annotated_emo[j])
    write_csv(plots / "song_pair.csv", pair)
    figures.song_pair_effects_figure(all_effects[i], all_effects[j], plots / "song_pair_effects.png",
                                     label_a=f"song #{id_a}", label_b=f"song #{id_b}",
                                     predicted_a=predicted_emo[i], predicted_b=predicted_emo[j], bias=bias,
                                     title=f"Song-level explanation: feature effects of songs #{id_a} (A) and "
                                           f"#{id_b} (B), A2Mid2E-Joint")
    write_text(out.reports_dir / "song_pair.md",
               song_pair_markdown(pair, id_a, id_b, rule, score, float(d_e[i, j]), float(d_mid[i, j]),
                                  len(test_ids), checkpoint))
    out.summary["written"] += list(_MODEL_OUTPUTS) + ["song_pair.md"]
    out.summary["pair"] = {"a": id_a, "b": id_b, "rule": rule, "score": score,
                           "d_emotion": float(d_e[i, j]), "d_midlevel": float(d_mid[i, j])}


__all__ = ["PLOT_OUTPUTS", "REPORT_OUTPUTS", "explain_stage", "effects_frame", "matrix_frame", "write_csv"]
