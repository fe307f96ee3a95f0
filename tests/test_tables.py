import pandas as pd
import pytest

from coverpop.core.errors import CoverpopError
from coverpop.tracks.tables import KAGGLE_COLUMNS, LOCAL_REQUIRED, read_tracks


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_kaggle_header_with_unnamed_index_reads(tmp_path):
    header = "," + ",".join(KAGGLE_COLUMNS)
    row = "0,A,T,id1,44,2012,pop," + ",".join(["0.5"] * 13)
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
