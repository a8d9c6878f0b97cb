"""Where the two published datasets live under ``data/raw``, and which of them are complete."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import CorpusError

# Relative paths of the published layouts under data/raw/.
MIDLEVEL_DIR = "midlevel"
SOUNDTRACKS_DIR = "soundtracks"
ANNOTATIONS_CSV = "midlevel/metadata_annotations/annotations.csv"
METADATA_CSV = "midlevel/metadata_annotations/metadata.csv"
RATINGS_CSV = "soundtracks/mean_ratings_set1.csv"
MIDLEVEL_AUDIO_DIR = "midlevel/audio"
SOUNDTRACKS_AUDIO_DIR = "soundtracks/audio"
SYNTHETIC_TRUTH_JSON = "synthetic_truth.json"


def check_layout(raw_dir: Path) -> dict[str, bool]:
    """Check which datasets are complete under ``raw_dir``.

    A dataset is either entirely present (annotations or ratings plus audio directory) or
    entirely absent; a partial one is an error naming the missing paths, because training on
    it would silently lose clips or labels.

    Returns
    -------
    dict
        ``{"midlevel": bool, "soundtracks": bool}``.
    """
    raw_dir = Path(raw_dir)
    required = {
        "midlevel": [ANNOTATIONS_CSV, METADATA_CSV, MIDLEVEL_AUDIO_DIR],
        "soundtracks": [RATINGS_CSV, SOUNDTRACKS_AUDIO_DIR],
    }
    present: dict[str, bool] = {}
    for dataset, paths in required.items():
        exists = [(raw_dir / p).exists() for p in paths]
        if any(exists) and not all(exists):
            missing = [str(raw_dir / p) for p, e in zip(paths, exists) if not e]
            raise CorpusError(f"{raw_dir / dataset}: incomplete {dataset} dataset, missing {', '.join(missing)}")
        present[dataset] = all(exists)
    if not any(present.values()):
        raise CorpusError(f"{raw_dir}: neither dataset found; expected {raw_dir / RATINGS_CSV} "
                          f"(Soundtracks) and/or {raw_dir / ANNOTATIONS_CSV} (mid-level)")
    return present
