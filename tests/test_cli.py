"""`coverpop predict`: start-up cost, and one-line errors for every bad input."""

import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from coverpop import cli

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom coverpop import cli\n"
            "try:\n    cli.main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'timm', 'cv2', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: coverpop predict" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_missing_model_tells_the_user_what_to_run(tmp_path, capsys):
    rc = cli.main(["predict", str(GRACE), "--model", str(tmp_path / "model.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert str(tmp_path / "model.pt") in err[0]
    assert "dvc repro" in err[0] and "dvc pull" in err[0]


def test_missing_and_corrupt_covers_are_named_one_line_each(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(GRACE.read_bytes()[:300])  # a truncated JPEG
    junk = tmp_path / "notes.png"
    junk.write_text("hello")
    rc = cli.main(["predict", str(tmp_path / "nope.jpg"), str(bad), str(junk), str(tmp_path),
                   "--model", str(tmp_path / "model.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 4
    assert err[0] == f"error: {tmp_path / 'nope.jpg'}: file not found"
    assert err[1].startswith(f"error: {bad}: not a readable image (")  # PIL's reason follows
    assert err[2] == f"error: {junk}: not a readable image (unknown format or corrupt)"
    assert err[3] == f"error: {tmp_path}: is a folder, not an image"


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict"])
    assert exc.value.code == 2
    assert "COVER" in capsys.readouterr().err
