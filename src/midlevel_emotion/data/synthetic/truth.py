"""The planted truth of the synthetic corpus: what the latents mean and what they cause.

The latent->emotion map (:data:`PLANTED_WEIGHTS`, :data:`PLANTED_BIAS`), the latents'
correlation (:data:`LATENT_CORRELATION`), what each latent does to the sound
(:data:`SOUND_DESIGN`) and the rule that gives each Soundtracks clip its TARGET category.
"""

from __future__ import annotations

import numpy as np

from ...core.constants import EMOTIONS, MIDLEVEL_FEATURES

# The layout of the planted table below; tests/test_synthetic.py checks that it is the
# canonical order of core/constants.py, so the table cannot silently attach a weight to another quality.
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
