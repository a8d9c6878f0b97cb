"""The real-format readers, written against hand-made files in the published dialects."""

import pytest

from midlevel_emotion.corpus import (EMOTIONS, MIDLEVEL_FEATURES, CorpusError, check_layout,
                                     read_annotations, read_metadata, read_ratings)

ANNOTATIONS = (
    "song_id, melody, articulation, rhythm_complexity, rhythm_stability, dissonance, tonal_stability, minorness\n"
    "1, 7.5, 2.0, 3.0, 8.0, 1.5, 9.0, 2.5\n"
    "17,3.25,6.0,7.0,4.0,5.5,3.0,8.0\n"
)
METADATA = (
    "song id;Source;ID at file source;Artist;Title;Album name\n"
    "1;jamendo;4411;Alpha Band;Song, with comma;First\n"
    "17;soundtracks;7;Ennio;Théme;OST\n"
)
RATINGS = ("\ufeffnumber,valence,energy,tension,anger,fear,happy,sad,tender,TARGET\r\n"
           "001,4.5,3.2,2.1,1.0,1.33,5.67,2,3.5,HAPPY\r\n"
           "007,2.0,6.5,7.83,4.2,5.1,1.1,1.5,1.2,FEAR\r\n")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def test_annotations_strip_header_spaces_and_reorder_to_canonical(tmp_path):
    frame = read_annotations(write(tmp_path / "annotations.csv", ANNOTATIONS))
    assert list(frame.columns) == list(MIDLEVEL_FEATURES)
    assert list(frame.index) == ["1", "17"]
    # the file's column order (complexity before stability) is undone
    assert frame.loc["1", "rhythm_stability"] == 8.0 and frame.loc["1", "rhythm_complexity"] == 3.0
    assert frame.loc["17", "melodiousness"] == 3.25


def test_metadata_semicolons_and_soundtracks_numbers(tmp_path):
    frame = read_metadata(write(tmp_path / "metadata.csv", METADATA))
    assert frame.loc["17", "source"] == "soundtracks" and frame.loc["17", "soundtracks_number"] == "007"
    assert frame.loc["1", "soundtracks_number"] is None
    assert frame.loc["1", "title"] == "Song, with comma" and frame.loc["17", "title"] == "Théme"


def test_ratings_bom_crlf_zero_padding(tmp_path):
    frame = read_ratings(write(tmp_path / "mean_ratings_set1.csv", RATINGS))
    assert list(frame.index) == ["001", "007"]
    assert list(frame.columns) == list(EMOTIONS) + ["target"]
    assert frame.loc["007", "tension"] == 7.83 and frame.loc["001", "target"] == "HAPPY"


@pytest.mark.parametrize("reader,name,text,message", [
    (read_ratings, "r.csv", RATINGS.replace("7.83", ""), r"missing or outside \[1, 9\].*'007'.*'tension'"),
    (read_ratings, "r.csv", RATINGS.replace("7.83", "9.5"), r"outside \[1, 9\]"),
    (read_ratings, "r.csv", RATINGS.replace("7.83", "high"), "non-numeric"),
    (read_ratings, "r.csv", RATINGS.replace("007,", "001,"), "duplicate number"),
    (read_ratings, "r.csv", RATINGS.replace("tender,", ""), r"missing column\(s\) \['tender'\]"),
    (read_annotations, "a.csv", ANNOTATIONS.replace("9.0", "11"), r"outside \[1, 10\].*'1'.*'tonal_stability'"),
    (read_annotations, "a.csv", ANNOTATIONS.replace(" minorness", " modality"), "missing feature column"),
    (read_metadata, "m.csv", METADATA.replace(";", ","), "semicolon-separated"),
    (read_metadata, "m.csv", METADATA.replace("soundtracks;7", "soundtracks;x"), "not a number"),
])
def test_bad_files_name_the_file_and_reason(tmp_path, reader, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(CorpusError, match=message) as err:
        reader(path)
    assert str(path) in str(err.value)


def test_missing_and_spreadsheet_files(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        read_ratings(tmp_path / "nope.csv")
    with pytest.raises(CorpusError, match="save it as CSV"):
        read_ratings(write(tmp_path / "mean_ratings_set1.xls", "binary"))


def test_check_layout_full_partial_and_soundtracks_only(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "soundtracks/mean_ratings_set1.csv", RATINGS)
    (raw / "soundtracks/audio").mkdir()
    assert check_layout(raw) == {"midlevel": False, "soundtracks": True}
    write(raw / "midlevel/metadata_annotations/annotations.csv", ANNOTATIONS)
    with pytest.raises(CorpusError, match=r"incomplete midlevel dataset, missing .*metadata.csv"):
        check_layout(raw)
    write(raw / "midlevel/metadata_annotations/metadata.csv", METADATA)
    (raw / "midlevel/audio").mkdir()
    assert check_layout(raw) == {"midlevel": True, "soundtracks": True}
    with pytest.raises(CorpusError, match="neither dataset found"):
        check_layout(tmp_path / "empty")


def test_load_labels_links_datasets_and_records_every_exclusion(tmp_path):
    from midlevel_emotion.corpus import align, load_labels

    raw = tmp_path / "raw"
    write(raw / "midlevel/metadata_annotations/annotations.csv", ANNOTATIONS)
    write(raw / "midlevel/metadata_annotations/metadata.csv", METADATA)
    write(raw / "soundtracks/mean_ratings_set1.csv", RATINGS)
    (raw / "midlevel/audio").mkdir()
    (raw / "soundtracks/audio").mkdir()
    labels = load_labels(raw)
    # song 17 is Soundtracks clip 007; clip 001 has no mid-level row
    assert list(labels.soundtracks_midlevel.index) == ["007"]
    # what train_a2mid leaves out of the A2Mid behind A2Mid2E: every Soundtracks clip
    assert labels.soundtracks_song_ids == {"007": "17"}
    assert labels.soundtracks_midlevel.loc["007", "melodiousness"] == 0.325  # divided by 10
    assert labels.emotions.loc["007", "tension"] == pytest.approx(0.783)
    assert any("soundtracks clip 001: no mid-level annotation" in d for d in labels.decisions)
    decisions: list[str] = []
    kept = align(["001", "007"], {"007", "009"}, "soundtracks", decisions)
    assert kept == ["007"]
    assert any("clip 001: has labels but no usable audio" in d for d in decisions)
    assert any("clip 009: has audio but no labels" in d for d in decisions)
