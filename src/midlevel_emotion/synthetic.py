"""The embedded synthetic corpus: a miniature copy of both datasets, generated from a seed.

:func:`generate_corpus` writes, under ``raw_dir``, the published layouts and file dialects of
the Mid-level Perceptual Features dataset and of Soundtracks Stimulus Set 1 (see
``corpus.py``), so that the project's real readers and the whole pipeline run offline:

- ``midlevel/audio/{song_id}.mp3``: 44.1 kHz stereo mp3 snippets of ~15 s, synthesised music
  (notes, chords, bass, drums; additive synthesis) whose seven perceptual qualities are each
  driven by one latent in [0, 1] (:data:`SOUND_DESIGN`);
- ``midlevel/metadata_annotations/annotations.csv``: ``1 + 9 * latent`` + rater noise;
- ``midlevel/metadata_annotations/metadata.csv``: sources, artists (about 9 % of the
  non-Soundtracks tracks by one-track artists), made-up titles and albums;
- ``soundtracks/mean_ratings_set1.csv``: eight emotion ratings, a planted linear map of the
  latents (:data:`PLANTED_WEIGHTS`, :data:`PLANTED_BIAS`) + noise, and a TARGET category;
- ``soundtracks/audio/NNN.mp3``: byte copies of the mid-level clips flagged ``soundtracks``;
- ``synthetic_truth.json``: the planted truth (weights on both scales, noise, latents).

The music is rendered at half the output rate (22.05 kHz, all that the 22.05 kHz analysis of
the pipeline can see) and upsampled to 44.1 kHz, then encoded as variable-bitrate mp3
(~100 kbit/s); mp3 encoding is ~85 % of the ~0.45 CPU-seconds a 15 s clip costs.

Everything is deterministic given ``seed``: labels come from :func:`draw_labels`, and each
clip's audio from its own random stream derived from ``(seed, song_id)``
(:func:`clip_seed`), so the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from .corpus import EMOTIONS, MIDLEVEL_FEATURES
from .parallel import resolve_jobs

__all__ = [
    "SOUND_DESIGN",
    "PLANTED_WEIGHTS",
    "PLANTED_BIAS",
    "LATENT_CORRELATION",
    "TARGET_CATEGORIES",
    "SyntheticLabels",
    "ClipPlan",
    "draw_labels",
    "planted_map_paper_scale",
    "clip_seed",
    "plan_clip",
    "render_plan",
    "synthesize_clip",
    "generate_corpus",
]

# ---------------------------------------------------------------------------------------
# The planted truth

MEL, ART, RS, RC, DIS, TS, MIN = range(7)  # canonical MIDLEVEL_FEATURES order
assert MIDLEVEL_FEATURES == ("melodiousness", "articulation", "rhythm_stability", "rhythm_complexity",
                             "dissonance", "tonal_stability", "minorness")
assert EMOTIONS == ("valence", "energy", "tension", "anger", "fear", "happy", "sad", "tender")

#: Emotion rating (1-9 scale) per unit latent: rows EMOTIONS, columns MIDLEVEL_FEATURES.
#: Musically plausible signs (minorness -> sad +, happy -; dissonance -> tension, anger,
#: fear +; articulation -> energy +; melodiousness -> valence, tender +; ...), each row scaled
#: so that its linear part has a standard deviation of about 1.2 rating points.
PLANTED_WEIGHTS = np.array([
    #  mel    art     rs     rc    dis     ts    min
    [1.55, 0.39, 0.39, 0.00, -2.07, 1.03, -2.32],   # valence
    [-0.61, 3.18, 0.49, 1.96, 0.98, 0.00, 0.00],    # energy
    [-0.92, 0.46, -0.69, 1.04, 2.76, -1.38, 0.69],  # tension
    [-1.10, 1.37, 0.00, 0.55, 3.01, -0.82, 0.41],   # anger
    [-0.65, -0.52, -1.29, 0.65, 2.33, -1.68, 1.55],  # fear
    [1.16, 1.03, 1.03, 0.39, -1.29, 0.77, -3.09],   # happy
    [1.13, -1.97, -0.28, -0.85, -0.71, 0.28, 3.10],  # sad
    [2.28, -2.03, 0.25, -0.89, -1.52, 0.76, 0.38],  # tender
])
#: Rating at latent 0 (all seven qualities at their minimum).
PLANTED_BIAS = np.array([5.12, 1.40, 3.32, 1.89, 3.71, 4.20, 3.75, 4.68])

#: Mild correlation between the latents (Gaussian copula; uniform marginals).
LATENT_CORRELATION = np.eye(7)
for _i, _j, _r in [(MEL, DIS, -0.3), (DIS, TS, -0.3), (MEL, TS, 0.25), (RS, RC, -0.2), (ART, RC, 0.15)]:
    LATENT_CORRELATION[_i, _j] = LATENT_CORRELATION[_j, _i] = _r
del _i, _j, _r

#: What each latent does to the sound (quoted in the README and the truth file).
SOUND_DESIGN: dict[str, str] = {
    "melodiousness": "lead melody: stepwise motion in the key's scale, smooth contour within about an "
                     "octave, chord tones on the beats, long notes with vibrato (1) vs. random large "
                     "leaps over up to three octaves, short sparse pointillistic notes and rests (0)",
    "articulation": "sounding share of each inter-onset interval of lead, chords and bass: legato, "
                    "1.0 with a 100 ms release (0) vs. staccato, 0.15 with a 20 ms release and "
                    "silence between the notes (1)",
    "rhythm_stability": "steadiness of the pulse: metronomic (1) vs. beat-to-beat tempo changes "
                        "(sd 16 %), slow tempo drift (sd 22 %) and per-note onset jitter (sd 28 ms) (0)",
    "rhythm_complexity": "kick on every beat only (0) vs. layers faded in one after another: hi-hat "
                         "eighths, backbeat snare, syncopated claps, a 3-against-4 woodblock, sixteenth "
                         "hi-hats and congas, plus syncopated kicks, bass notes and chord pushes (1)",
    "dissonance": "consonant triads with clean harmonic timbres (0) vs. up to two added seconds, "
                  "tritones or major sevenths per chord, detuned (beating) voices, ring modulation at "
                  "a non-musical frequency, soft-clipping distortion and a noise component that "
                  "follows the notes (1)",
    "tonal_stability": "one key, I-IV-V-I style progressions with smooth voice leading and a constant "
                       "tonic pedal (1) vs. modulation to a random key on a share 0.9 * (1 - latent)^1.5 "
                       "of the two-beat chord slots, chromatic passing notes, the tonic pedal jumping "
                       "with the key (0)",
    "minorness": "exact share of minor chords among the two-beat chord slots, all diatonic to the "
                 "current key (minor key when the latent > 0.5: i iv v vs. III VI VII; major key: "
                 "ii iii vi vs. I IV V)",
}

#: The 12 design categories of Soundtracks Set 1 (30 clips each in the real set).
TARGET_CATEGORIES: tuple[str, ...] = (
    "HAPPY", "SAD", "TENDER", "FEAR", "ANGER",
    "VALENCE_POS", "VALENCE_NEG", "ENERGY_POS", "ENERGY_NEG", "TENSION_POS", "TENSION_NEG",
    "NEUTRAL",
)
# (category, emotion, sign): the category applies when sign * z-score(emotion) is the largest
# of these and exceeds TARGET_THRESHOLD; otherwise NEUTRAL. Equivalent to the nearest of the
# prototypes +-2 sd on one emotion or the mean (NEUTRAL), in z-score space.
_TARGET_RULES: tuple[tuple[str, str, int], ...] = (
    ("HAPPY", "happy", 1), ("SAD", "sad", 1), ("TENDER", "tender", 1), ("FEAR", "fear", 1),
    ("ANGER", "anger", 1), ("VALENCE_POS", "valence", 1), ("VALENCE_NEG", "valence", -1),
    ("ENERGY_POS", "energy", 1), ("ENERGY_NEG", "energy", -1), ("TENSION_POS", "tension", 1),
    ("TENSION_NEG", "tension", -1),
)
TARGET_THRESHOLD = 1.0

SOURCES_OTHER = ("jamendo", "magnatagatune")
SOUNDTRACKS = "soundtracks"
MAX_SOUNDTRACKS = 360
MAX_CLIPS = 10000
SINGLE_ARTIST_FRACTION = 0.17  # of the non-Soundtracks tracks: artists with exactly one track (so the
# artist-disjoint A2Mid+ test split can reach 8 % of all clips when half are Soundtracks clips)
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

ANNOTATIONS_HEADER = ("song_id, melody, articulation, rhythm_complexity, rhythm_stability, "
                      "dissonance, tonal_stability, minorness")
_ANNOTATION_FILE_ORDER = (MEL, ART, RC, RS, DIS, TS, MIN)
METADATA_HEADER = ("song id", "Source", "ID at file source", "Artist", "Title", "Album name")
RATINGS_HEADER = "number," + ",".join(EMOTIONS) + ",TARGET"

# Random streams (SeedSequence spawn keys) of the label generator and of the clips.
_STREAM_LATENT, _STREAM_ANNOT, _STREAM_RATING, _STREAM_META, _STREAM_DURATION = range(5)
_STREAM_CLIP = 1000


def planted_map_paper_scale(weights: np.ndarray = PLANTED_WEIGHTS,
                            bias: np.ndarray = PLANTED_BIAS) -> tuple[np.ndarray, np.ndarray]:
    """The planted latent->rating map re-expressed from annotation/10 to rating/10.

    With ``annotation = 1 + 9 * latent`` (before noise and clipping), ``x = annotation / 10``
    and ``y = rating / 10``: ``y = (W / 9) x + (b - W.sum(1) / 9) / 10``.

    Returns
    -------
    (weights, bias) : (8, 7) and (8,) arrays, rows EMOTIONS, columns MIDLEVEL_FEATURES.
    """
    weights = np.asarray(weights, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    return weights / 9.0, (bias - weights.sum(axis=1) / 9.0) / 10.0


def _latent_moments() -> tuple[np.ndarray, np.ndarray]:
    """Mean (7,) and covariance (7, 7) of the latents (uniform marginals, Gaussian copula)."""
    cov = (1.0 / 12.0) * (6.0 / np.pi) * np.arcsin(LATENT_CORRELATION / 2.0)
    return np.full(7, 0.5), cov


def _rating_moments(rating_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected mean and standard deviation of each emotion rating (ignoring clipping)."""
    mean, cov = _latent_moments()
    mu = PLANTED_BIAS + PLANTED_WEIGHTS @ mean
    var = np.einsum("ij,jk,ik->i", PLANTED_WEIGHTS, cov, PLANTED_WEIGHTS) + rating_noise ** 2
    return mu, np.sqrt(var)


