"""The score of one clip: a symbolic plan composed from its seven latents and a seed.

:func:`plan_clip` lays a time grid (:func:`tempo`), writes a chord progression
(:func:`harmony`) and the chord, bass and lead parts over it (:func:`chords`, :func:`bass`,
:func:`melody`), adds percussion (:func:`drums`) and picks the instruments (:func:`timbre`).
Each latent drives one musical quality (``labels.SOUND_DESIGN``). Each concern draws from its
own random stream of the clip's seed (chords, bass and drums share the rhythm stream), so
the score depends on nothing but the latents, the seed and the duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .labels import _rng

# --- time -------------------------------------------------------------------------------
TEMPO_RANGE_BPM = (84.0, 132.0)  # less than an octave of tempo: no clip sounds like another at double speed
BEATS_PER_BAR = 4                # 4/4: the excerpt starts anywhere in a bar; the kick accents its first beat
SIXTEENTHS_PER_BEAT = 4          # the grid's finest position (onsets, jitter, hi-hat sixteenths)
SLOT_SIXTEENTHS = 8              # one chord per two beats: 10-16 chords in 15 s, enough to hear shares
DRIFT_SD = 0.22                  # slow tempo drift (log beat length) at rhythm_stability 0
BEAT_SD = 0.16                   # beat-to-beat tempo changes at rhythm_stability 0
MAX_LOG_BEAT_CHANGE = 0.5        # no beat shorter than exp(-0.5) = 0.61 or longer than 1.65 periods
MIN_BEAT_SHARE = 0.6             # so 0.6 periods per beat is a safe lower bound when sizing the grid
SPARE_BEATS = 4                  # margin past the excerpt's end: time_at would clamp beyond the grid
JITTER_SD_SECONDS = 0.028        # per-note onset jitter at rhythm_stability 0: clearly audible, not chaotic
MIN_NOTE_SECONDS = 0.03          # the shortest gate: staccato sixteenths still have a pitch
LEAD_IN_SECONDS = 0.5            # notes ending earlier than this before the excerpt cannot sound in it
#: Rows of :attr:`Grid.jitter`. Each player's timing errors are shared by what it plays (the
#: tonic pedal moves with the chords, the clap with the hi-hat), as with human players.
JITTER_ROW = {"chords": 0, "pedal": 0, "bass": 1, "lead": 2, "kick": 3, "conga_hi": 3, "conga_lo": 3,
              "hat": 4, "clap": 4, "snare": 5, "wood": 5}
N_PLAYERS = 6

# --- harmony ----------------------------------------------------------------------------
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
BASS_LOW_MIDI = 36               # bass roots in C2..B2

# --- chord, bass and lead parts ----------------------------------------------------------
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

# --- percussion ---------------------------------------------------------------------------
VELOCITY_FLOOR, VELOCITY_SPREAD = 0.85, 0.15  # hit gains vary in [0.85, 1]: no machine-gun repetition
BAR_ACCENT = (1.0, 0.85)         # the kick on the first beat of a bar vs. the other beats
EXTRA_KICK = (0.35, 0.75)        # (share of syncopated positions at complexity 1, gain)
LAYER_FADE = 0.3                 # each layer fades in over this much rhythm_complexity
#: Layers added with rhythm_complexity: (gain, complexity at which the layer starts to fade in,
#: share of candidate positions played at complexity 1 or None for all). The starts order
#: them hats, backbeat, claps, woodblock, ghost notes, sixteenth hats, congas.
_LAYERS = {
    "hat_eighths": (0.35, 0.0, None),
    "snare_backbeat": (0.7, 0.15, None),
    "clap": (0.5, 0.3, 0.5),
    "wood": (0.45, 0.45, None),
    "snare_ghosts": (0.3, 0.5, 0.3),
    "hat_sixteenths": (0.25, 0.6, None),
    "congas": (0.45, 0.7, 0.35),
}
WOOD_PERIOD = 3                  # a woodblock every 3 sixteenths: 3 against 4
HIT_LEAD_IN_SECONDS = 0.3        # hits up to this much before the excerpt still ring into it
_VELOCITY_ROW = {"kick": 0, "hat": 1, "snare": 2, "clap": 3, "wood": 4, "conga_hi": 5, "conga_lo": 6}

# --- timbre -------------------------------------------------------------------------------
#: Mean stereo position per bus and drum, -1 left .. 1 right (each clip moves them by +-0.1).
_PAN = {"chords": -0.3, "lead": 0.2, "bass": 0.0, "kick": 0.0, "snare": -0.15, "hat": 0.45,
        "clap": -0.4, "wood": 0.5, "conga_hi": -0.25, "conga_lo": 0.25}


class Latent(NamedTuple):
    """The seven latents of a clip, in the canonical order of ``constants.MIDLEVEL_FEATURES``."""

    melodiousness: float
    articulation: float
    rhythm_stability: float
    rhythm_complexity: float
    dissonance: float
    tonal_stability: float
    minorness: float


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


@dataclass
class Grid:
    """Where each sixteenth of the clip falls in time: what every part is written against."""

    duration: float         # seconds of the excerpt
    bpm: float              # nominal tempo
    beat_times: np.ndarray  # (n_beats + 1,) seconds; the excerpt starts at 0 (earlier beats are negative)
    jitter: np.ndarray      # (N_PLAYERS, n16 + 1) onset offsets in seconds, per player and sixteenth
    gate: float             # sounding share of each inter-onset interval (articulation)
    beat_index: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.beat_index = np.arange(len(self.beat_times), dtype=np.float64)

    @property
    def n_beats(self) -> int:
        return len(self.beat_times) - 1

    @property
    def n16(self) -> int:
        return SIXTEENTHS_PER_BEAT * self.n_beats

    @property
    def n_slots(self) -> int:
        return self.n16 // SLOT_SIXTEENTHS

    def time_at(self, pos16, player: int | None = None):
        """Seconds at sixteenth position(s) ``pos16``, with ``player``'s jitter if given."""
        if np.isscalar(pos16):  # fast path
            beat = min(max(pos16 / SIXTEENTHS_PER_BEAT, 0.0), len(self.beat_times) - 1.0)
            i = min(int(beat), len(self.beat_times) - 2)
            t = self.beat_times[i] + (beat - i) * (self.beat_times[i + 1] - self.beat_times[i])
            return t + self.jitter[player, min(max(int(pos16), 0), self.n16)] if player is not None else t
        pos16 = np.asarray(pos16, dtype=np.float64)
        t = np.interp(pos16 / SIXTEENTHS_PER_BEAT, self.beat_index, self.beat_times)
        if player is not None:
            t = t + self.jitter[player, np.clip(pos16.astype(int), 0, self.n16)]
        return t

    def visible_slots(self) -> tuple[int, int]:
        """First and one-past-last chord slot that overlaps the excerpt."""
        starts = self.time_at(float(SLOT_SIXTEENTHS) * np.arange(self.n_slots + 1))
        visible = np.flatnonzero((starts[1:] > 0.0) & (starts[:-1] < self.duration))
        return (int(visible[0]), int(visible[-1]) + 1) if len(visible) else (0, self.n_slots)

    def note(self, part: str, pos16: int, length16: float, midi: float, amp: float) -> list[Note]:
        """``[note]`` at ``pos16`` lasting ``length16`` sixteenths (gated), or ``[]`` if inaudible."""
        t0 = float(self.time_at(pos16, JITTER_ROW[part]))
        t_next = float(self.time_at(pos16 + length16))
        dur = max(MIN_NOTE_SECONDS, self.gate * (t_next - float(self.time_at(pos16))))
        if t0 < self.duration and t0 + dur > -LEAD_IN_SECONDS:
            return [Note(part, t0, dur, float(midi), float(amp))]
        return []


