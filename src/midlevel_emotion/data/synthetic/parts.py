"""The pitched parts of a clip: chords with the tonic pedal, bass and lead.

Each is written over the :class:`~.timing.Grid` and the :class:`~.harmony.Harmony`:
:func:`chords` and :func:`bass` add syncopations with ``rhythm_complexity``, :func:`melody`
is stepwise, on chord tones and sustained with ``melodiousness``, else leaping and sparse.
"""

from __future__ import annotations

import numpy as np

from .timing import SIXTEENTHS_PER_BEAT, SLOT_SIXTEENTHS, Grid, Latent, Note, _spread
from .harmony import _MAJOR, _MINOR, Harmony, _instability

BASS_LOW_MIDI = 36               # bass roots in C2..B2
PUSH_SHARE = 0.45                # share of the (3, 6) sixteenth pushes played at rhythm_complexity 1
_PUSH_POSITIONS = (3, 6)         # sixteenths into the slot: anticipating its 2nd beat, its last off-beat
CHORD_GAIN = 0.30                # divided by sqrt(voices): about the same power with four to six voices
OFFBEAT_ACCENT = 0.8             # pushes softer than the beats
PEDAL_GAIN = 0.4
BASS_EXTRA_SHARE = 0.6           # share of the syncopated bass notes played at rhythm_complexity 1
_BASS_EXTRA_POSITIONS = (3, 6, 7, 2)
BASS_GAIN = 0.42
LEAD_GAIN = 0.36
_MEL_DURS = np.array([1, 2, 3, 4, 6, 8])  # note lengths, sixteenths
_MEL_P_SMOOTH = np.array([0.0, 0.25, 0.05, 0.40, 0.10, 0.20])  # melodious: long notes
_MEL_P_POINT = np.array([0.45, 0.30, 0.15, 0.10, 0.0, 0.0])   # pointillistic: short notes
LEAD_CENTRE_MIDI = (74, 81)      # D5..G#5 (upper bound exclusive): above the chords, below the pedal
LEAD_RANGE_MIDI = (40, 104)      # the scale the lead moves in (upper bound exclusive)
REST_SHARE = 0.6                 # share of rests at melodiousness 0 (none at 1)
TURN_SHARE = 0.25                # a stepwise line turns around on a quarter of its notes
SMALL_STEP_SHARE = 0.75          # otherwise it skips a scale degree
SPAN_SEMITONES = 7.0             # a stepwise line turns back this far from its centre
CHORD_TONE_REACH = 2             # on the beat, a chord tone within a whole tone replaces the step
CHROMATIC_SHARE = 0.35           # chromatic passing notes off the beat at tonal_stability 0
LEAP_REACH = (8.0, 12.0)         # leaps land within 8 (+ 12 at melodiousness 0) semitones of the centre
MIN_LEAP = 5                     # a leap is at least a fourth


def _nearest(values: np.ndarray, x: float) -> int:
    return int(np.argmin(np.abs(values - x)))


def chords(grid: Grid, harm: Harmony, rng: np.random.Generator, rhythm_complexity: float) -> list[Note]:
    """Chords and tonic pedal on every beat, plus syncopated pushes with complexity."""
    n_slots = grid.n_slots
    push_u = rng.random(2 * n_slots)
    pushes = _spread(push_u, PUSH_SHARE * rhythm_complexity, rng.random()).reshape(n_slots, 2)
    notes: list[Note] = []
    for s in harm.sounding:
        positions = [0, 4] + [p for p, on in zip(_PUSH_POSITIONS, pushes[s]) if on]
        positions.sort()
        gain = CHORD_GAIN / np.sqrt(len(harm.notes[s]))
        for i, p in enumerate(positions):
            nxt = positions[i + 1] if i + 1 < len(positions) else SLOT_SIXTEENTHS
            accent = 1.0 if p in (0, 4) else OFFBEAT_ACCENT
            pos = SLOT_SIXTEENTHS * s + p
            for m in harm.notes[s]:
                notes += grid.note("chords", pos, nxt - p, m, gain * accent)
            notes += grid.note("pedal", pos, nxt - p, harm.pedals[s], PEDAL_GAIN * accent)
    return notes


