"""The commands end to end on an extracted store: tampered metadata (B) is one line in
cdul-train, cdul-search and cdul-report; size options are clamped to the data (F); a run
with nothing to read fails (G)."""

import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner
from extract_runs import extract_args
from test_hostile_inputs import edit_attrs, one_line
from train_runs import train

from cdul.cli.extract import main as extract_cli
from cdul.cli.report import main as report_cli
from cdul.cli.search import main as search_cli
from cdul.store import Store, layout

pytestmark = pytest.mark.slow  # extraction and training runs


@pytest.fixture(scope="module")
def extracted(voc_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hostile") / "s.zarr")
    args = extract_args(voc_root, out, model="cdul-tiny-vit", quiet=True, workers=0, keep_embeddings=True, snippet=1)
    r = CliRunner().invoke(extract_cli, [*args, "--chunk-len", "8"])
    assert r.exit_code == 0, r.output
    return out


def _copy(extracted, tmp_path):
    url = str(tmp_path / "s.zarr")
    shutil.copytree(extracted, url)
    return url


def _truncate(url, array):
    path = os.path.join(url, array, "zarr.json")
    open(path, "w").write(open(path).read()[:30])


@pytest.mark.parametrize(
    "damage,needle",
    [
        ({"tiling": {"mode": "grid", "G": 0}}, "tiling.G"),
        ({"model": ["RN50"]}, "'model'"),
        ({"n_images": "many"}, "'n_images'"),
        ({"classes": "aeroplane"}, "'classes'"),
        (layout.STATUS, "images/status"),
    ],
)
def test_tampered_metadata_is_one_line_in_every_command(extracted, tmp_path, damage, needle):
    url = _copy(extracted, tmp_path)
    if isinstance(damage, dict):
        edit_attrs(url, **damage)
    else:
        _truncate(url, damage)
    one_line(train(url, str(tmp_path / "run"), epochs=1, workers=0), needle)
    one_line(CliRunner().invoke(search_cli, ["--store", url, "a photo of a cat"]), needle)
    one_line(CliRunner().invoke(report_cli, ["--store", url, "--out", str(tmp_path / "rep")]), needle)


def test_search_k_is_clamped_to_the_images(extracted, tmp_path):
    hits = tmp_path / "hits.json"
    r = CliRunner().invoke(
        search_cli, ["--store", extracted, "a photo of a cat", "-k", str(10**12), "--json", str(hits)]
    )
    assert r.exit_code == 0, r.output
    store = Store.open(extracted)
    ok = int((store.read(layout.STATUS) == layout.OK).sum())
    assert f"note: -k 1000000000000 is more than the {ok} images" in r.stderr
    assert len(json.load(open(hits))["hits"]) == ok


def test_training_on_no_readable_image_fails_and_writes_no_round(extracted, tmp_path):
    url = _copy(extracted, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = train(url, str(tmp_path / "run"), epochs=1, workers=0, data=str(empty))
    one_line(r, "not one of its", "--data")
    assert Store.open(url).label_rounds() == [0]
    assert not os.path.exists(tmp_path / "run" / "last.pt")


def test_chunk_len_is_clamped_to_the_split(voc_root, tmp_path):
    out = str(tmp_path / "s.zarr")
    args = extract_args(voc_root, out, quiet=True, workers=0, snippet=1, limit=2)
    r = CliRunner().invoke(extract_cli, [*args, "--chunk-len", str(10**12)])
    assert r.exit_code == 0, r.output
    assert "note: --chunk-len 1000000000000 is more than" in r.stderr
    assert Store.open(out).chunk_len == 1024


def test_img_size_is_clamped_to_the_largest_image(extracted, tmp_path):
    url = _copy(extracted, tmp_path)
    r = train(url, str(tmp_path / "run"), epochs=1, workers=0, img_size=10**9, batch_size=8)
    assert r.exit_code == 0, r.output
    saved = torch.load(str(tmp_path / "run" / "last.pt"), weights_only=True)
    assert saved["img_size"] == max(448, int(Store.open(url).read(layout.HW).max()))


def test_extracting_not_one_readable_image_fails_whatever_max_failures_allows(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.jpg").write_text("not an image\n")
    os.mkfifo(root / "b.png")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    args = extract_args(str(root), str(tmp_path / "s.zarr"), dataset="folder", quiet=True, workers=0, snippet=1)
    r = CliRunner().invoke(extract_cli, [*args, "--classes", str(tmp_path / "classes.txt"), "--max-failures", "100%"])
    assert r.exit_code == 3 and "not one of the 2 images could be read" in r.stderr, r.output
    assert "a FIFO" in r.output + r.stderr


def test_a_missing_array_is_one_line(extracted, tmp_path):
    url = _copy(extracted, tmp_path)
    shutil.rmtree(os.path.join(url, layout.SIM_ALPHA))
    r = CliRunner().invoke(report_cli, ["--store", url, "--out", str(tmp_path / "rep")])
    one_line(r, "no array sim/alpha", "cdul-extract --overwrite")
    assert not os.path.exists(tmp_path / "rep")


def test_training_on_one_image_is_refused(voc_root, tmp_path):
    out = str(tmp_path / "one.zarr")
    r = CliRunner().invoke(extract_cli, extract_args(voc_root, out, quiet=True, workers=0, snippet=1, limit=1))
    assert r.exit_code == 0, r.output
    r = train(out, str(tmp_path / "run"), epochs=1, workers=0, img_size=32)
    one_line(r, "one image with usable labels", "at least two")
    assert not os.path.exists(tmp_path / "run" / "last.pt")


def test_running_out_of_memory_is_one_line_that_names_the_options_and_keeps_the_chunks(voc_root, tmp_path, monkeypatch):
    from cdul.extractor.encoder import Encoder

    calls = []
    real = Encoder.__call__

    def short_of_memory(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, *args, **kwargs)

    out = str(tmp_path / "s.zarr")
    args = [*extract_args(voc_root, out, quiet=True, workers=0, snippet=1, batch_size=4), "--chunk-len", "4"]
    with monkeypatch.context() as m:
        m.setattr(Encoder, "__call__", short_of_memory)
        r = CliRunner().invoke(extract_cli, args)
    one_line(r, "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB): lower --batch-size (now 4)", "resume")
    assert Store.open(out).done_flags().any()  # the chunks finished before it are kept
    r = CliRunner().invoke(extract_cli, args)
    assert r.exit_code == 0, r.output
    assert Store.open(out).done_flags().all()