def target_category(ratings: np.ndarray, rating_noise: float = 0.25) -> list[str]:
    """TARGET category of each row of ``ratings`` (n, 8), see :data:`_TARGET_RULES`."""
    mu, sd = _rating_moments(rating_noise)
    z = (np.atleast_2d(ratings) - mu) / sd
    scores = np.stack([sign * z[:, EMOTIONS.index(emotion)] for _, emotion, sign in _TARGET_RULES], axis=1)
    best = scores.argmax(axis=1)
    return [_TARGET_RULES[b][0] if scores[i, b] > TARGET_THRESHOLD else "NEUTRAL" for i, b in enumerate(best)]


# ---------------------------------------------------------------------------------------
# Labels and metadata (cheap: no audio)

_FIRST = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
          "Kira", "Lars", "Mina", "Nico", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara",
          "Ugo", "Vera", "Wim", "Xenia", "Yannick", "Zoe", "Amos", "Bea", "Cyril", "Dora")
_LAST = ("Abbott", "Berger", "Castell", "Dahl", "Eriksen", "Fontaine", "Gallo", "Hartmann",
         "Ivanov", "Jansen", "Koval", "Lindqvist", "Moreau", "Novak", "Olsen", "Petrov", "Quint",
         "Reyes", "Sato", "Thorne", "Ueda", "Vance", "Weber", "Xu", "Yilmaz", "Zanetti", "Arden",
         "Bloom", "Crane", "Duval")
_ADJ = ("Blue", "Silent", "Electric", "Hollow", "Golden", "Paper", "Velvet", "Northern", "Crimson",
        "Quiet", "Wandering", "Broken", "Distant", "Amber", "Lunar", "Rusty", "Glass", "Wild",
        "Falling", "Secret", "Pale", "Burning", "Frozen", "Little", "Cosmic", "Hidden", "Slow",
        "Bright", "Restless", "Open")
_NOUN = ("River", "Garden", "Engine", "Mirror", "Harbor", "Forest", "Signal", "Lantern", "Orchard",
         "Machine", "Island", "Window", "Tide", "Comet", "Valley", "Anchor", "Echo", "Meadow",
         "Station", "Horizon", "Feather", "Canyon", "Circuit", "Ocean", "Spiral", "Thunder",
         "Avenue", "Desert", "Glacier", "Parade")
_FILMS = ("The Last Harbor", "Night Train", "Glass Empire", "Silent Orchard", "Red Meridian",
          "The Paper Crown", "Winter Signal", "Blue Labyrinth", "Hollow Sky", "Iron Lullaby",
          "The Amber Coast", "Shadow Waltz", "Northern Lights", "The Hidden Valley", "Falling Comet")
#: Titles planted to exercise the readers: a comma inside a semicolon-separated field, and
#: non-ASCII characters (the files are UTF-8).
SPECIAL_TITLES = ("Rain, Again", "Café Ñandú – Übergang à Jyväskylä")


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


