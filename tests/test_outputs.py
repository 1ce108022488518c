"""The output-path guard: commands create, replace or remove files only inside the path they
were given, never through a symbolic link, and readers never create a store path."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from embedding_stores import clustered, embedding_store
from extract_runs import extract_args

from cdul.cli.extract import main as extract_cli
from cdul.cli.refine import main as refine_cli
from cdul.data import outputs
from cdul.report.eval_report import write_json


def snapshot(folder):
    return {
        os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(folder)
        for f in files
    }


@pytest.fixture
def user_folder(tmp_path):
    """Someone's folder that happens to hold a .lock file of its own."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".lock").write_text("my editor's lock, not cdul's")
    (folder / "draft.txt").write_text("work")
    return folder


def test_extract_refuses_a_users_folder_and_leaves_its_lock(voc_root, user_folder):
    before = snapshot(user_folder)
    r = CliRunner().invoke(extract_cli, extract_args(voc_root, user_folder, workers=0, limit=2, quiet=True))
    assert r.exit_code == 1 and "not a cdul store" in r.output and "Traceback" not in r.output
    assert snapshot(user_folder) == before
    (user_folder / "draft.txt").unlink()  # only the foreign .lock left: still not ours
    r = CliRunner().invoke(extract_cli, extract_args(voc_root, user_folder, workers=0, limit=2, quiet=True))
    assert r.exit_code == 1 and (user_folder / ".lock").read_text() == "my editor's lock, not cdul's"


def test_refine_never_creates_or_cleans_a_path_that_is_not_a_store(user_folder, tmp_path):
    before = snapshot(user_folder)
    r = CliRunner().invoke(refine_cli, ["--store", str(user_folder)])
    assert r.exit_code == 1 and "no cdul store" in r.output
    assert snapshot(user_folder) == before
    typo = tmp_path / "tpyo.zarr"
    r = CliRunner().invoke(refine_cli, ["--store", str(typo)])
    assert r.exit_code == 1 and "no cdul store" in r.output and not os.path.lexists(typo)


def test_a_stores_foreign_lock_file_is_refused_and_kept(tmp_path):
    emb, _, targets = clustered(64, seed=1)
    url = str(tmp_path / "s.zarr")
    embedding_store(url, emb, np.full(targets.shape, 0.5), chunk_len=32)
    with open(os.path.join(url, ".lock"), "w") as f:
        f.write("not json")
    r = CliRunner().invoke(refine_cli, ["--store", url, "-q"])
    assert r.exit_code == 1 and "did not write" in r.output
    assert open(os.path.join(url, ".lock")).read() == "not json"


def test_the_guard_refuses_links_and_escapes(tmp_path):
    out, other = tmp_path / "out", tmp_path / "other"
    other.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(other, target_is_directory=True)
    (out / "f.json").symlink_to(other / "f.json")
    for name in ("sub/x.png", "f.json", "../x", "/etc/x", "a/../../x"):
        with pytest.raises(outputs.OutputError):
            outputs.inside(str(out), name)
    assert outputs.inside(str(out), "new/deeper/x.png") == str(out / "new" / "deeper" / "x.png")
    assert (out / "new" / "deeper").is_dir() and os.listdir(other) == []
    with pytest.raises(outputs.OutputError, match="symbolic link"):
        write_json(str(out / "f.json"), {"map": 1.0})  # cdul-eval --out
    assert os.listdir(other) == []
    write_json(str(tmp_path / "new" / "val.json"), {"map": float("nan")})
    assert json.load(open(tmp_path / "new" / "val.json")) == {"map": None}


def test_train_refuses_an_out_dir_whose_files_are_links(tmp_path):
    from cdul.trainer.config import TrainConfig
    from cdul.trainer.start import TrainError, out_paths

    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    other.mkdir()
    assert out_paths(TrainConfig(store="s", out_dir=str(tmp_path / "new")))["last.pt"].endswith("last.pt")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (run / "metrics.csv").symlink_to(other / "metrics.csv")
    with pytest.raises(TrainError, match="symbolic link"):
        out_paths(TrainConfig(store="s", out_dir=str(run)))


def test_an_empty_lock_file_of_someone_else_is_neither_used_nor_removed(tmp_path):
    from cdul.store import StoreLock, StoreLockedError

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".lock").touch()
    with pytest.raises(StoreLockedError, match="did not write"):
        StoreLock(str(folder), create=True).acquire()
    assert os.listdir(folder) == [".lock"] and (folder / ".lock").read_bytes() == b""
