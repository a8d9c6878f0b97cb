"""The percussion of a clip: a kick on every beat, layers added with rhythm complexity.

:func:`drums` returns the hits (instrument, seconds, gain); the layers (:data:`_LAYERS`) fade
in one after another as ``rhythm_complexity`` grows.
"""

from __future__ import annotations

import numpy as np

from .timing import BEATS_PER_BAR, JITTER_ROW, SIXTEENTHS_PER_BEAT, Grid, _spread

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


def _layer(c: float, start: float, width: float) -> float:
    return float(np.clip((c - start) / width, 0.0, 1.0))


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
