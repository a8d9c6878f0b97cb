"""Rendering a score to audio: additive (wavetable) synthesis, drum models, dissonance effects.

:func:`render_plan` turns a :class:`~.score.ClipPlan` into stereo float32 audio; everything
random in it (start phases, drum noise, the dissonance noise) comes from the plan's
``noise_seed``, so the same plan always gives the same samples.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from .timing import Latent, Note
from .labels import _check_float, _check_int
from .score import ClipPlan, plan_clip

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


# Synthesis at half the output rate when it is high: the content stays below ~10 kHz, which is
# all a 22.05 kHz analysis can see, and upsampling costs far less than the other half.
HALF_RATE_FROM_HZ = 32000
PEAK_DBFS = -1.0                 # headroom for the mp3 encoder's overshoot
EDGE_FADE_SECONDS = 0.015        # no click where the excerpt cuts a note
DRUM_VARIANTS = 3                # samples per drum, picked by hit time: no identical repeats
PARTS = ("lead", "chords", "bass", "drums")


def _dissonance_sources(n: int, sr: int, ring_hz: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Band noise (unit sd, clipped at 3 sd) and a ring-modulation sine carrier at ``ring_hz``."""
    noise = signal.sosfilt(_sos("bandpass", (700.0, 9000.0), sr), rng.standard_normal(n)).astype(np.float32)
    noise /= np.float32(noise.std() or 1.0)
    np.clip(noise, -3.0, 3.0, out=noise)  # no isolated spikes
    ring_table = np.sin(2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE).astype(np.float32)
    carrier = ring_table[(np.arange(n) * (ring_hz * _TABLE_SIZE / sr)).astype(np.int64) & (_TABLE_SIZE - 1)]
    return carrier, noise


def _pitched_buses(plan: ClipPlan, parts: tuple[str, ...], n: int, sr: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Mono chord (with the tonic pedal), lead and bass buses, at their levels."""
    q = Latent(*plan.latent)
    dis, tb = q.dissonance, plan.timbre
    attack = 0.004 + 0.012 * (1.0 - q.articulation)   # 4 ms staccato .. 16 ms legato
    release = 0.02 + 0.08 * (1.0 - q.articulation)    # 20 ms staccato .. 100 ms legato
    by_part = {p: [note for note in plan.notes if note.part == p] for p in ("lead", "chords", "pedal", "bass")}
    if any(p in parts for p in ("chords", "lead")) and dis > 0.0:
        carrier, noise = _dissonance_sources(n, sr, tb["ring_hz"], rng)
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
                          vibrato=0.35 * q.melodiousness, vibrato_hz=tb["vibrato_hz"],
                          detune_cents=25.0 * dis, max_harmonics=20, rng=rng)
        if dis > 0.0:  # the same noise, shifted: not correlated with the chords' noise
            x = _dissonance_fx(x, dis, carrier, np.roll(noise, n // 3), sr)
        buses["lead"] = x * np.float32(tb["level"]["lead"])
    if "bass" in parts:
        x = _render_notes(by_part["bass"], n, sr, "round" if tb["bass"] == "round" else "bass_saw",
                          attack=attack, release=release, max_harmonics=12, rng=rng)
        buses["bass"] = x * np.float32(tb["level"]["bass"])
    return buses


def _add_drums(left_ch: np.ndarray, right_ch: np.ndarray, hits: list[tuple[str, float, float]], sr: int,
               timbre: dict, rng: np.random.Generator) -> None:
    """Mix the percussion hits into the two channels in place."""
    n = len(left_ch)
    samples: dict[str, list[np.ndarray]] = {}
    for name, t, gain in hits:
        if name not in samples:
            samples[name] = [_drum(name, sr, timbre, rng) for _ in range(DRUM_VARIANTS)]
        sample = samples[name][int(t * 1000) % DRUM_VARIANTS]
        i0 = int(round(t * sr))
        skip = max(0, -i0)
        stop = min(len(sample), n - i0)
        if stop <= skip:
            continue
        left, right = _pan(timbre["pan"][name])
        chunk = sample[skip:stop] * np.float32(gain * timbre["level"]["drums"])
        left_ch[i0 + skip:i0 + stop] += np.float32(left) * chunk
        right_ch[i0 + skip:i0 + stop] += np.float32(right) * chunk


def _finish(stereo: np.ndarray, upsample: bool, n_out: int, sr: int) -> np.ndarray:
    """Upsample if synthesised at half rate, trim to ``n_out``, fade the edges, peak at PEAK_DBFS."""
    if upsample:
        stereo = signal.resample_poly(stereo, 2, 1, axis=0).astype(np.float32)
    if len(stereo) != n_out:
        stereo = np.pad(stereo, ((0, max(0, n_out - len(stereo))), (0, 0)))[:n_out]
    fade = min(int(EDGE_FADE_SECONDS * sr), n_out // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        stereo[:fade] *= ramp
        stereo[n_out - fade:] *= ramp[::-1]
    peak = float(np.abs(stereo).max())
    if peak > 0:
        stereo *= np.float32(10 ** (PEAK_DBFS / 20.0) / peak)
    return stereo.astype(np.float32)


def render_plan(plan: ClipPlan, sample_rate: int = 44100, *, parts: tuple[str, ...] | None = None) -> np.ndarray:
    """Synthesise a :class:`ClipPlan` to stereo float32 audio (samples, 2), peak -1 dBFS.

    ``parts`` restricts the mix to some of ``lead``, ``chords``, ``bass``, ``drums`` (for
    tests and demonstrations); the default renders everything.
    """
    out_sr = int(sample_rate)
    half = out_sr >= HALF_RATE_FROM_HZ and out_sr % 2 == 0
    sr = out_sr // 2 if half else out_sr
    n = int(round(plan.duration * sr))
    parts = tuple(parts) if parts is not None else PARTS
    rng = np.random.default_rng(plan.noise_seed)
    buses = _pitched_buses(plan, parts, n, sr, rng)
    left_ch = np.zeros(n, np.float32)
    right_ch = np.zeros(n, np.float32)
    for name, x in buses.items():
        left, right = _pan(plan.timbre["pan"][name])
        left_ch += np.float32(left) * x
        right_ch += np.float32(right) * x
    if "drums" in parts:
        _add_drums(left_ch, right_ch, plan.hits, sr, plan.timbre, rng)
    return _finish(np.stack([left_ch, right_ch], axis=1), half, int(round(plan.duration * out_sr)), out_sr)


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
