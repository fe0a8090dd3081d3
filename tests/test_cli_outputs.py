"""Every --out follows one rule: a path ending in a file suffix the command writes is that file (its siblings
beside it, named after it); anything else is a folder."""

import pytest
from typer.testing import CliRunner

from koopscope.cli.common import outputs
from koopscope.cli.main import app
from koopscope.errors import KoopscopeError
from koopscope.models import default_checkpoint

SUFFIXES = (".nc", ".png", ".json")


def test_a_file_suffix_names_the_file_and_its_siblings(tmp_path):
    assert outputs(tmp_path / "r" / "x.png", "consistency", SUFFIXES) == {
        "nc": tmp_path / "r" / "x.nc", "png": tmp_path / "r" / "x.png", "json": tmp_path / "r" / "x.json"}
    assert outputs(tmp_path / "x.v2", "consistency", SUFFIXES)["nc"] == tmp_path / "x.v2" / "consistency.nc"
    with pytest.raises(KoopscopeError, match="give a folder or a .nc / .png / .json file"):
        outputs(tmp_path / "x.npz", "consistency", SUFFIXES)


def test_sample_and_fid_accept_a_folder(tmp_path):
    ckpt = str(default_checkpoint()[0])
    r = CliRunner().invoke(app, ["sample", ckpt, "--count", "2", "--out", str(tmp_path / "s"), "--no-progress"])
    assert r.exit_code == 0 and (tmp_path / "s" / "samples.png").is_file(), r.output
    r = CliRunner().invoke(app, ["sample", ckpt, "--count", "2", "--out", str(tmp_path / "s.json")])
    assert r.exit_code == 2 and "give a folder or a .png / .npz file" in r.output and not (tmp_path / "s.json").exists()


def test_modes_out_names_the_file_and_its_sibling(tmp_path):
    r = CliRunner().invoke(app, ["modes", "--columns", "2", "--count", "1", "--out", str(tmp_path / "d" / "f.png"),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.nc", "f.png"]
    r = CliRunner().invoke(app, ["modes", "--columns", "2", "--count", "1", "--out", str(tmp_path / "m"),
                                 "--no-progress"])
    assert r.exit_code == 0 and (tmp_path / "m" / "modes_all_isolated.png").is_file(), r.output


def test_renamed_options_are_gone(tmp_path):
    for args in (["modes", "--times", "3"], ["inpaint", "--image", "fashion:test:0", "--times", "2"],
                 ["train", "hkd", "--times", "2", "--out", str(tmp_path)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "No such option: --times" in r.output, (args, r.output)