@dataclass
class Harmony:
    """The chord progression, one chord per two-beat slot of the grid."""

    chords: list[tuple[float, float, int, bool, int, bool]]  # as ClipPlan.chords
    notes: list[list[int]]   # sounding MIDI notes per slot (triad, doubled third, dissonant adds)
    triads: list[list[int]]  # the voiced triad per slot (the melody's chord tones)
    pedals: list[int]        # tonic pedal per slot
    minor_key: bool          # the keys' mode (every modulation keeps it)
    sounding: range          # slots that reach into the excerpt


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


def _instability(tonal_stability: float) -> float:
    return (1.0 - tonal_stability) ** INSTABILITY_POWER


def tempo(rng: np.random.Generator, jitter_rng: np.random.Generator, latent: Latent,
          duration_seconds: float) -> Grid:
    """The beat grid: a random tempo, drift and irregular beats unless the rhythm is stable."""
    bpm = float(rng.uniform(*TEMPO_RANGE_BPM))
    period = 60.0 / bpm
    n_beats = int(np.ceil((duration_seconds + BEATS_PER_BAR * period) / (MIN_BEAT_SHARE * period))) + SPARE_BEATS
    walk = np.cumsum(rng.standard_normal(n_beats))
    walk = np.convolve(walk - walk.mean(), np.ones(BEATS_PER_BAR) / BEATS_PER_BAR, mode="same")  # bar by bar
    walk /= walk.std() + 1e-9
    unsteady = 1.0 - latent.rhythm_stability
    log_dur = unsteady * (DRIFT_SD * walk + BEAT_SD * rng.standard_normal(n_beats))
    beat_dur = period * np.exp(np.clip(log_dur, -MAX_LOG_BEAT_CHANGE, MAX_LOG_BEAT_CHANGE))
    offset = float(rng.uniform(0.0, BEATS_PER_BAR)) * period  # the excerpt starts anywhere in a bar
    beat_times = np.concatenate([[0.0], np.cumsum(beat_dur)]) - offset
    jitter_sd = JITTER_SD_SECONDS * unsteady
    jitter = jitter_sd * jitter_rng.standard_normal((N_PLAYERS, SIXTEENTHS_PER_BEAT * n_beats + 1))
    gate = 1.0 - 0.85 * latent.articulation  # legato 1.0 .. staccato 0.15
    return Grid(float(duration_seconds), bpm, beat_times, jitter, gate)


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


