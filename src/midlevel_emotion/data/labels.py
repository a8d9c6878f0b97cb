"""The labels of both datasets on the paper's scale, linked clip by clip (Sections 4 and 6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.constants import EMOTIONS
from ..core.errors import CorpusError
from .formats import read_annotations, read_metadata, read_ratings
from .layout import ANNOTATIONS_CSV, METADATA_CSV, RATINGS_CSV, check_layout

LABEL_SCALE = 10.0  # the paper divides both the 1-10 annotations and the 1-9 ratings by 10


@dataclass
class Labels:
    """Everything the training stages need to know about the clips, on the paper's scale.

    Attributes
    ----------
    midlevel : pandas.DataFrame or None
        Mid-level annotations / 10, index ``song_id``; None when the mid-level set is absent.
    metadata : pandas.DataFrame or None
        Mid-level metadata (source, soundtracks_number, artist, ...), index ``song_id``.
    emotions : pandas.DataFrame or None
        Soundtracks ratings / 10, index ``number`` (``"001"``); None when absent.
    soundtracks_midlevel : pandas.DataFrame or None
        Mid-level annotations / 10 of the Soundtracks clips, index ``number``.
    decisions : list of str
        Every clip left out, with its reason (never dropped silently).
    """

    midlevel: pd.DataFrame | None
    metadata: pd.DataFrame | None
    emotions: pd.DataFrame | None
    soundtracks_midlevel: pd.DataFrame | None
    decisions: list[str] = field(default_factory=list)

    @property
    def soundtracks_song_ids(self) -> dict[str, str]:
        """Soundtracks number -> mid-level song_id."""
        if self.metadata is None:
            return {}
        rows = self.metadata[self.metadata["soundtracks_number"].notna()]
        return dict(zip(rows["soundtracks_number"], rows.index))


def load_labels(raw_dir: Path) -> Labels:
    """Read whichever datasets are present under ``raw_dir`` and link them.

    A Soundtracks clip whose metadata row or annotation is missing keeps its emotion
    ratings but gets no mid-level label; this is recorded in ``decisions``.
    """
    raw_dir = Path(raw_dir)
    present = check_layout(raw_dir)
    labels = Labels(None, None, None, None)
    if present["midlevel"]:
        annotations = read_annotations(raw_dir / ANNOTATIONS_CSV)
        metadata = read_metadata(raw_dir / METADATA_CSV)
        no_meta = sorted(set(annotations.index) - set(metadata.index), key=_natural)
        for song_id in no_meta:
            labels.decisions.append(f"mid-level song {song_id}: annotated but has no metadata row; "
                                    "kept for training, excluded from the artist-disjoint test split")
        labels.midlevel = annotations / LABEL_SCALE
        labels.metadata = metadata
    if present["soundtracks"]:
        labels.emotions = read_ratings(raw_dir / RATINGS_CSV)[list(EMOTIONS)] / LABEL_SCALE
    if labels.midlevel is not None and labels.emotions is not None:
        song_ids = labels.soundtracks_song_ids
        numbers = [n for n in labels.emotions.index if song_ids.get(n) in labels.midlevel.index]
        for number in sorted(set(labels.emotions.index) - set(numbers)):
            labels.decisions.append(f"soundtracks clip {number}: no mid-level annotation found "
                                    "(metadata 'ID at file source'); used for A2E only")
        frame = labels.midlevel.loc[[song_ids[n] for n in numbers]]
        frame.index = pd.Index(numbers, name="number")
        labels.soundtracks_midlevel = frame
    return labels


def _natural(value: str) -> tuple:
    """Sort key of clip ids: numeric ids in numeric order, then the others by name."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def validate_raw(raw_dir: Path, *, shown_as: Path | None = None) -> dict[str, bool]:
    """Read every label file under ``raw_dir`` as the training stages will.

    The ``download`` stage calls this before it puts ``data/raw`` in place, so a bad label file
    stops the first stage that holds it, not the training stages after resampling.

    Parameters
    ----------
    raw_dir : Path
        A directory in the layout of :func:`~.layout.check_layout`.
    shown_as : Path, optional
        Messages name the files under this directory instead of ``raw_dir`` (the stage builds
        ``data/raw`` in a temporary sibling that is gone when the message is read).

    Returns
    -------
    dict
        :func:`~.layout.check_layout`'s ``{"midlevel": bool, "soundtracks": bool}``.
    """
    try:
        present = check_layout(raw_dir)
        load_labels(raw_dir)
    except CorpusError as err:
        if shown_as is None:
            raise
        raise CorpusError(str(err).replace(str(Path(raw_dir)), str(Path(shown_as)))) from None
    return present
