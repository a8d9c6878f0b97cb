"""The real-format readers, written against hand-made files in the published dialects."""

import pytest

from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.data.formats import read_annotations, read_metadata, read_ratings
from midlevel_emotion.data.layout import check_layout
from midlevel_emotion.core.errors import CorpusError

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


HEADER_ONLY = {read_ratings: RATINGS.split("\r\n")[0] + "\r\n", read_annotations: ANNOTATIONS.split("\n")[0],
               read_metadata: METADATA.split("\n")[0] + "\n"}
R, A, M = read_ratings, read_annotations, read_metadata


# (reader, text, expected message after "<path>: "); the line is the file's line (header = 1)
BAD_FILES = [
    (R, "", "empty file"),
    (R, "\ufeff\r\n  \r\n", "empty file"),
    (R, HEADER_ONLY[R], "header only, no data rows"),
    (A, HEADER_ONLY[A], "header only, no data rows"),
    (M, HEADER_ONLY[M], "header only, no data rows"),
    # values: empty, non-numeric, non-finite, outside the published scale
    (R, RATINGS.replace("7.83", ""), "line 3, column 'tension': empty value"),
    (R, RATINGS.replace("7.83", "9.5"), "line 3, column 'tension': 9.5 is outside the published scale [1, 9]"),
    (R, RATINGS.replace("7.83", "high"), "line 3, column 'tension': 'high' is not a number"),
    (R, RATINGS.replace("7.83", "inf"), "line 3, column 'tension': 'inf' is not a finite number"),
    (R, RATINGS.replace("7.83", "nan"), "line 3, column 'tension': 'nan' is not a finite number"),
    (R, RATINGS.replace("4.5", "0.5").replace("7.83", "10"),
     "line 2, column 'valence': 0.5 is outside the published scale [1, 9] (2 bad values in all)"),
    (A, ANNOTATIONS.replace("9.0", "11"), "line 2, column 'tonal_stability': 11 is outside the published scale [1, 10]"),
    # ids that are not whole positive numbers
    (R, RATINGS.replace("007,", "001,"), "line 3, column 'number': clip number 1 appears twice (lines 2 and 3)"),
    (R, RATINGS.replace("007,", "7.5,"), "line 3, column 'number': '7.5' is not a whole number"),
    (R, RATINGS.replace("007,", "-7,"), "line 3, column 'number': '-7' is not positive"),
    (R, RATINGS.replace("007,", "000,"), "line 3, column 'number': '000' is not in 1-360"),
    (R, RATINGS.replace("007,", "361,"), "line 3, column 'number': '361' is not in 1-360"),
    (R, RATINGS.replace("007,", ","), "line 3, column 'number': empty id"),
    (R, RATINGS.replace("007,", "inf,"), "line 3, column 'number': 'inf' is not finite"),
    (A, ANNOTATIONS.replace("17,", "1.5,"), "line 3, column 'song_id': '1.5' is not a whole number"),
    (A, ANNOTATIONS.replace("17,", "-17,"), "line 3, column 'song_id': '-17' is not positive"),
    (A, ANNOTATIONS.replace("17,", "17.0,"), "line 3, column 'song_id': '17.0' is not written as digits only"),
    (A, ANNOTATIONS.replace("17,", "1e30,"), "line 3, column 'song_id': '1e30' is not written as digits only"),
    (A, ANNOTATIONS.replace("17,", "99999999999999999999,"),
     "line 3, column 'song_id': '99999999999999999999' is not in 1-999999999"),
    (A, ANNOTATIONS.replace("17,", "-inf,"), "line 3, column 'song_id': '-inf' is not finite"),
    (A, ANNOTATIONS.replace("17,", ","), "line 3, column 'song_id': empty id"),
    (A, ANNOTATIONS.replace("17,", "1,"), "line 3, column 'song_id': song_id 1 appears twice (lines 2 and 3)"),
    (M, METADATA.replace("17;", "1;"), "line 3, column 'song id': song id 1 appears twice (lines 2 and 3)"),
    (M, METADATA.replace("soundtracks;7", "soundtracks;x"), "line 3, column 'ID at file source': 'x' is not a number"),
    (M, METADATA.replace("soundtracks;7", "soundtracks;400"), "line 3, column 'ID at file source': '400' is not in 1-360"),
    (M, METADATA + "18;Soundtracks;7.0;Hans;Other;OST\n",
     "line 4, column 'ID at file source': Soundtracks number 7 appears twice (lines 3 and 4)"),
    # structure: ragged rows, unclosed or stray quotes, header problems
    (R, RATINGS.replace(",FEAR", ""), "line 3: 9 fields where the header has 10 (no value for ['TARGET'])"),
    (R, RATINGS.replace(",FEAR", ",FEAR,extra"), "line 3: 11 fields where the header has 10 (1 value(s) beyond the last column)"),
    (R, RATINGS.replace("007,", '"007,'), "line 3: a quoted value is never closed (unclosed quote)"),
    (R, RATINGS.replace("HAPPY", '"HAPPY') + "009,1,1,1,1,1,1,1,1,SAD\r\n",
     "line 2: a quoted value is never closed (unclosed quote)"),
    (R, RATINGS.replace("HAPPY", '"HAP"PY'), "line 2: text follows a closing quote"),
    (M, METADATA.replace("Théme", '"Théme') + '18;jamendo;9;X;Y";Z\n',
     "line 3, column 'Title': a quoted value runs over several lines; is a closing quote missing?"),
    (R, RATINGS.replace("tender,", "tenderness,"), "missing column(s) ['tender']"),
    (R, RATINGS.replace("tender,", "valence,"), "column(s) ['valence'] appear more than once in the header"),
    (A, ANNOTATIONS.replace(" minorness", " modality"), "missing column(s) ['minorness']"),
    (M, METADATA.replace(";", ","), "missing column(s)"),
]


