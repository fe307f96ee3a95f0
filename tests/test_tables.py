import pandas as pd
import pytest

from coverpop.core.errors import CoverpopError
from coverpop.tracks.tables import KAGGLE_COLUMNS, LOCAL_REQUIRED, duplicates_note, read_tracks


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_kaggle_header_with_unnamed_index_reads(tmp_path):
    header = "," + ",".join(KAGGLE_COLUMNS)
    row = "0,A,T,id1,44,2012,pop,0.5,0.7,5,-7.2,1,0.05,0.1,0.0,0.2,0.6,120.5,200000,4"
    df = read_tracks(write(tmp_path, f"{header}\n{row}\n"))
    assert list(df.columns) == KAGGLE_COLUMNS
    assert df.loc[0, "popularity"] == 44 and df.loc[0, "track_id"] == "id1"


def test_extra_columns_are_kept(tmp_path):
    df = read_tracks(write(tmp_path, "track_id,popularity,mood\na,1,happy\n"))
    assert df.loc[0, "mood"] == "happy"


@pytest.mark.parametrize("text, message", [
    ("track_id,year\na,2000\n", "t.csv: missing column 'popularity'"),
    ("track_id,popularity\na,1\nb,lots\n", "t.csv: column 'popularity' at line 3: 'lots' is not a number"),
    ("track_id,popularity\na,1\nb,2\nc,101\n", "t.csv: column 'popularity' at line 4: 101 is outside 0-100"),
    ("track_id,popularity\na,-1\n", "t.csv: column 'popularity' at line 2: -1 is outside 0-100"),
    ("track_id,popularity\na,1\nb,2\na,3\n", "t.csv: column 'track_id' at line 4: duplicate id 'a'"),
    ("track_id,popularity\na,1\n,2\n", "t.csv: column 'track_id' is empty at line 3"),
    ("track_id,popularity,year\na,1,2001\nb,2,soon\n", "t.csv: column 'year' at line 3: 'soon' is not a number"),
    ("track_id,popularity\n", "t.csv: no rows"),
    # every numeric column of the schema is checked the same way as popularity
    ("track_id,popularity,year\na,1,2012.5\n", "t.csv: column 'year' at line 2: 2012.5 is not a whole number"),
    ("track_id,popularity,year\na,1,2001\nb,1,1e30\n", "t.csv: column 'year' at line 3: 1e+30 is outside 1000-2999"),
    ("track_id,popularity,year\na,1,NaN\n", "t.csv: column 'year' at line 2: 'NaN' is not a number"),
    ("track_id,popularity,year\na,1,inf\n", "t.csv: column 'year' at line 2: 'inf' is not a number"),
    ("track_id,popularity\na,NaN\n", "t.csv: column 'popularity' at line 2: 'NaN' is not a number"),
    ("track_id,popularity,key\na,1,3\nb,1,12\n", "t.csv: column 'key' at line 3: 12 is outside -1 to 11"),
    ("track_id,popularity,mode\na,1,0.5\n", "t.csv: column 'mode' at line 2: 0.5 is not a whole number"),
    ("track_id,popularity,energy\na,1,1.5\n", "t.csv: column 'energy' at line 2: 1.5 is outside 0-1"),
    ("track_id,popularity,tempo\na,1,fast\n", "t.csv: column 'tempo' at line 2: 'fast' is not a number"),
    ("track_id,popularity,duration_ms\na,1,-5\n", "t.csv: column 'duration_ms' at line 2: -5 is outside 0-86400000"),
    ("track_id,popularity,time_signature\na,1,4\nb,1,4.5\n", "t.csv: column 'time_signature' at line 3: 4.5 is not a whole number"),
    ("track_id,popularity,loudness\na,1,-1e9\n", "t.csv: column 'loudness' at line 2: -1e+09 is outside -100 to 50"),
])
def test_validation_errors_name_file_column_and_line(tmp_path, text, message):
    with pytest.raises(CoverpopError) as err:
        read_tracks(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_local_schema_requires_image(tmp_path):
    with pytest.raises(CoverpopError, match="missing column 'image'"):
        read_tracks(write(tmp_path, "track_id,popularity\na,1\n"), LOCAL_REQUIRED)


def test_missing_file(tmp_path):
    with pytest.raises(CoverpopError, match="nope.csv: file not found"):
        read_tracks(tmp_path / "nope.csv")


def test_track_ids_stay_text(tmp_path):
    df = read_tracks(write(tmp_path, "track_id,popularity\n007,1\n"))
    assert df.loc[0, "track_id"] == "007" and isinstance(df, pd.DataFrame)


def test_numeric_columns_blank_is_allowed_unless_required(tmp_path):
    df = read_tracks(write(tmp_path, "track_id,popularity,year,key\na,1,,\nb,2,2001,4.0\n"))
    assert df["year"].isna().iloc[0] and df.loc[1, "year"] == 2001 and df.loc[1, "key"] == 4
    assert str(df["key"].dtype) == "Int64"


def test_every_numeric_column_of_the_schema_is_checked():
    from coverpop.tracks.tables import NUMERIC
    assert set(KAGGLE_COLUMNS) - set(NUMERIC) == {"artist_name", "track_name", "track_id", "genre"}


def test_error_names_what_the_caller_calls_the_file(tmp_path):
    with pytest.raises(CoverpopError) as err:
        read_tracks(write(tmp_path, "<html><body>Sign in</body></html>\n"),
                    name="https://example.org/tracks.csv")
    assert str(err.value).startswith("https://example.org/tracks.csv: missing column 'track_id'")
    assert str(tmp_path) not in str(err.value)


DUPS = """track_id,popularity,genre
a,10,pop
b,20,rock
a,10,pop
c,30,jazz
b,25,blues
b,20,rock
a,10,pop
"""


def test_duplicate_ids_collapse_when_identical_and_keep_the_first_when_conflicting(tmp_path):
    df = read_tracks(write(tmp_path, DUPS), duplicates="first")
    assert list(df["track_id"]) == ["a", "b", "c"] and list(df["popularity"]) == [10, 20, 30]
    assert df.attrs["duplicates"] == {"identical": 3, "conflicting": 1, "conflicting_ids": 1}
    assert duplicates_note(df) == ("dropped 4 rows with a repeated track_id: 3 identical to an "
                                   "earlier row, 1 conflicting (1 track ids; the first row of "
                                   "each kept)")
    assert duplicates_note(read_tracks(write(tmp_path, "track_id,popularity\na,1\n", "u.csv"),
                                       duplicates="first")) == ""


def test_duplicate_ids_stay_an_error_by_default(tmp_path):
    with pytest.raises(CoverpopError, match=r"t.csv: column 'track_id' at line 4: duplicate id 'a'"):
        read_tracks(write(tmp_path, DUPS))