def drums(grid: Grid, rng: np.random.Generator, rhythm_complexity: float) -> list[tuple[str, float, float]]:
    """Percussion hits (instrument, seconds, gain): a kick on every beat, layers with complexity."""
    rc, n16 = rhythm_complexity, grid.n16
    beats = np.arange(grid.n_beats)
    on_beat = SIXTEENTHS_PER_BEAT * beats
    vel = VELOCITY_FLOOR + VELOCITY_SPREAD * rng.random((len(_VELOCITY_ROW), n16 + 1))
    offbeats = np.concatenate([on_beat + 3, on_beat + 1])
    kicks = offbeats[_spread(rng.random(len(offbeats)), EXTRA_KICK[0] * rc, rng.random())]
    sixteenths = np.concatenate([on_beat + 1, on_beat + 3])  # the off-eighth sixteenths
    picked = {}
    for name in ("snare_ghosts", "clap"):
        picked[name] = sixteenths[_spread(rng.random(len(sixteenths)), _LAYERS[name][2] * rc, rng.random())]
    wood = np.arange(int(rng.integers(0, WOOD_PERIOD)), n16, WOOD_PERIOD)
    congas = np.arange(n16)[_spread(rng.random(n16), _LAYERS["congas"][2] * rc, rng.random())]
    high = rng.random(n16)[congas] < 0.5  # high or low conga

    def layer(name: str) -> float:
        gain, start, _ = _LAYERS[name]
        return gain * _layer(rc, start, LAYER_FADE)

    parts = [  # (instrument, sixteenth positions, gain before velocity)
        ("kick", on_beat, 1.0 * np.where(beats % BEATS_PER_BAR == 0, *BAR_ACCENT)),
        ("kick", kicks, EXTRA_KICK[1]),
        ("hat", np.concatenate([on_beat, on_beat + 2]), layer("hat_eighths")),
        ("hat", sixteenths, layer("hat_sixteenths")),
        ("snare", on_beat[beats % 2 == 1], layer("snare_backbeat")),
        ("snare", picked["snare_ghosts"], layer("snare_ghosts")),
        ("clap", picked["clap"], layer("clap")),
        ("wood", wood, layer("wood")),
        ("conga_hi", congas[high], layer("congas")),
        ("conga_lo", congas[~high], layer("congas")),
    ]
    hits: list[tuple[str, float, float]] = []
    for name, pos16, gain in parts:
        gains = gain * vel[_VELOCITY_ROW[name], pos16]
        if np.all(gains <= 0) or len(pos16) == 0:
            continue
        times = grid.time_at(pos16, JITTER_ROW[name])
        gains = np.broadcast_to(gains, times.shape)
        hits += [(name, float(t), float(g)) for t, g in zip(times, gains)
                 if -HIT_LEAD_IN_SECONDS < t < grid.duration and g > 0]
    return hits