def bass(grid: Grid, harm: Harmony, rng: np.random.Generator, rhythm_complexity: float) -> list[Note]:
    """The root on every beat, syncopated fifths and octaves with complexity."""
    n_slots, n_extra = grid.n_slots, len(_BASS_EXTRA_POSITIONS)
    bass_u = rng.random(n_extra * n_slots)
    extra = _spread(bass_u, BASS_EXTRA_SHARE * rhythm_complexity, rng.random()).reshape(n_slots, n_extra)
    fifth = rng.random(n_extra * n_slots).reshape(n_slots, n_extra) < 0.5  # else the octave
    notes: list[Note] = []
    for s in harm.sounding:
        root = harm.chords[s][2]
        root_midi = BASS_LOW_MIDI + (root - BASS_LOW_MIDI) % 12
        positions = [(0, root_midi), (4, root_midi)]
        for k, p in enumerate(_BASS_EXTRA_POSITIONS):
            if extra[s, k]:
                positions.append((p, root_midi + (7 if fifth[s, k] else 12)))
        positions.sort()
        for i, (p, m) in enumerate(positions):
            nxt = positions[i + 1][0] if i + 1 < len(positions) else SLOT_SIXTEENTHS
            notes += grid.note("bass", SLOT_SIXTEENTHS * s + p, nxt - p, m, BASS_GAIN)
    return notes


def _step(scale: np.ndarray, pitch: float, direction: int, centre: float, u: np.ndarray, on_beat: bool,
          triad: list[int]) -> tuple[float, int]:
    """A stepwise move in ``scale`` (a chord tone on the beat); returns (pitch, direction)."""
    if u[3] < TURN_SHARE:
        direction = -direction
    step = direction * (1 if u[4] < SMALL_STEP_SHARE else 2)
    if abs(pitch - centre) > SPAN_SEMITONES - 1:  # turn back towards the middle of the range
        direction = 1 if centre > pitch else -1
    step = direction * abs(step)
    k = int(np.clip(_nearest(scale, pitch) + step, 0, len(scale) - 1))
    if on_beat:
        chord_pcs = {n % 12 for n in triad}
        tones = np.array([m for m in scale if m % 12 in chord_pcs])
        if len(tones):
            cand = tones[np.abs(tones - scale[k]) <= CHORD_TONE_REACH]
            if len(cand):
                k = _nearest(scale, float(cand[_nearest(cand, scale[k])]))
    return float(scale[k]), direction


def melody(grid: Grid, harm: Harmony, rng: np.random.Generator, latent: Latent) -> list[Note]:
    """The lead: stepwise, on chord tones and sustained, or leaping, short and sparse."""
    mel = latent.melodiousness
    probs = mel * _MEL_P_SMOOTH + (1.0 - mel) * _MEL_P_POINT
    cum = np.cumsum(probs / probs.sum())
    centre = float(rng.integers(*LEAD_CENTRE_MIDI))
    draws = rng.random((grid.n16 + 1, 6))
    pitch = centre
    scales: dict[int, np.ndarray] = {}
    mode = _MINOR if harm.minor_key else _MAJOR
    direction = 1 if rng.random() < 0.5 else -1
    pos = int(rng.integers(0, SIXTEENTHS_PER_BEAT))
    notes: list[Note] = []
    for u in draws:
        if pos >= grid.n16 or grid.time_at(pos) >= grid.duration:
            break
        length = int(_MEL_DURS[min(int(np.searchsorted(cum, u[0])), len(_MEL_DURS) - 1)])
        slot = min(pos // SLOT_SIXTEENTHS, grid.n_slots - 1)
        key = harm.chords[slot][4]
        if key not in scales:  # the key's diatonic notes over the lead's range
            scale_pcs = (key + mode) % 12
            scales[key] = np.array([m for m in range(*LEAD_RANGE_MIDI) if m % 12 in scale_pcs], dtype=float)
        scale = scales[key]
        if u[1] < REST_SHARE * (1.0 - mel):
            pos += length
            continue
        if u[2] < mel:  # step in the scale, smooth contour
            on_beat = pos % SIXTEENTHS_PER_BEAT == 0
            pitch, direction = _step(scale, pitch, direction, centre, u, on_beat, harm.triads[slot])
            if not on_beat and u[5] < CHROMATIC_SHARE * _instability(latent.tonal_stability):
                pitch += 1.0 if direction > 0 else -1.0  # chromatic passing note
        else:  # a large random leap
            reach = LEAP_REACH[0] + LEAP_REACH[1] * (1.0 - mel)
            cand = scale[(np.abs(scale - centre) <= reach) & (np.abs(scale - pitch) >= MIN_LEAP)]
            if len(cand):
                pitch = float(cand[min(int(u[5] * len(cand)), len(cand) - 1)])
        notes += grid.note("lead", pos, length, pitch, LEAD_GAIN)
        pos += length
    return notes
