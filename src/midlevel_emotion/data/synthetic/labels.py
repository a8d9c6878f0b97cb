"""Labels of the synthetic corpus: the planted truth, latents, annotations, ratings, metadata.

Cheap (no audio). :func:`draw_labels` draws everything :mod:`.writer` puts into the CSVs;
the planted latent->emotion map is :data:`PLANTED_WEIGHTS` and :data:`PLANTED_BIAS`.
Every random stream of the corpus is a ``SeedSequence`` spawn key of the corpus seed,
listed here once so that no two streams can collide (:func:`clip_seed` for the audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...core.constants import EMOTIONS, MIDLEVEL_FEATURES

# The layout of the planted table below; tests/test_synthetic.py checks that it is the
# canonical order of corpus.py, so the table cannot silently attach a weight to another quality.
_PLANTED_ROWS = ("valence", "energy", "tension", "anger", "fear", "happy", "sad", "tender")
_PLANTED_COLUMNS = ("melodiousness", "articulation", "rhythm_stability", "rhythm_complexity",
                    "dissonance", "tonal_stability", "minorness")

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
#: Melodious music tends to be consonant and tonally stable, complex rhythms less stable.
LATENT_CORRELATION = np.eye(7)
for _a, _b, _r in [("melodiousness", "dissonance", -0.3), ("dissonance", "tonal_stability", -0.3),
                   ("melodiousness", "tonal_stability", 0.25), ("rhythm_stability", "rhythm_complexity", -0.2),
                   ("articulation", "rhythm_complexity", 0.15)]:
    _i, _j = MIDLEVEL_FEATURES.index(_a), MIDLEVEL_FEATURES.index(_b)
    LATENT_CORRELATION[_i, _j] = LATENT_CORRELATION[_j, _i] = _r
del _a, _b, _i, _j, _r

#: What each latent does to the sound (quoted in docs/synthetic-corpus.md and the truth file).
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

# Random streams (SeedSequence spawn keys) of the label generator and of the clips; the clips'
# key starts far above the label streams so that new label streams never collide with it.
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
    """Partition n into group sizes in [low, high], each drawn uniformly until n runs out.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws (one per group).
    n : int
        Total to partition; 0 gives no groups.
    low, high : int
        Bounds on every group size; ``high >= 2 * low - 1``, so that any ``n >= low`` can be split.

    Returns
    -------
    list of int
        Sizes that sum to ``n``, each in ``[low, high]``.

    Raises
    ------
    ValueError
        If ``0 < n < low`` (no partition exists) or ``high < 2 * low - 1``.
    """
    if high < 2 * low - 1:  # e.g. [3, 4] cannot make 5: the tail repair below needs the room
        raise ValueError(f"group sizes in [{low}, {high}] cannot partition every n >= {low}: "
                         "need high >= 2 * low - 1")
    if 0 < n < low:
        raise ValueError(f"cannot partition {n} into groups of {low} to {high}")
    sizes: list[int] = []
    left = n
    while left > 0:
        size = min(int(rng.integers(low, high + 1)), left)
        sizes.append(size)
        left -= size
    if sizes and sizes[-1] < low:  # the first group is >= low (as n >= low), so there is one before
        _repair_tail(sizes, low, high)
    return sizes


def _repair_tail(sizes: list[int], low: int, high: int) -> None:
    """Bring a short last group up to ``low`` in place, taking from the group before it.

    Merging the tail into the previous group, the simple fix, can overshoot ``high`` (5 + 1 = 6
    excerpts for a film promised 2-5); then the previous group lends the tail just what it lacks.
    Merging is kept where it fits, so the partitions that were already valid do not change.
    """
    tail = sizes.pop()  # first: `sizes[-2] += sizes.pop()` would index the list before the pop
    if sizes[-1] + tail <= high:
        sizes[-1] += tail
    else:  # sizes[-1] + tail > high >= 2 * low - 1, so the lender keeps at least low
        sizes[-1] -= low - tail
        sizes.append(low)


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

    # Soundtracks: one composer per film, 2-5 excerpts per film (360 from 110 in the real set);
    # a corpus with a single Soundtracks clip (tiny test corpora) can only have a one-excerpt film.
    st_rows = soundtrack_song_ids - 1  # in Soundtracks-number order
    sizes = _group_sizes(rng, n_soundtracks, 2, 5) if n_soundtracks != 1 else [1]
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


def clip_seed(seed: int, song_id: int) -> int:
    """The seed of one clip's audio, derived from the corpus seed and its song_id."""
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(_STREAM_CLIP, int(song_id))).generate_state(2)
    return int(state[0]) << 32 | int(state[1])

