"""Labels of the synthetic corpus: latents, annotations, ratings, metadata, durations.

Cheap (no audio). :func:`draw_labels` draws everything :mod:`.writer` puts into the CSVs,
from the planted truth of :mod:`.truth` and the made-up names of :mod:`.metadata`.
Every random stream of the corpus is a ``SeedSequence`` spawn key of the corpus seed,
listed here once so that no two streams can collide (:func:`clip_seed` for the audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...core.constants import EMOTIONS
from .metadata import _metadata
from .truth import LATENT_CORRELATION, PLANTED_BIAS, PLANTED_WEIGHTS, target_category

MAX_SOUNDTRACKS = 360
MAX_CLIPS = 10000

# Random streams (SeedSequence spawn keys) of the label generator and of the clips; the clips'
# key starts far above the label streams so that new label streams never collide with it.
_STREAM_LATENT, _STREAM_ANNOT, _STREAM_RATING, _STREAM_META, _STREAM_DURATION = range(5)
_STREAM_CLIP = 1000


@dataclass
class SyntheticLabels:
    """Everything :func:`generate_corpus` writes except the audio, as arrays.

    Values are already rounded exactly as written to the CSVs (annotations 4 decimals,
    ratings 2 decimals), so reading the files back gives the same numbers.
    """

    seed: int
    song_ids: np.ndarray            # (n,) int, 1..n_clips
    latents: np.ndarray             # (n, 7) in [0, 1], canonical feature order
    annotations: np.ndarray         # (n, 7) 1-10, canonical order, rounded to 4 decimals
    durations: np.ndarray           # (n,) seconds
    sources: list[str]
    source_ids: list[str]           # "ID at file source"
    artists: list[str]
    titles: list[str]
    albums: list[str]
    soundtrack_song_ids: np.ndarray  # (n_soundtracks,): song_id of Soundtracks number i + 1
    ratings: np.ndarray             # (n_soundtracks, 8) 1-9, EMOTIONS order, rounded to 2 decimals
    targets: list[str]              # (n_soundtracks,) TARGET categories
    annotation_noise: float = 0.5
    rating_noise: float = 0.25

    @property
    def soundtrack_latents(self) -> np.ndarray:
        return self.latents[self.soundtrack_song_ids - 1]

    @property
    def soundtrack_annotations(self) -> np.ndarray:
        return self.annotations[self.soundtrack_song_ids - 1]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _check_float(name: str, value, low: float, high: float | None = None, *, low_open: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _validate_sizes(n_clips, n_soundtracks) -> tuple[int, int]:
    n_clips = _check_int("n_clips", n_clips, 1, MAX_CLIPS)
    n_soundtracks = _check_int("n_soundtracks", n_soundtracks, 0, MAX_SOUNDTRACKS)
    if n_soundtracks > n_clips:
        raise ValueError(f"n_soundtracks ({n_soundtracks}) must be <= n_clips ({n_clips}): every "
                         "Soundtracks clip is also a mid-level clip")
    return n_clips, n_soundtracks


def draw_labels(seed: int = 2019, n_clips: int = 200, n_soundtracks: int = 100, *,
                annotation_noise: float = 0.5, rating_noise: float = 0.25,
                duration_seconds: float = 15.0) -> SyntheticLabels:
    """Draw the latents, annotations, ratings and metadata of the corpus (no audio).

    This is exactly what :func:`generate_corpus` writes to the CSVs for the same arguments.

    - latents: uniform marginals on [0, 1], mildly correlated (:data:`LATENT_CORRELATION`);
    - annotations: ``clip(1 + 9 * latent + N(0, annotation_noise), 1, 10)``, 4 decimals;
    - ratings (Soundtracks clips only): ``clip(PLANTED_BIAS + PLANTED_WEIGHTS @ latent +
      N(0, rating_noise), 1, 9)``, 2 decimals; TARGET by :func:`target_category`;
    - durations: uniform within +-1/30 of ``duration_seconds`` (14.5-15.5 s at 15 s).
    """
    n_clips, n_soundtracks = _validate_sizes(n_clips, n_soundtracks)
    seed = _check_int("seed", seed, 0)
    annotation_noise = _check_float("annotation_noise", annotation_noise, 0.0)
    rating_noise = _check_float("rating_noise", rating_noise, 0.0)
    duration_seconds = _check_float("duration_seconds", duration_seconds, 0.0, low_open=True)

    from scipy.special import ndtr

    chol = np.linalg.cholesky(LATENT_CORRELATION)
    z = _rng(seed, _STREAM_LATENT).standard_normal((n_clips, 7)) @ chol.T
    latents = ndtr(z)
    annotations = 1.0 + 9.0 * latents + annotation_noise * _rng(seed, _STREAM_ANNOT).standard_normal((n_clips, 7))
    annotations = np.round(np.clip(annotations, 1.0, 10.0), 4)

    meta_rng = _rng(seed, _STREAM_META)
    soundtrack_song_ids = meta_rng.permutation(n_clips)[:n_soundtracks] + 1
    meta = _metadata(meta_rng, n_clips, soundtrack_song_ids)

    st_latents = latents[soundtrack_song_ids - 1]
    noise = rating_noise * _rng(seed, _STREAM_RATING).standard_normal((n_soundtracks, len(EMOTIONS)))
    ratings = PLANTED_BIAS + st_latents @ PLANTED_WEIGHTS.T + noise
    ratings = np.round(np.clip(ratings, 1.0, 9.0), 2)
    targets = target_category(ratings, rating_noise) if n_soundtracks else []

    half_width = duration_seconds / 30.0
    durations = duration_seconds + _rng(seed, _STREAM_DURATION).uniform(-half_width, half_width, n_clips)

    return SyntheticLabels(
        seed=seed, song_ids=np.arange(1, n_clips + 1), latents=latents, annotations=annotations,
        durations=durations, soundtrack_song_ids=soundtrack_song_ids, ratings=ratings, targets=targets,
        annotation_noise=annotation_noise, rating_noise=rating_noise, **meta,
    )


def clip_seed(seed: int, song_id: int) -> int:
    """The seed of one clip's audio, derived from the corpus seed and its song_id."""
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(_STREAM_CLIP, int(song_id))).generate_state(2)
    return int(state[0]) << 32 | int(state[1])