def _group_sizes(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """Partition n into group sizes in [low, high] (the last group absorbs a short remainder)."""
    sizes: list[int] = []
    left = n
    while left > 0:
        size = min(int(rng.integers(low, high + 1)), left)
        sizes.append(size)
        left -= size
    if len(sizes) > 1 and sizes[-1] < low:  # merge a short tail into the previous group
        sizes[-2] += sizes.pop()
    return sizes


def _names(rng: np.random.Generator, n: int, first: tuple[str, ...], last: tuple[str, ...],
           fmt: str, taken: set[str]) -> list[str]:
    combos = [fmt.format(a, b) for a in first for b in last]
    order = rng.permutation(len(combos))
    names: list[str] = []
    k = 0
    while len(names) < n:
        base = combos[order[k % len(combos)]]
        name = base if k < len(combos) else f"{base} {k // len(combos) + 1}"
        k += 1
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _metadata(rng: np.random.Generator, n_clips: int, soundtrack_song_ids: np.ndarray) -> dict[str, list[str]]:
    n_soundtracks = len(soundtrack_song_ids)
    is_soundtrack = np.zeros(n_clips, bool)
    is_soundtrack[soundtrack_song_ids - 1] = True
    number_of = np.zeros(n_clips, int)
    number_of[soundtrack_song_ids - 1] = np.arange(1, n_soundtracks + 1)
    other = np.flatnonzero(~is_soundtrack)  # row indices of the non-Soundtracks tracks

    sources = [""] * n_clips
    source_ids = [""] * n_clips
    artists = [""] * n_clips
    titles = [""] * n_clips
    albums = [""] * n_clips
    taken: set[str] = set()

    # Soundtracks: one composer per film, 2-5 excerpts per film (360 from 110 in the real set).
    st_rows = soundtrack_song_ids - 1  # in Soundtracks-number order
    sizes = _group_sizes(rng, n_soundtracks, 2, 5) if n_soundtracks else []
    composers = _names(rng, len(sizes), _FIRST, _LAST, "{} {}", taken)
    start = 0
    for g, size in enumerate(sizes):
        film = _FILMS[g % len(_FILMS)] + ("" if g < len(_FILMS) else f" {g // len(_FILMS) + 1}")
        for k, row in enumerate(st_rows[start:start + size]):
            sources[row] = SOUNDTRACKS
            source_ids[row] = str(number_of[row])
            artists[row] = composers[g]
            titles[row] = f"{film}: Cue {k + 1}"
            albums[row] = f"{film} (Original Motion Picture Soundtrack)"
        start += size

    # The others: jamendo / magnatagatune, ~9 % by artists with exactly one track.
    n_other = len(other)
    n_single = int(round(SINGLE_ARTIST_FRACTION * n_other))
    if n_other - n_single == 1:  # a lone remaining track cannot form a multi-track artist
        n_single += 1
    sizes = [1] * n_single + _group_sizes(rng, n_other - n_single, 2, 6)
    bands = _names(rng, len(sizes), tuple(f"The {a}" for a in _ADJ), _NOUN, "{} {}s", taken)
    perm = other[rng.permutation(n_other)]
    start = 0
    title_pool = [f"{a} {b}" for a in _ADJ for b in _NOUN]
    title_pick = rng.integers(0, len(title_pool), size=n_other)
    for g, size in enumerate(sizes):
        source = SOURCES_OTHER[int(rng.integers(0, 2))]
        album_names = [f"{_ADJ[int(rng.integers(0, len(_ADJ)))]} {_NOUN[int(rng.integers(0, len(_NOUN)))]}"
                       for _ in range(2)]
        for row in perm[start:start + size]:
            sources[row] = source
            source_ids[row] = (str(int(rng.integers(100000, 1500000))) if source == "jamendo"
                               else str(int(rng.integers(1, 58000))))
            artists[row] = bands[g]
            albums[row] = album_names[int(rng.integers(0, 2))]
        start += size
    for k, row in enumerate(other):
        titles[row] = title_pool[title_pick[k]]
    # Plant the special titles on the first (lowest song_id) non-Soundtracks tracks.
    for title, row in zip(SPECIAL_TITLES, other):
        titles[row] = title
    return {"sources": sources, "source_ids": source_ids, "artists": artists, "titles": titles, "albums": albums}


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


# ---------------------------------------------------------------------------------------
# Music: a symbolic plan per clip, then additive synthesis

def clip_seed(seed: int, song_id: int) -> int:
    """The seed of one clip's audio, derived from the corpus seed and its song_id."""
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(_STREAM_CLIP, int(song_id))).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


@dataclass
class Note:
    part: str        # "lead", "chords", "pedal" (rendered with the chords), "bass"
    start: float     # seconds
    duration: float  # seconds, gate (before release)
    midi: float
    amp: float


@dataclass
class ClipPlan:
    """The symbolic score of one clip (times in seconds, pitches in MIDI numbers).

    ``chords`` rows: (start, end, root pitch class, is_minor, key tonic pitch class, modulated),
    one per two-beat slot (the grid runs past both ends of the excerpt); ``chord_notes`` the
    MIDI notes of each slot's voicing; ``notes`` every lead, chord, tonic-pedal and bass note;
    ``hits``: (instrument, time, gain) percussion events.
    """

    latent: np.ndarray
    duration: float
    bpm: float
    beat_times: np.ndarray
    chords: list[tuple[float, float, int, bool, int, bool]]
    chord_notes: list[list[int]]
    notes: list[Note]
    hits: list[tuple[str, float, float]]
    timbre: dict
    noise_seed: int


_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor (aeolian)
_PROGRESSIONS = ((0, 5, 7, 0), (0, 5, 0, 7), (0, 0, 5, 7), (0, 7, 5, 0))
_MODULATIONS = np.array([1, 2, 3, 4, 6, 8, 9, 10, 11])
_DISSONANT_ADDS = (1, 6, 11, 2, 13)  # semitones above the root: b2, tritone, maj7, 2, b9
_MEL_DURS = np.array([1, 2, 3, 4, 6, 8])  # sixteenths
_MEL_P_SMOOTH = np.array([0.0, 0.25, 0.05, 0.40, 0.10, 0.20])
_MEL_P_POINT = np.array([0.45, 0.30, 0.15, 0.10, 0.0, 0.0])


def _layer(c: float, start: float, width: float) -> float:
    return float(np.clip((c - start) / width, 0.0, 1.0))


def _spread(u: np.ndarray, p: float, v: float) -> np.ndarray:
    """Boolean mask with exactly floor(p * n + v) True at the positions of the smallest u.

    ``u`` (n,) and ``v`` are uniform draws made independently of ``p``, so the mask is a
    low-variance, latent-monotone stand-in for Bernoulli(p) draws.
    """
    count = int(np.floor(np.clip(p, 0.0, 1.0) * len(u) + v))
    mask = np.zeros(len(u), bool)
    mask[np.argsort(u, kind="stable")[:count]] = True
    return mask


def _nearest(values: np.ndarray, x: float) -> int:
    return int(np.argmin(np.abs(values - x)))