def timbre(rng: np.random.Generator) -> dict:
    """Instruments, drum tunings, stereo positions and levels: nuisances, drawn per clip."""
    return {
        "chords": str(rng.choice(["organ", "piano", "strings"])),
        "lead": str(rng.choice(["flute", "clarinet", "saw", "voice"])),
        "bass": str(rng.choice(["round", "saw"])),
        "kick_hz": float(rng.uniform(45.0, 60.0)),
        "hat_hz": float(rng.uniform(6000.0, 8500.0)),
        "wood_hz": float(rng.uniform(800.0, 1300.0)),
        "conga_hz": float(rng.uniform(180.0, 260.0)),
        "ring_hz": float(137.0 * 2.0 ** rng.uniform(0.0, 1.0)),  # unrelated to the key: inharmonic
        "pan": {k: float(v) for k, v in zip(_PAN, np.array(list(_PAN.values())) + rng.uniform(-0.1, 0.1, len(_PAN)))},
        "level": {k: float(v) for k, v in zip(("chords", "lead", "bass", "drums"),
                                               10 ** (rng.uniform(-2.0, 2.0, 4) / 20.0))},  # +-2 dB
        "vibrato_hz": float(rng.uniform(4.8, 6.2)),
    }


def plan_clip(latent: np.ndarray, *, seed: int, duration_seconds: float) -> ClipPlan:
    """Compose the symbolic score of a clip from its 7 latents (canonical order) and a seed."""
    latent = np.clip(np.asarray(latent, dtype=np.float64).reshape(7), 0.0, 1.0)
    q = Latent(*latent)
    streams = [_rng(int(seed) % 2 ** 64, k) for k in range(8)]
    r_time, r_harm, r_mel, r_rhy, r_timb, r_jit, _reserved, r_noise = streams
    grid = tempo(r_time, r_jit, q, duration_seconds)
    harm = harmony(grid, r_harm, q)
    notes = chords(grid, harm, r_rhy, q.rhythm_complexity)
    notes += bass(grid, harm, r_rhy, q.rhythm_complexity)
    notes += melody(grid, harm, r_mel, q)
    hits = drums(grid, r_rhy, q.rhythm_complexity)
    return ClipPlan(latent=latent, duration=grid.duration, bpm=grid.bpm, beat_times=grid.beat_times,
                    chords=harm.chords, chord_notes=harm.notes, notes=notes, hits=hits,
                    timbre=timbre(r_timb), noise_seed=int(r_noise.integers(0, 2 ** 63)))
