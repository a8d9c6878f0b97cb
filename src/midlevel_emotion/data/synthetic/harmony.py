"""The harmony of a clip: one chord per two-beat slot, keys, modulations, dissonances.

:func:`harmony` writes the progression over the :class:`~.timing.Grid`: diatonic triads whose
minor share is ``minorness``, modulations with ``1 - tonal_stability``, added seconds,
tritones and sevenths with ``dissonance``, voiced smoothly, with a tonic pedal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .timing import SLOT_SIXTEENTHS, Grid, Latent, _spread

# The keys' scales in semitones above the tonic (the lead's notes come from them).
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor (aeolian)
_PROGRESSIONS = ((0, 5, 7, 0), (0, 5, 0, 7), (0, 0, 5, 7), (0, 7, 5, 0))  # I-IV-V-I family, semitones
# Roots of the diatonic triads whose quality is not the key's (major key: vi ii iii; minor: III VI VII).
_OTHER_QUALITY_ROOTS = {False: (9, 2, 4), True: (3, 8, 10)}
# Key changes in semitones: all but to the dominant and subdominant, which share six of seven
# notes with the key and would hardly be heard as a modulation.
_MODULATIONS = np.array([1, 2, 3, 4, 6, 8, 9, 10, 11])
_DISSONANT_ADDS = (1, 6, 11, 2, 13)  # semitones above the root: b2, tritone, maj7, 2, b9
MINOR_KEY_THRESHOLD = 0.5        # the key's tonic chord has the majority quality
MAX_MODULATION_SHARE = 0.9       # at tonal_stability 0 almost every slot changes key
INSTABILITY_POWER = 1.5          # (1 - tonal_stability)^1.5: fairly stable clips stay nearly in one key
VOICING_LOW_MIDI = 57            # chord voicings start in A3..G#4, the middle of the piano
PEDAL_LOW_MIDI = 88              # tonic pedal in E6..D#7, above the melody, so the key is always audible


@dataclass
class Harmony:
    """The chord progression, one chord per two-beat slot of the grid."""

    chords: list[tuple[float, float, int, bool, int, bool]]  # as ClipPlan.chords
    notes: list[list[int]]   # sounding MIDI notes per slot (triad, doubled third, dissonant adds)
    triads: list[list[int]]  # the voiced triad per slot (the melody's chord tones)
    pedals: list[int]        # tonic pedal per slot
    minor_key: bool          # the keys' mode (every modulation keeps it)
    sounding: range          # slots that reach into the excerpt


def _instability(tonal_stability: float) -> float:
    return (1.0 - tonal_stability) ** INSTABILITY_POWER


def _spread_slots(rng: np.random.Generator, n_slots: int, visible: tuple[int, int], p: float,
                  width: int = 1) -> np.ndarray:
    """Exact share p of the visible slots (x width per slot), random positions."""
    lo, hi = visible
    u = rng.random(n_slots * width).reshape(n_slots, width)
    mask = u < p  # outside the excerpt
    mask[lo:hi] = _spread(u[lo:hi].ravel(), p, rng.random()).reshape(hi - lo, width)
    return mask


def _voicings(root: int, third: int) -> list[list[int]]:
    """The three inversions of a triad, lowest note in A3..G#4, upwards from there."""
    options = []
    for inversion in range(3):
        pcs = [(root + iv) % 12 for iv in (0, third, 7)]
        pcs = pcs[inversion:] + pcs[:inversion]
        voicing = [VOICING_LOW_MIDI + (pcs[0] - VOICING_LOW_MIDI) % 12]
        for pc in pcs[1:]:
            voicing.append(voicing[-1] + (pc - voicing[-1]) % 12)
        options.append(voicing)
    return options


def _add_dissonances(notes: list[int], root_midi: int, adds: np.ndarray, choices: np.ndarray) -> None:
    """Append up to two dissonant notes above the root (the next free one of _DISSONANT_ADDS)."""
    for add, choice in zip(adds, choices):
        if add:
            for step in range(len(_DISSONANT_ADDS)):
                extra = root_midi + _DISSONANT_ADDS[(int(choice) + step) % len(_DISSONANT_ADDS)]
                if extra not in notes:
                    notes.append(extra)
                    break


def harmony(grid: Grid, rng: np.random.Generator, latent: Latent) -> Harmony:
    """Chords per two-beat slot: diatonic triads, minor share, modulations, added dissonances."""
    n_slots, visible = grid.n_slots, grid.visible_slots()
    key = int(rng.integers(0, 12))  # tonic pitch class of the current key
    minor_key = bool(latent.minorness > MINOR_KEY_THRESHOLD)
    progression = _PROGRESSIONS[int(rng.integers(0, len(_PROGRESSIONS)))]
    others = np.array(_OTHER_QUALITY_ROOTS[minor_key])[rng.permutation(3)]
    modulates = _spread_slots(rng, n_slots, visible, MAX_MODULATION_SHARE * _instability(latent.tonal_stability))[:, 0]
    minor = _spread_slots(rng, n_slots, visible, latent.minorness)[:, 0]
    mod_steps = rng.choice(_MODULATIONS, size=n_slots)
    adds = _spread_slots(rng, n_slots, visible, latent.dissonance, 2)
    add_choice = rng.integers(0, len(_DISSONANT_ADDS), size=(n_slots, 2))
    out = Harmony([], [], [], [], minor_key, range(max(0, visible[0] - 1), visible[1]))
    previous = None
    pos_tonic = pos_other = 0
    for s in range(n_slots):
        is_minor = bool(minor[s])
        if modulates[s]:  # a new key, restart its progression
            key = (key + int(mod_steps[s])) % 12
            pos_tonic = pos_other = 0
        if is_minor == minor_key:  # the tonic's quality: I-IV-V-I (i-iv-v-i)
            root = (key + progression[pos_tonic % 4]) % 12
            pos_tonic += 1
        else:  # diatonic triads of the other quality
            root = (key + int(others[pos_other % 3])) % 12
            pos_other += 1
        third = 3 if is_minor else 4
        # Voice leading: the inversion closest to the previous voicing, so common tones of
        # related chords stay put and modulations jump.
        options = _voicings(root, third)
        if previous is None:
            voicing = options[int(rng.integers(0, 3))]
        else:
            voicing = min(options, key=lambda v: sum(abs(a - b) for a, b in zip(v, previous)))
        previous = voicing
        root_midi = next(m for m in voicing if m % 12 == root)
        third_midi = next(m for m in voicing if m % 12 == (root + third) % 12)
        notes = list(voicing) + [third_midi + 12]  # the third doubled an octave up: the mode is audible
        _add_dissonances(notes, root_midi, adds[s], add_choice[s])
        t0, t1 = grid.time_at(SLOT_SIXTEENTHS * s), grid.time_at(SLOT_SIXTEENTHS * s + SLOT_SIXTEENTHS)
        out.chords.append((float(t0), float(t1), int(root), is_minor, int(key), bool(modulates[s])))
        out.triads.append(voicing)
        out.notes.append(sorted(notes))
        out.pedals.append(PEDAL_LOW_MIDI + (key - PEDAL_LOW_MIDI) % 12)  # constant while the key is
    return out