def plan_clip(latent: np.ndarray, *, seed: int, duration_seconds: float) -> ClipPlan:
    """Compose the symbolic score of a clip from its 7 latents (canonical order) and a seed."""
    latent = np.clip(np.asarray(latent, dtype=np.float64).reshape(7), 0.0, 1.0)
    mel, art, rs, rc, dis, ts, mino = latent
    streams = [_rng(int(seed) % 2 ** 64, k) for k in range(8)]
    r_time, r_harm, r_mel, r_rhy, r_timb, r_jit, _reserved, r_noise = streams

    # --- time: tempo, beat grid with drift and irregular beat lengths -------------------
    bpm = float(r_time.uniform(84.0, 132.0))
    period = 60.0 / bpm
    # enough beats to cover the excerpt even at the fastest local tempo (beats >= 0.6 period)
    n_beats = int(np.ceil((duration_seconds + 4.0 * period) / (0.6 * period))) + 4
    walk = np.cumsum(r_time.standard_normal(n_beats))
    walk = np.convolve(walk - walk.mean(), np.ones(4) / 4, mode="same")
    walk /= walk.std() + 1e-9
    unsteady = 1.0 - rs
    log_dur = unsteady * (0.22 * walk + 0.16 * r_time.standard_normal(n_beats))
    beat_dur = period * np.exp(np.clip(log_dur, -0.5, 0.5))
    offset = float(r_time.uniform(0.0, 4.0)) * period  # the excerpt starts anywhere in a bar
    beat_times = np.concatenate([[0.0], np.cumsum(beat_dur)]) - offset
    n16 = 4 * n_beats
    jitter_sd = 0.028 * unsteady
    jitter = jitter_sd * r_jit.standard_normal((6, n16 + 1))  # per part, per sixteenth position

    beat_index = np.arange(len(beat_times), dtype=np.float64)

    def time_at(pos16, part: int | None = None):
        if np.isscalar(pos16):  # fast path
            beat = min(max(pos16 / 4.0, 0.0), len(beat_times) - 1.0)
            i = min(int(beat), len(beat_times) - 2)
            t = beat_times[i] + (beat - i) * (beat_times[i + 1] - beat_times[i])
            return t + jitter[part, min(max(int(pos16), 0), n16)] if part is not None else t
        pos16 = np.asarray(pos16, dtype=np.float64)
        t = np.interp(pos16 / 4.0, beat_index, beat_times)
        if part is not None:
            t = t + jitter[part, np.clip(pos16.astype(int), 0, n16)]
        return t

    art_gate = 1.0 - 0.85 * art  # sounding share of the inter-onset interval

    # --- harmony: two-beat slots ----------------------------------------------------------
    n_slots = n_beats // 2
    slot_start = time_at(8.0 * np.arange(n_slots + 1))
    visible = np.flatnonzero((slot_start[1:] > 0.0) & (slot_start[:-1] < duration_seconds))
    lo, hi = (int(visible[0]), int(visible[-1]) + 1) if len(visible) else (0, n_slots)

    def spread_slots(p: float, width: int = 1) -> np.ndarray:
        """Exact share p of the visible slots (x width per slot), random positions."""
        u = r_harm.random(n_slots * width).reshape(n_slots, width)
        mask = u < p  # outside the excerpt
        mask[lo:hi] = _spread(u[lo:hi].ravel(), p, r_harm.random()).reshape(hi - lo, width)
        return mask

    key = int(r_harm.integers(0, 12))  # tonic pitch class of the current key
    mode_minor = bool(mino > 0.5)      # the tonic chord has the majority quality
    prog = _PROGRESSIONS[int(r_harm.integers(0, len(_PROGRESSIONS)))]
    # The other quality's diatonic triads (major key: vi ii iii; minor key: III VI VII).
    others = np.array((3, 8, 10) if mode_minor else (9, 2, 4))[r_harm.permutation(3)]
    modulation = 0.9 * (1.0 - ts) ** 1.5  # share of slots that modulate
    unstable = spread_slots(modulation)[:, 0]
    minor = spread_slots(mino)[:, 0]
    mod_steps = r_harm.choice(_MODULATIONS, size=n_slots)
    adds = spread_slots(dis, 2)
    add_choice = r_harm.integers(0, len(_DISSONANT_ADDS), size=(n_slots, 2))
    chords = []
    chord_notes: list[list[int]] = []
    chord_triads: list[list[int]] = []
    pedals: list[int] = []
    modes: list[bool] = []
    previous = None
    pos_tonic = pos_other = 0
    for s in range(n_slots):
        is_minor = bool(minor[s])
        if unstable[s]:  # modulate: a new key, restart its progression
            key = (key + int(mod_steps[s])) % 12
            pos_tonic = pos_other = 0
        if is_minor == mode_minor:  # the tonic's quality: I-IV-V-I (i-iv-v-i)
            root = (key + prog[pos_tonic % 4]) % 12
            pos_tonic += 1
        else:  # diatonic triads of the other quality
            root = (key + int(others[pos_other % 3])) % 12
            pos_other += 1
        third = 3 if is_minor else 4
        # Voice leading: the inversion (lowest note in A3..G#4) closest to the previous voicing,
        # so common tones of related chords stay put and modulations jump.
        options = []
        for inversion in range(3):
            pcs = [(root + iv) % 12 for iv in (0, third, 7)]
            pcs = pcs[inversion:] + pcs[:inversion]
            low = 57 + (pcs[0] - 57) % 12  # A3..G#4
            voicing = [low]
            for pc in pcs[1:]:
                voicing.append(voicing[-1] + (pc - voicing[-1]) % 12)
            options.append(voicing)
        if previous is None:
            voicing = options[int(r_harm.integers(0, 3))]
        else:
            voicing = min(options, key=lambda v: sum(abs(a - b) for a, b in zip(v, previous)))
        previous = voicing
        root_midi = next(m for m in voicing if m % 12 == root)
        third_midi = next(m for m in voicing if m % 12 == (root + third) % 12)
        notes = list(voicing) + [third_midi + 12]  # the third doubled an octave up: the mode is audible
        for k in range(2):
            if adds[s, k]:
                choice = int(add_choice[s, k])
                for step in range(len(_DISSONANT_ADDS)):
                    extra = root_midi + _DISSONANT_ADDS[(choice + step) % len(_DISSONANT_ADDS)]
                    if extra not in notes:
                        notes.append(extra)
                        break
        t0, t1 = time_at(8 * s), time_at(8 * s + 8)
        chords.append((float(t0), float(t1), int(root), is_minor, int(key), bool(unstable[s])))
        modes.append(mode_minor)
        chord_triads.append(voicing)
        chord_notes.append(sorted(notes))
        pedals.append(88 + (key - 88) % 12)  # tonic pedal (E6..D#7): constant while the key is

    notes_out: list[Note] = []

    def add_part_note(part: str, part_idx: int, pos: int, length16: float, midi: float, amp: float):
        t0 = float(time_at(pos, part_idx))
        t_next = float(time_at(pos + length16))
        dur = max(0.03, art_gate * (t_next - float(time_at(pos))))
        if t0 < duration_seconds and t0 + dur > -0.5:
            notes_out.append(Note(part, t0, dur, float(midi), float(amp)))

    # --- chords: on every beat, plus syncopated pushes with complexity ----------------------
    push_u = r_rhy.random(2 * n_slots)
    pushes = _spread(push_u, 0.45 * rc, r_rhy.random()).reshape(n_slots, 2)
    sounding = range(max(0, lo - 1), hi)  # slots that reach into the excerpt
    for s in sounding:
        positions = [0, 4] + [p for p, on in zip((3, 6), pushes[s]) if on]
        positions.sort()
        gain = 0.30 / np.sqrt(len(chord_notes[s]))
        for i, p in enumerate(positions):
            nxt = positions[i + 1] if i + 1 < len(positions) else 8
            accent = 1.0 if p in (0, 4) else 0.8
            for m in chord_notes[s]:
                add_part_note("chords", 0, 8 * s + p, nxt - p, m, gain * accent)
            add_part_note("pedal", 0, 8 * s + p, nxt - p, pedals[s], 0.4 * accent)

    # --- bass: root on every beat, syncopated extra notes with complexity ------------------
    bass_u = r_rhy.random(4 * n_slots)
    bass_extra = _spread(bass_u, 0.6 * rc, r_rhy.random()).reshape(n_slots, 4)
    bass_fifth = r_rhy.random(4 * n_slots).reshape(n_slots, 4) < 0.5
    for s in sounding:
        root = chords[s][2]
        bass_midi = 36 + (root - 36) % 12
        positions = [(0, bass_midi), (4, bass_midi)]
        for k, p in enumerate((3, 6, 7, 2)):
            if bass_extra[s, k]:
                positions.append((p, bass_midi + (7 if bass_fifth[s, k] else 12)))
        positions.sort()
        for i, (p, m) in enumerate(positions):
            nxt = positions[i + 1][0] if i + 1 < len(positions) else 8
            add_part_note("bass", 1, 8 * s + p, nxt - p, m, 0.42)

    # --- lead melody ---------------------------------------------------------------------
    probs = mel * _MEL_P_SMOOTH + (1.0 - mel) * _MEL_P_POINT
    cum = np.cumsum(probs / probs.sum())
    center = float(r_mel.integers(74, 81))
    draws = r_mel.random((n16 + 1, 6))
    pitch = center
    scales: dict[tuple[int, bool], np.ndarray] = {}
    direction = 1 if r_mel.random() < 0.5 else -1
    pos = int(r_mel.integers(0, 4))
    i = 0
    span = 7.0
    while pos < n16 and i < len(draws) and time_at(pos) < duration_seconds:
        u = draws[i]
        i += 1
        length = int(_MEL_DURS[min(int(np.searchsorted(cum, u[0])), len(_MEL_DURS) - 1)])
        slot = min(pos // 8, n_slots - 1)
        skey = chords[slot][4]
        scale_pcs = (skey + (_MINOR if modes[slot] else _MAJOR)) % 12  # the key's diatonic set
        scale_key = (int(skey), bool(modes[slot]))
        scale = scales.get(scale_key)
        if scale is None:
            scale = scales[scale_key] = np.array([m for m in range(40, 104) if m % 12 in scale_pcs], dtype=float)
        if u[1] < 0.6 * (1.0 - mel):  # rest
            pos += length
            continue
        if u[2] < mel:  # step in the scale, smooth contour
            if u[3] < 0.25:
                direction = -direction
            step = direction * (1 if u[4] < 0.75 else 2)
            if abs(pitch - center) > span - 1:  # turn back towards the middle of the range
                direction = 1 if center > pitch else -1
            step = direction * abs(step)
            k = int(np.clip(_nearest(scale, pitch) + step, 0, len(scale) - 1))
            if pos % 4 == 0:  # chord tone on the beat
                chord_pcs = {n % 12 for n in chord_triads[slot]}
                tones = np.array([m for m in scale if m % 12 in chord_pcs])
                if len(tones):
                    cand = tones[np.abs(tones - scale[k]) <= 2]
                    if len(cand):
                        k = _nearest(scale, float(cand[_nearest(cand, scale[k])]))
            pitch = float(scale[k])
            if pos % 4 != 0 and u[5] < 0.35 * (1.0 - ts) ** 1.5:  # chromatic passing tone
                pitch += 1.0 if direction > 0 else -1.0
        else:  # a large random leap
            reach = 8.0 + 12.0 * (1.0 - mel)
            cand = scale[(np.abs(scale - center) <= reach) & (np.abs(scale - pitch) >= 5)]
            if len(cand):
                pitch = float(cand[min(int(u[5] * len(cand)), len(cand) - 1)])
        add_part_note("lead", 2, pos, length, pitch, 0.36)
        pos += length

    # --- percussion ------------------------------------------------------------------------
    hits: list[tuple[str, float, float]] = []
    beats = np.arange(n_beats)

    def add_hits(name: str, pos16: np.ndarray, gain: np.ndarray | float, part: int):
        if np.all(np.asarray(gain) <= 0) or len(pos16) == 0:
            return
        times = time_at(pos16, part)
        gains = np.broadcast_to(np.asarray(gain, dtype=float), times.shape)
        for t, g in zip(times, gains):
            if -0.3 < t < duration_seconds and g > 0:
                hits.append((name, float(t), float(g)))

    vel = 0.85 + 0.15 * r_rhy.random((7, n16 + 1))
    kick_acc = np.where(beats % 4 == 0, 1.0, 0.85)
    add_hits("kick", 4 * beats, 1.0 * kick_acc * vel[0, 4 * beats], 3)
    cand = np.concatenate([4 * beats + 3, 4 * beats + 1])
    extra = _spread(r_rhy.random(len(cand)), 0.35 * rc, r_rhy.random())
    add_hits("kick", cand[extra], 0.75 * vel[0, cand[extra]], 3)
    eighths = np.concatenate([4 * beats, 4 * beats + 2])
    add_hits("hat", eighths, 0.35 * _layer(rc, 0.0, 0.3) * vel[1, eighths], 4)
    sixteenths_off = np.concatenate([4 * beats + 1, 4 * beats + 3])
    add_hits("hat", sixteenths_off, 0.25 * _layer(rc, 0.6, 0.3) * vel[1, sixteenths_off], 4)
    back = 4 * beats[beats % 2 == 1]
    add_hits("snare", back, 0.7 * _layer(rc, 0.15, 0.3) * vel[2, back], 5)
    ghost = _spread(r_rhy.random(len(sixteenths_off)), 0.3 * rc, r_rhy.random())
    add_hits("snare", sixteenths_off[ghost], 0.3 * _layer(rc, 0.5, 0.3) * vel[2, sixteenths_off[ghost]], 5)
    claps = _spread(r_rhy.random(len(sixteenths_off)), 0.5 * rc, r_rhy.random())
    add_hits("clap", sixteenths_off[claps], 0.5 * _layer(rc, 0.3, 0.3) * vel[3, sixteenths_off[claps]], 4)
    wood = np.arange(int(r_rhy.integers(0, 3)), n16, 3)
    add_hits("wood", wood, 0.45 * _layer(rc, 0.45, 0.3) * vel[4, wood], 5)
    all16 = np.arange(n16)
    conga_mask = _spread(r_rhy.random(n16), 0.35 * rc, r_rhy.random())
    conga_hi = r_rhy.random(n16) < 0.5
    c16 = all16[conga_mask]
    add_hits("conga_hi", c16[conga_hi[conga_mask]], 0.45 * _layer(rc, 0.7, 0.3) * vel[5, c16[conga_hi[conga_mask]]], 3)
    add_hits("conga_lo", c16[~conga_hi[conga_mask]], 0.45 * _layer(rc, 0.7, 0.3) * vel[6, c16[~conga_hi[conga_mask]]], 3)

    # --- timbre (nuisance, per clip) and effect settings -----------------------------------
    timbre = {
        "chords": str(r_timb.choice(["organ", "piano", "strings"])),
        "lead": str(r_timb.choice(["flute", "clarinet", "saw", "voice"])),
        "bass": str(r_timb.choice(["round", "saw"])),
        "kick_hz": float(r_timb.uniform(45.0, 60.0)),
        "hat_hz": float(r_timb.uniform(6000.0, 8500.0)),
        "wood_hz": float(r_timb.uniform(800.0, 1300.0)),
        "conga_hz": float(r_timb.uniform(180.0, 260.0)),
        "ring_hz": float(137.0 * 2.0 ** r_timb.uniform(0.0, 1.0)),
        "pan": {k: float(v) for k, v in zip(
            ("chords", "lead", "bass", "kick", "snare", "hat", "clap", "wood", "conga_hi", "conga_lo"),
            np.array([-0.3, 0.2, 0.0, 0.0, -0.15, 0.45, -0.4, 0.5, -0.25, 0.25]) + r_timb.uniform(-0.1, 0.1, 10))},
        "level": {k: float(v) for k, v in zip(("chords", "lead", "bass", "drums"),
                                               10 ** (r_timb.uniform(-2.0, 2.0, 4) / 20.0))},
        "vibrato_hz": float(r_timb.uniform(4.8, 6.2)),
    }
    noise_seed = int(r_noise.integers(0, 2 ** 63))
    return ClipPlan(latent=latent, duration=float(duration_seconds), bpm=bpm, beat_times=beat_times,
                    chords=chords, chord_notes=chord_notes, notes=notes_out, hits=hits, timbre=timbre,
                    noise_seed=noise_seed)


# --- rendering --------------------------------------------------------------------------

_TABLE_SIZE = 4096
_TABLES: dict[tuple[str, int], np.ndarray] = {}


def _harmonic_amps(name: str, k: np.ndarray) -> np.ndarray:
    if name == "organ":
        return np.where(k <= 8, 1.0 / k, 0.25 / k ** 2) * np.where(np.isin(k, (1, 2, 4, 8)), 1.0, 0.6)
    if name == "piano":
        return 1.0 / k ** 1.4
    if name == "strings":
        return 1.0 / k ** 1.1
    if name == "flute":
        return np.where(k == 1, 1.0, 0.35 / k ** 2)
    if name == "clarinet":
        return np.where(k % 2 == 1, 1.0 / k, 0.08 / k)
    if name == "saw":
        return 0.8 / k
    if name == "voice":  # harmonics shaped by two formant bumps (relative to a ~600 Hz note)
        return (1.0 / k) * (0.3 + np.exp(-0.5 * ((k - 1.3) / 0.8) ** 2) + 0.7 * np.exp(-0.5 * ((k - 4.0) / 1.2) ** 2))
    if name == "round":
        return np.where(k <= 3, np.array([1.0, 0.45, 0.18])[np.clip(k - 1, 0, 2)], 0.0)
    if name == "bass_saw":
        return 1.0 / k ** 1.8
    raise ValueError(name)


def _table(name: str, n_harmonics: int) -> np.ndarray:
    key = (name, n_harmonics)
    table = _TABLES.get(key)
    if table is None:
        k = np.arange(1, n_harmonics + 1)
        amps = _harmonic_amps(name, k)
        phase = 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE
        table = (amps[:, None] * np.sin(k[:, None] * phase[None, :] + 0.3 * k[:, None])).sum(axis=0)
        table = (table / np.abs(table).max()).astype(np.float32)
        _TABLES[key] = table
    return table


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _render_notes(notes: list[Note], n: int, sr: int, timbre: str, *, attack: float, release: float,
                  decay_tau: float | None = None, vibrato: float = 0.0, vibrato_hz: float = 5.5,
                  detune_cents: float = 0.0, max_harmonics: int = 24,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Additive (wavetable) synthesis of notes with an ADSR-like envelope into a mono buffer."""
    out = np.zeros(n, np.float32)
    rng = rng if rng is not None else np.random.default_rng(0)  # random start phases
    for note in notes:
        i0 = int(round(note.start * sr))
        length = int((note.duration + release) * sr)
        if length <= 0 or i0 >= n or i0 + length <= 0:
            continue
        skip = max(0, -i0)
        stop = min(length, n - i0)
        t = np.arange(skip, stop, dtype=np.float32) * np.float32(1.0 / sr)  # note-relative time
        freq = _midi_hz(note.midi)
        n_harm = max(1, min(max_harmonics, int(0.45 * sr / freq)))
        table = _table(timbre, n_harm)
        # phase in table samples (float32 is exact enough over a note's few seconds)
        phase = t * np.float32(freq * _TABLE_SIZE) + np.float32(rng.random() * _TABLE_SIZE)
        if vibrato > 0.0:  # frequency modulation, fading in after 150 ms
            depth = np.clip((t - np.float32(0.15)) * np.float32(5.0), 0.0, 1.0)
            scale = np.float32(_TABLE_SIZE * freq * np.log(2) / 12.0 * vibrato / (2 * np.pi * vibrato_hz))
            phase += scale * depth * (1 - np.cos(np.float32(2 * np.pi * vibrato_hz) * t))
        wave = table[phase.astype(np.int64) & (_TABLE_SIZE - 1)]
        if detune_cents > 0.0:
            phase *= np.float32(2 ** (detune_cents / 1200.0))
            wave += table[phase.astype(np.int64) & (_TABLE_SIZE - 1)]
            wave *= np.float32(0.5)
        d = note.duration
        a = min(attack, 0.5 * d)
        if decay_tau is not None:  # attack, exponential decay while held, release
            env = np.interp(t, [0.0, a, d, d + release], [0.0, 1.0, 1.0, 0.0])
            env *= np.exp(np.minimum(t, d) * np.float32(-1.0 / decay_tau))
        else:  # attack, decay to sustain 0.8 over 80 ms, release
            knee = min(a + 0.08, d)
            level = 1.0 - 0.2 * (knee - a) / 0.08
            env = np.interp(t, [0.0, a, knee, d, d + release], [0.0, 1.0, level, 0.8 if knee < d else level, 0.0])
        wave *= env.astype(np.float32)
        wave *= np.float32(note.amp)
        out[i0 + skip:i0 + stop] += wave
    return out


def _sos(kind: str, freqs, sr: int, order: int = 2) -> np.ndarray:
    freqs = tuple(round(float(f), 1) for f in np.atleast_1d(freqs))
    return _sos_cached(kind, freqs, int(sr), int(order))


@functools.lru_cache(maxsize=256)
def _sos_cached(kind: str, freqs: tuple[float, ...], sr: int, order: int) -> np.ndarray:
    edges = np.clip(np.array(freqs), 10.0, 0.475 * sr)
    return signal.butter(order, edges if len(edges) > 1 else edges[0], btype=kind, fs=sr, output="sos")


def _drum(name: str, sr: int, timbre: dict, rng: np.random.Generator) -> np.ndarray:
    if name == "kick":
        t = np.arange(int(0.35 * sr)) / sr
        f = timbre["kick_hz"] + 100.0 * np.exp(-t / 0.03)
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
        x[: int(0.003 * sr)] += 0.3 * rng.standard_normal(int(0.003 * sr))
    elif name == "snare":
        t = np.arange(int(0.25 * sr)) / sr
        noise = signal.sosfilt(_sos("bandpass", (1200.0, 6000.0), sr), rng.standard_normal(len(t)))
        x = 1.4 * noise * np.exp(-t / 0.07) + 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.05)
    elif name == "hat":
        t = np.arange(int(0.12 * sr)) / sr
        noise = signal.sosfilt(_sos("highpass", timbre["hat_hz"], sr, 4), rng.standard_normal(len(t)))
        x = 1.6 * noise * np.exp(-t / 0.025)
    elif name == "clap":
        t = np.arange(int(0.2 * sr)) / sr
        noise = signal.sosfilt(_sos("bandpass", (900.0, 3500.0), sr), rng.standard_normal(len(t)))
        env = sum(np.exp(-np.clip(t - d, 0, None) / 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
        x = 1.5 * noise * (env / 3 + np.exp(-t / 0.06) * (t >= 0.022))
    elif name == "wood":
        t = np.arange(int(0.12 * sr)) / sr
        f = timbre["wood_hz"]
        x = (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2.7 * f * t)) * np.exp(-t / 0.025)
    elif name in ("conga_hi", "conga_lo"):
        t = np.arange(int(0.3 * sr)) / sr
        f0 = timbre["conga_hz"] * (1.5 if name == "conga_hi" else 1.0)
        f = f0 * (1 + 0.15 * np.exp(-t / 0.02))
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.09)
    else:
        raise ValueError(name)
    x[: int(0.001 * sr)] *= np.linspace(0, 1, int(0.001 * sr))
    return x.astype(np.float32)


def _pan(p: float) -> tuple[float, float]:
    angle = (np.clip(p, -1, 1) + 1) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def _envelope_follow(x: np.ndarray, sr: int) -> np.ndarray:
    """Amplitude envelope: mean of |x| per 10 ms block, linearly interpolated."""
    block = max(1, sr // 100)
    m = len(x) // block
    if m < 2:
        return np.full(len(x), float(np.abs(x).mean()) if len(x) else 0.0, np.float32)
    peaks = np.abs(x[:m * block]).reshape(m, block).mean(axis=1)
    centres = (np.arange(m) + 0.5) * block
    return np.interp(np.arange(len(x), dtype=np.float32), centres, peaks).astype(np.float32)


def _dissonance_fx(x: np.ndarray, d: float, carrier: np.ndarray, noise: np.ndarray, sr: int) -> np.ndarray:
    """Noisy / inharmonic timbre, growing with dissonance ``d``: ring modulation by
    ``carrier`` (a sine at a non-musical frequency), soft-clipping distortion, and band
    ``noise`` that follows the notes' envelope."""
    if d <= 0.0:
        return x
    y = x * np.float32(1.0 - 0.2 * d)
    y += np.float32(0.45 * d) * (x * carrier)
    peak = float(np.abs(y).max()) or 1.0
    drive = 1.0 + 4.0 * d
    y *= np.float32(drive / peak)
    np.tanh(y, out=y)
    y *= np.float32(peak / np.tanh(drive))
    env = _envelope_follow(x, sr)
    env *= np.float32(1.6 * d)
    env *= noise
    y += env
    return y


def render_plan(plan: ClipPlan, sample_rate: int = 44100, *, parts: tuple[str, ...] | None = None) -> np.ndarray:
    """Synthesise a :class:`ClipPlan` to stereo float32 audio (samples, 2), peak -1 dBFS.

    ``parts`` restricts the mix to some of ``lead``, ``chords``, ``bass``, ``drums`` (for
    tests and demonstrations); the default renders everything.
    """
    out_sr = int(sample_rate)
    n_out = int(round(plan.duration * out_sr))
    # Synthesise at half the rate when it is high (the content stays below ~10 kHz, which is
    # all a 22.05 kHz analysis can see), then upsample: half the cost.
    half = out_sr >= 32000 and out_sr % 2 == 0
    sr = out_sr // 2 if half else out_sr
    n = int(round(plan.duration * sr))
    mel, art, rs, rc, dis, ts, mino = plan.latent
    tb = plan.timbre
    parts = tuple(parts) if parts is not None else ("lead", "chords", "bass", "drums")
    rng = np.random.default_rng(plan.noise_seed)
    attack = 0.004 + 0.012 * (1.0 - art)
    release = 0.02 + 0.08 * (1.0 - art)
    by_part = {p: [note for note in plan.notes if note.part == p] for p in ("lead", "chords", "pedal", "bass")}
    pitched = [p for p in ("chords", "lead") if p in parts]
    if pitched and dis > 0.0:
        noise = signal.sosfilt(_sos("bandpass", (700.0, 9000.0), sr), rng.standard_normal(n)).astype(np.float32)
        noise /= np.float32(noise.std() or 1.0)
        np.clip(noise, -3.0, 3.0, out=noise)  # no isolated spikes
        ring_table = np.sin(2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE).astype(np.float32)
        carrier = ring_table[(np.arange(n) * (tb["ring_hz"] * _TABLE_SIZE / sr)).astype(np.int64) & (_TABLE_SIZE - 1)]
    buses: dict[str, np.ndarray] = {}
    if "chords" in parts:
        x = _render_notes(by_part["chords"], n, sr, tb["chords"], attack=attack, release=release,
                          decay_tau=0.7 if tb["chords"] == "piano" else None,
                          detune_cents=3.0 + 30.0 * dis, max_harmonics=16, rng=rng)
        x += _render_notes(by_part["pedal"], n, sr, "flute", attack=attack, release=release,
                           detune_cents=3.0 + 30.0 * dis, max_harmonics=4, rng=rng)
        if dis > 0.0:
            x = _dissonance_fx(x, dis, carrier, noise, sr)
        buses["chords"] = x * np.float32(tb["level"]["chords"])
    if "lead" in parts:
        x = _render_notes(by_part["lead"], n, sr, tb["lead"], attack=attack, release=release,
                          vibrato=0.35 * mel, vibrato_hz=tb["vibrato_hz"],
                          detune_cents=25.0 * dis, max_harmonics=20, rng=rng)
        if dis > 0.0:
            x = _dissonance_fx(x, dis, carrier, np.roll(noise, n // 3), sr)
        buses["lead"] = x * np.float32(tb["level"]["lead"])
    if "bass" in parts:
        x = _render_notes(by_part["bass"], n, sr, "round" if tb["bass"] == "round" else "bass_saw",
                          attack=attack, release=release, max_harmonics=12, rng=rng)
        buses["bass"] = x * np.float32(tb["level"]["bass"])
    left_ch = np.zeros(n, np.float32)
    right_ch = np.zeros(n, np.float32)
    for name, x in buses.items():
        left, right = _pan(tb["pan"][name])
        left_ch += np.float32(left) * x
        right_ch += np.float32(right) * x
    if "drums" in parts:
        samples: dict[str, list[np.ndarray]] = {}
        for name, t, gain in plan.hits:
            if name not in samples:
                samples[name] = [_drum(name, sr, tb, rng) for _ in range(3)]
            sample = samples[name][int(t * 1000) % 3]
            i0 = int(round(t * sr))
            skip = max(0, -i0)
            stop = min(len(sample), n - i0)
            if stop <= skip:
                continue
            left, right = _pan(tb["pan"][name])
            chunk = sample[skip:stop] * np.float32(gain * tb["level"]["drums"])
            left_ch[i0 + skip:i0 + stop] += np.float32(left) * chunk
            right_ch[i0 + skip:i0 + stop] += np.float32(right) * chunk
    stereo = np.stack([left_ch, right_ch], axis=1)
    if half:
        stereo = signal.resample_poly(stereo, 2, 1, axis=0).astype(np.float32)
    if len(stereo) != n_out:
        stereo = np.pad(stereo, ((0, max(0, n_out - len(stereo))), (0, 0)))[:n_out]
    n, sr = n_out, out_sr
    fade = min(int(0.015 * sr), n // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        stereo[:fade] *= ramp
        stereo[n - fade:] *= ramp[::-1]
    peak = float(np.abs(stereo).max())
    if peak > 0:
        stereo *= np.float32(10 ** (-1.0 / 20.0) / peak)
    return stereo.astype(np.float32)


def synthesize_clip(latent: np.ndarray, *, seed: int, duration_seconds: float,
                    sample_rate: int = 44100) -> np.ndarray:
    """Synthesise one clip whose seven qualities follow ``latent`` (canonical order, [0, 1]).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(round(duration_seconds * sample_rate), 2)``, peak at -1 dBFS.
    """
    latent = np.asarray(latent, dtype=np.float64)
    if latent.shape != (7,) or not np.all(np.isfinite(latent)):
        raise ValueError(f"latent must be 7 finite values in [0, 1], got shape {latent.shape}")
    if np.any(latent < 0.0) or np.any(latent > 1.0):
        raise ValueError(f"latent values must lie in [0, 1], got {latent.tolist()}")
    duration_seconds = _check_float("duration_seconds", duration_seconds, 0.0, low_open=True)
    sample_rate = _check_int("sample_rate", sample_rate, 1000, 192000)
    return render_plan(plan_clip(latent, seed=seed, duration_seconds=duration_seconds), sample_rate)


# ---------------------------------------------------------------------------------------
# Files

def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _encode_mp3(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    try:  # variable bitrate (~100 kbit/s, 15 kHz low-pass): ~15 % faster than the default CBR
        sf.write(buffer, audio, sample_rate, format="MP3", compression_level=0.7, bitrate_mode="VARIABLE")
    except TypeError:  # soundfile < 0.13 has neither option
        buffer = io.BytesIO()
        sf.write(buffer, audio, sample_rate, format="MP3")
    return buffer.getvalue()


def _render_task(task: tuple) -> tuple[int, int]:
    """Worker: synthesise, encode and write one clip (and its Soundtracks copy)."""
    song_id, latent, seed, duration, sample_rate, paths = task
    audio = synthesize_clip(np.asarray(latent), seed=seed, duration_seconds=duration, sample_rate=sample_rate)
    data = _encode_mp3(audio, sample_rate)
    for path in paths:
        _atomic_write_bytes(Path(path), data)
    return song_id, len(data)


def _render_chunk(tasks: list[tuple]) -> tuple[list[tuple[int, int]], float]:
    started = time.process_time()
    done = [_render_task(task) for task in tasks]
    return done, time.process_time() - started


def _annotations_text(labels: SyntheticLabels) -> str:
    lines = [ANNOTATIONS_HEADER]
    for song_id, row in zip(labels.song_ids, labels.annotations):
        lines.append(",".join([str(int(song_id))] + [f"{row[j]:.4f}" for j in _ANNOTATION_FILE_ORDER]))
    return "\n".join(lines) + "\n"


def _metadata_text(labels: SyntheticLabels) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(METADATA_HEADER)
    for k, song_id in enumerate(labels.song_ids):
        writer.writerow([int(song_id), labels.sources[k], labels.source_ids[k], labels.artists[k],
                         labels.titles[k], labels.albums[k]])
    return buffer.getvalue()


def _ratings_text(labels: SyntheticLabels) -> str:
    lines = [RATINGS_HEADER]
    for number, (row, target) in enumerate(zip(labels.ratings, labels.targets), start=1):
        lines.append(",".join([f"{number:03d}"] + [f"{v:.2f}" for v in row] + [target]))
    return "\ufeff" + "\r\n".join(lines) + "\r\n"


def _truth(labels: SyntheticLabels, *, n_soundtracks: int, duration_seconds: float, sample_rate: int) -> dict:
    w_paper, b_paper = planted_map_paper_scale()
    return {
        "description": "Planted truth of the synthetic corpus generated by midlevel_emotion.synthetic",
        "seed": labels.seed,
        "n_clips": int(len(labels.song_ids)),
        "n_soundtracks": n_soundtracks,
        "duration_seconds": duration_seconds,
        "sample_rate": sample_rate,
        "features": list(MIDLEVEL_FEATURES),
        "emotions": list(EMOTIONS),
        "annotation_model": "annotation = clip(1 + 9 * latent + N(0, annotation_noise), 1, 10), 4 decimals",
        "rating_model": "rating = clip(bias + weights @ latent + N(0, rating_noise), 1, 9), 2 decimals",
        "weights": np.round(PLANTED_WEIGHTS, 10).tolist(),
        "bias": np.round(PLANTED_BIAS, 10).tolist(),
        "paper_scale": {
            "description": "the same map from annotation/10 to rating/10 (before noise and clipping): "
                           "y = weights @ x + bias, weights = W / 9, bias = (b - W.sum(1) / 9) / 10",
            "weights": w_paper.tolist(),
            "bias": b_paper.tolist(),
        },
        "noise": {"annotation_noise": labels.annotation_noise, "rating_noise": labels.rating_noise},
        "latent_distribution": {"marginal": "uniform(0, 1)", "copula": "gaussian",
                                "correlation": LATENT_CORRELATION.tolist()},
        "target_rule": "nearest prototype in z-score space (expected mean/sd of each rating): the "
                       "category of the largest signed z among " +
                       ", ".join(f"{c}={'+' if s > 0 else '-'}{e}" for c, e, s in _TARGET_RULES) +
                       f", if above {TARGET_THRESHOLD:g}; else NEUTRAL",
        "sound_design": dict(SOUND_DESIGN),
        "soundtracks": {f"{k + 1:03d}": str(int(s)) for k, s in enumerate(labels.soundtrack_song_ids)},
        "latents": {str(int(s)): [round(float(v), 6) for v in row] for s, row in zip(labels.song_ids, labels.latents)},
    }


_AUDIO_NAME = re.compile(r"^\d+\.mp3$")


def generate_corpus(raw_dir: Path, *, seed: int = 2019, n_clips: int = 200, n_soundtracks: int = 100,
                    duration_seconds: float = 15.0, sample_rate: int = 44100, annotation_noise: float = 0.5,
                    rating_noise: float = 0.25, jobs: int = 0, progress: bool = True) -> dict:
    """Write the synthetic corpus under ``raw_dir`` in the published layouts (module docstring).

    The label files (``annotations.csv``, ``metadata.csv``, ``mean_ratings_set1.csv``) and
    ``synthetic_truth.json`` are removed first and written last, every file atomically, so
    an interrupted run never leaves a complete-looking corpus. Numbered mp3 files left in the
    two audio folders by an earlier, larger corpus are removed.

    Parameters
    ----------
    raw_dir : Path
        Destination (created).
    seed : int
        Seed of everything (labels, metadata, audio).
    n_clips, n_soundtracks : int
        Mid-level clips (1..10000) and how many of them are Soundtracks clips (0..360).
    duration_seconds : float
        Mean clip length; each clip is uniform within +-1/30 of it (0.5 s at 15 s).
    sample_rate : int
        Audio sample rate, one MP3 supports (44100 as published).
    annotation_noise, rating_noise : float
        Standard deviations of the rater noise on the 1-10 and 1-9 scales.
    jobs : int
        Worker processes for synthesis and mp3 encoding; 0 = one per available core.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``raw_dir``, ``n_clips``, ``n_soundtracks``, ``seed``, ``jobs``, ``audio_seconds``,
        ``audio_bytes``, ``cpu_seconds`` (synthesis and encoding, summed over the workers) and
        ``seconds`` (wall time).
    """
    started = time.perf_counter()
    raw_dir = Path(raw_dir)
    n_clips, n_soundtracks = _validate_sizes(n_clips, n_soundtracks)
    duration_seconds = _check_float("duration_seconds", duration_seconds, 1.0, 600.0)
    sample_rate = _check_int("sample_rate", sample_rate, 1)
    if sample_rate not in MP3_SAMPLE_RATES:
        raise ValueError(f"sample_rate must be one MP3 supports {MP3_SAMPLE_RATES}, got {sample_rate}")
    jobs = resolve_jobs(_check_int("jobs", jobs, 0))
    labels = draw_labels(seed, n_clips, n_soundtracks, annotation_noise=annotation_noise,
                         rating_noise=rating_noise, duration_seconds=duration_seconds)

    from .corpus import (ANNOTATIONS_CSV, METADATA_CSV, MIDLEVEL_AUDIO_DIR, RATINGS_CSV,
                         SOUNDTRACKS_AUDIO_DIR, SYNTHETIC_TRUTH_JSON)

    label_files = [raw_dir / p for p in (SYNTHETIC_TRUTH_JSON, RATINGS_CSV, ANNOTATIONS_CSV, METADATA_CSV)]
    for path in label_files:  # an interrupted re-run must not look complete
        if path.exists():
            path.unlink()
    mid_audio = raw_dir / MIDLEVEL_AUDIO_DIR
    st_audio = raw_dir / SOUNDTRACKS_AUDIO_DIR
    mid_audio.mkdir(parents=True, exist_ok=True)
    if n_soundtracks:
        st_audio.mkdir(parents=True, exist_ok=True)
    keep_mid = {f"{s}.mp3" for s in labels.song_ids}
    keep_st = {f"{k:03d}.mp3" for k in range(1, n_soundtracks + 1)}
    for folder, keep in ((mid_audio, keep_mid), (st_audio, keep_st)):
        for path in folder.iterdir() if folder.is_dir() else ():
            if _AUDIO_NAME.match(path.name) and path.name not in keep:
                path.unlink()
    if not n_soundtracks:  # no Soundtracks dataset at all (not an empty, incomplete one)
        for folder in (st_audio, st_audio.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    number_of = {int(s): k + 1 for k, s in enumerate(labels.soundtrack_song_ids)}
    tasks = []
    for k, song_id in enumerate(labels.song_ids):
        paths = [str(mid_audio / f"{song_id}.mp3")]
        if int(song_id) in number_of:
            paths.append(str(st_audio / f"{number_of[int(song_id)]:03d}.mp3"))
        tasks.append((int(song_id), labels.latents[k].tolist(), clip_seed(labels.seed, int(song_id)),
                      float(labels.durations[k]), sample_rate, paths))

    from tqdm.auto import tqdm

    audio_bytes = 0
    cpu_seconds = 0.0
    with tqdm(total=len(tasks), desc="synthetic corpus", unit="clip", disable=not progress) as bar:
        if jobs == 1 or len(tasks) == 1:
            for task in tasks:
                cpu = time.process_time()
                audio_bytes += _render_task(task)[1]
                cpu_seconds += time.process_time() - cpu
                bar.update(1)
        else:
            workers = min(jobs, len(tasks))
            chunk = max(1, min(4, len(tasks) // (workers * 8)))
            chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), chunk)]
            import multiprocessing

            # Not "fork": the caller may hold threads (torch, tqdm); the fork server starts
            # clean and imports this module once for all workers.
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
            else:
                context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_render_chunk, c) for c in chunks]
                for future in as_completed(futures):
                    done, cpu = future.result()
                    audio_bytes += sum(size for _, size in done)
                    cpu_seconds += cpu
                    bar.update(len(done))

    # Labels last: metadata, annotations, ratings, then the truth file.
    _atomic_write_bytes(raw_dir / METADATA_CSV, _metadata_text(labels).encode("utf-8"))
    _atomic_write_bytes(raw_dir / ANNOTATIONS_CSV, _annotations_text(labels).encode("utf-8"))
    if n_soundtracks:
        _atomic_write_bytes(raw_dir / RATINGS_CSV, _ratings_text(labels).encode("utf-8"))
    truth = _truth(labels, n_soundtracks=n_soundtracks, duration_seconds=duration_seconds, sample_rate=sample_rate)
    _atomic_write_bytes(raw_dir / SYNTHETIC_TRUTH_JSON,
                        (json.dumps(truth, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return {
        "raw_dir": str(raw_dir),
        "n_clips": n_clips,
        "n_soundtracks": n_soundtracks,
        "seed": labels.seed,
        "jobs": jobs,
        "audio_seconds": round(float(labels.durations.sum()), 3),
        "audio_bytes": int(audio_bytes),
        "cpu_seconds": round(cpu_seconds, 3),  # synthesis + mp3 encoding, summed over workers
        "seconds": round(time.perf_counter() - started, 3),
    }
