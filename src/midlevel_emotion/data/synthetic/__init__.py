"""The embedded synthetic corpus: a miniature copy of both datasets, generated from a seed.

:func:`generate_corpus` writes, under ``raw_dir``, the published layouts and file dialects of
the Mid-level Perceptual Features dataset and of Soundtracks Stimulus Set 1 (see
``data/layout.py`` and ``data/formats.py``), so that the project's real readers and the whole
pipeline run offline:

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

Modules, in the order the data flows:

- :mod:`.truth`: the planted truth (latent->emotion map, latent correlation, sound design);
- :mod:`.metadata`: made-up sources, artists, titles and albums;
- :mod:`.labels`: latents, annotations, ratings, metadata, durations (no audio);
- :mod:`.timing`: one clip's time grid (tempo, drift, jitter, gates);
- :mod:`.harmony`: its chord progression (keys, minor share, modulations, dissonances);
- :mod:`.parts`: its chord, bass and lead parts;
- :mod:`.percussion`: its drums;
- :mod:`.score`: the clip's whole symbolic score, composed from the four above;
- :mod:`.render`: the score to stereo audio (wavetable synthesis, drum models, effects);
- :mod:`.writer`: the corpus on disk (file dialects, mp3 encoding, worker processes).
"""

from .labels import SyntheticLabels, clip_seed, draw_labels
from .render import render_plan, synthesize_clip
from .score import ClipPlan, plan_clip
from .truth import (LATENT_CORRELATION, PLANTED_BIAS, PLANTED_WEIGHTS, SOUND_DESIGN, TARGET_CATEGORIES,
                    planted_map_paper_scale)
from .writer import generate_corpus

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