@pytest.mark.parametrize("reader,text,message", BAD_FILES)
def test_bad_files_are_one_line_naming_file_line_and_column(tmp_path, reader, text, message):
    path = write(tmp_path / "labels.csv", text)
    with pytest.raises(CorpusError) as err:
        reader(path)
    text = str(err.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


def test_missing_and_spreadsheet_files(tmp_path):
    with pytest.raises(CorpusError, match="file not found"):
        read_ratings(tmp_path / "nope.csv")
    with pytest.raises(CorpusError, match="save it as CSV"):
        read_ratings(write(tmp_path / "mean_ratings_set1.xls", "binary"))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(RATINGS[1:].replace("HAPPY", "HAPPÉ").encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.csv: not UTF-8 text"):
        read_ratings(latin1)


def test_readers_accept_the_published_dialect_variants(tmp_path):
    # whole numbers written with a decimal point (a spreadsheet export), blank lines, quoted
    # fields and a header in another case
    ratings = RATINGS.replace("007,", "7.0,").replace("number", "Number") + "\r\n"
    frame = read_ratings(write(tmp_path / "r.csv", ratings))
    assert list(frame.index) == ["001", "007"]
    metadata = METADATA.replace("soundtracks;7;", 'Soundtracks;"7";') + "\n\n"
    assert read_metadata(write(tmp_path / "m.csv", metadata)).loc["17", "soundtracks_number"] == "007"
    no_target = "\n".join(",".join(line.split(",")[:9]) for line in RATINGS.split("\r\n"))
    assert read_ratings(write(tmp_path / "n.csv", no_target))["target"].isna().all()


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
    from midlevel_emotion.data.labels import load_labels
    from midlevel_emotion.data.splits import align

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


def test_validate_raw_reads_every_label_file_and_names_the_final_path(tmp_path):
    from midlevel_emotion.data.labels import validate_raw

    staging = tmp_path / ".raw.x1y2"
    write(staging / "midlevel/metadata_annotations/annotations.csv", ANNOTATIONS)
    write(staging / "midlevel/metadata_annotations/metadata.csv", METADATA)
    write(staging / "soundtracks/mean_ratings_set1.csv", RATINGS)
    (staging / "midlevel/audio").mkdir()
    (staging / "soundtracks/audio").mkdir()
    assert validate_raw(staging) == {"midlevel": True, "soundtracks": True}
    write(staging / "midlevel/metadata_annotations/metadata.csv", METADATA.replace("17;", "1;"))
    with pytest.raises(CorpusError) as err:
        validate_raw(staging, shown_as=tmp_path / "raw")
    # the message names data/raw's path, not the temporary folder the stage deletes
    assert str(err.value).startswith(f"{tmp_path / 'raw' / 'midlevel/metadata_annotations/metadata.csv'}: "
                                     "line 3, column 'song id': song id 1 appears twice")
    assert ".raw.x1y2" not in str(err.value)
