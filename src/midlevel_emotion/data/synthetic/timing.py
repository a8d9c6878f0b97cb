"""The time grid of a clip: tempo, drift, irregular beats, onset jitter and note gates.

:func:`tempo` lays the :class:`Grid` every part is written against (sixteenth positions to
seconds). Also the two types the parts are written with: the clip's seven latents
(:class:`Latent`) and a pitched note (:class:`Note`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

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
    """One pitched note of a part, placed in time."""

    part: str        # "lead", "chords", "pedal" (rendered with the chords), "bass"
    start: float     # seconds
    duration: float  # seconds, gate (before release)
    midi: float
    amp: float


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


def _spread(u: np.ndarray, p: float, v: float) -> np.ndarray:
    """Boolean mask with exactly floor(p * n + v) True at the positions of the smallest u.

    ``u`` (n,) and ``v`` are uniform draws made independently of ``p``, so the mask is a
    low-variance, latent-monotone stand-in for Bernoulli(p) draws.
    """
    count = int(np.floor(np.clip(p, 0.0, 1.0) * len(u) + v))
    mask = np.zeros(len(u), bool)
    mask[np.argsort(u, kind="stable")[:count]] = True
    return mask


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
