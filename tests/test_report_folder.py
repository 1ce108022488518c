"""cdul-report writes into its own folder only: it refuses a folder of someone else's
files and, replacing an earlier report, removes nothing it did not write."""

import os

import pytest
from click.testing import CliRunner
from extract_runs import extract_args

from cdul.cli.extract import main as extract
from cdul.cli.report import main as report


@pytest.fixture(scope="module")
def store(voc_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rep") / "s.zarr")
    r = CliRunner().invoke(
        extract,
        extract_args(voc_root, out, workers=0, limit=4, chunk_len=2, quiet=True),
    )
    assert r.exit_code == 0, r.output
    return out


def _report(store, out):
    return CliRunner().invoke(report, ["--store", store, "--out", str(out), "--images", "2"])


def test_a_folder_of_other_files_is_refused_and_kept(store, tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    r = _report(store, out)
    assert r.exit_code == 1 and "not empty" in r.output and "Traceback" not in r.output
    assert (out / "thesis.txt").read_text() == "years of work" and os.listdir(out) == ["thesis.txt"]
    f = tmp_path / "file"
    f.write_text("x")
    r = _report(store, f)
    assert r.exit_code == 1 and "is a file" in r.output and f.read_text() == "x"


def test_a_new_report_replaces_only_its_own_files(store, tmp_path):
    out = tmp_path / "report"
    assert _report(store, out).exit_code == 0
    assert (out / "index.html").exists() and (out / ".cdul-report").exists()
    (out / "notes.txt").write_text("mine")
    (out / ".cdul-report").write_text((out / ".cdul-report").read_text() + "../outside.txt\n")
    (tmp_path / "outside.txt").write_text("keep")
    (out / "index.html").write_text("stale")
    assert _report(store, out).exit_code == 0
    assert (out / "notes.txt").read_text() == "mine" and (tmp_path / "outside.txt").read_text() == "keep"
    assert (out / "index.html").read_text() != "stale"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".report")]


def test_a_symbolic_link_inside_the_folder_is_never_written_through(store, tmp_path):
    out, elsewhere = tmp_path / "report", tmp_path / "elsewhere"
    assert _report(store, out).exit_code == 0
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_text("someone's")
    images = [p for p in out.rglob("*.png") if p.parent != out]
    assert images, "the report keeps images in a subfolder"
    sub = images[0].parent
    for p in sub.iterdir():
        p.unlink()
    sub.rmdir()
    sub.symlink_to(elsewhere, target_is_directory=True)
    r = _report(store, out)
    assert r.exit_code == 1 and "symbolic link" in r.output and "Traceback" not in r.output
    assert sorted(os.listdir(elsewhere)) == ["photo.png"] and (elsewhere / "photo.png").read_text() == "someone's"
    assert os.path.islink(sub)
