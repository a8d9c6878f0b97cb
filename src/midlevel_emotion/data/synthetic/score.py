"""The score of one clip: a symbolic plan composed from its seven latents and a seed.

:func:`plan_clip` lays a time grid (:func:`~.timing.tempo`), writes a chord progression
(:func:`~.harmony.harmony`) and the chord, bass and lead parts over it (:func:`~.parts.chords`,
:func:`~.parts.bass`, :func:`~.parts.melody`), adds percussion (:func:`~.percussion.drums`)
and picks the instruments (:func:`timbre`).
Each latent drives one musical quality (``truth.SOUND_DESIGN``). Each concern draws from its
own random stream of the clip's seed (chords, bass and drums share the rhythm stream), so
the score depends on nothing but the latents, the seed and the duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .timing import Latent, Note, tempo
from .harmony import harmony
from .labels import _rng
from .parts import bass, chords, melody
from .percussion import drums

#: Mean stereo position per bus and drum, -1 left .. 1 right (each clip moves them by +-0.1).
_PAN = {"chords": -0.3, "lead": 0.2, "bass": 0.0, "kick": 0.0, "snare": -0.15, "hat": 0.45,
        "clap": -0.4, "wood": 0.5, "conga_hi": -0.25, "conga_lo": 0.25}


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
