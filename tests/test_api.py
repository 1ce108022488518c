"""The Python interface: the read-only store view, the commands as functions (their options
as keywords, their failures as CdulError with the command's line), the round trip of an
exported labels.csv through a second extraction, and the README's notebook code run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from extract_runs import TINY
from PIL import Image
from train_runs import SMALL

import cdul
from cdul.api import command_args
from cdul.benchmarks.export_bench import synthetic_store
from cdul.cli.extract import main as extract_cli
from cdul.labels import Decision, decide
from cdul.store import Store, layout

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("api") / "s.zarr")
    synthetic_store(path, 50, 3, chunk_len=16, failed_every=10)
    return path


def test_import_cdul_is_cheap_and_loads_the_api_on_use():
    code = "import sys, cdul; print(sorted(m for m in sys.modules if m.startswith('cdul'))); cdul.open_store"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cdul']"
    assert "open_store" in dir(cdul) and cdul.CdulError is cdul.api.CdulError


def test_the_view_reads_what_the_store_holds(store_path):
    view = cdul.open_store(store_path)
    store = Store.open(store_path)
    ok = store.read(layout.STATUS) == layout.OK
    assert view.classes == ["class 0", "class 1", "class 2"] and view.ids == store.ids()
    assert view.summary == {"images": 50} and list(view.rounds) == [0]
    recorded = {k: v for k, v in view.rounds[0].items() if k != "writer"}  # writer: the run that wrote it
    assert recorded == {"zeta": 0.5, "lam": 0.0, "source": "synthetic", "epoch": None, "round": 0}
    np.testing.assert_array_equal(view.labels(), store.read(layout.round_name(0)))
    np.testing.assert_array_equal(view.labels("S_g"), store.read(layout.SIM_GLOBAL))
    df = view.to_pandas()
    assert list(df.columns) == view.classes and list(df.index) == [i for i, good in zip(view.ids, ok) if good]
    np.testing.assert_array_equal(df.to_numpy(), store.read(layout.round_name(0))[ok])
    decided = view.to_pandas(scores=False, top_k=1)
    np.testing.assert_array_equal(decided.to_numpy(), decide(store.read(layout.round_name(0))[ok], Decision(top_k=1)))
    tree = view.to_xarray()
    assert tree["labels/round_000"].sel({"class": "class 1"}).shape == (50,)


def test_view_and_command_failures_are_cdul_errors(store_path, tmp_path):
    with pytest.raises(cdul.CdulError, match="no cdul store at"):
        cdul.open_store(tmp_path / "missing.zarr")
    with pytest.raises(cdul.CdulError, match="cdul-extract: no option 'modle'"):
        cdul.extract(tmp_path, out=tmp_path / "x.zarr", modle="RN50")
    with pytest.raises(cdul.CdulError, match=r"^Invalid value for '--snippet': 0 is not in the range 1<=x<=64\.$"):
        cdul.extract(tmp_path, out=tmp_path / "x.zarr", snippet=0)
    with pytest.raises(cdul.CdulError, match=r"^--out .* is a file, and a store is a folder") as info:
        (tmp_path / "file").write_text("")
        (tmp_path / "classes.txt").write_text("cat\n")
        Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
        cdul.extract(tmp_path, out=tmp_path / "file", dataset="folder", classes=tmp_path / "classes.txt", **TINY)
    assert info.value.code == 1
    with pytest.raises(cdul.CdulError, match=r"unknown table format '\.txt'"):
        cdul.predict(checkpoint=tmp_path / "best.pt", data=tmp_path, out=tmp_path / "preds.txt")
    with pytest.raises(cdul.CdulError, match="no checkpoint at"):
        cdul.predict(checkpoint=tmp_path / "best.pt", data=tmp_path, out=tmp_path / "preds.csv", top_k=2)
    with pytest.raises(cdul.CdulError, match="--top-k must be"):
        cdul.predict(checkpoint=tmp_path / "best.pt", data=tmp_path, out=tmp_path / "preds.csv", top_k=0)


def test_keywords_become_the_command_line():
    options = {"out": "s.zarr", "exif": False, "keep_tiles": True, "snippet": 2, "limit": None, "compile": "none"}
    args = command_args(extract_cli, "cdul-extract", ["root"], options)
    assert args == ["root", "--out", "s.zarr", "--no-exif", "--keep-tiles", "--snippet", "2", "--compile", "none"]
    assert command_args(extract_cli, "x", [], {"no_exif": True, "keep_tiles": False}) == ["--no-exif"]


def _photos(root: Path) -> Path:
    """A folder of 8 small images of varied colour and one that does not decode."""
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        pixels = (rng.random((40 + 4 * i, 48, 3)) * [255 * (i % 3 == 0), 255 * (i % 3 == 1), 255]).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    (root.parent / "classes.txt").write_text("red thing\nblue thing\ngreen thing\n")
    return root.parent / "classes.txt"


@pytest.mark.slow
def test_an_exported_csv_is_the_labels_of_a_second_extraction(tmp_path):
    """Failed images are left out, score columns are read past, and the second store's
    targets are the decisions of the first's initial labels (at their median: a random-weight
    CLIP scores the classes too evenly for the default rule to tell images apart)."""
    root = tmp_path / "photos"
    classes = _photos(root)
    first = cdul.extract(
        root, out=tmp_path / "a.zarr", dataset="folder", classes=classes, max_failures="2", quiet=True, **TINY
    )
    assert (first.images, first.ok, first.failed) == (9, 8, 1)
    y0 = cdul.open_store(tmp_path / "a.zarr").labels("y0")
    threshold = float(np.median(y0[np.isfinite(y0).all(axis=1)]))
    result = cdul.export(store=tmp_path / "a.zarr", out=root / "labels.csv", scores=True, threshold=threshold)
    assert (result.images, result.failed) == (8, 1)
    cdul.extract(root, out=tmp_path / "b.zarr", dataset="folder", classes=classes, quiet=True, **TINY)
    a, b = Store.open(str(tmp_path / "a.zarr")), Store.open(str(tmp_path / "b.zarr"))
    ok = a.read(layout.STATUS) == layout.OK
    assert b.ids() == [i for i, good in zip(a.ids(), ok) if good] and b.classes == a.classes
    kept = decide(a.read(layout.round_name(0))[ok], Decision(threshold=threshold))
    assert 0 < kept.sum() < kept.size and len({tuple(row) for row in kept}) > 1  # decisions that differ
    np.testing.assert_array_equal(b.read(layout.TARGETS), np.where(kept, 1, -1))


def readme_python(section: str = "## Python") -> str:
    """The python code blocks of one README section, joined."""
    text = README.read_text()
    body = text[text.index(section + "\n") :]
    body = body[: body.find("\n## ", 1) if "\n## " in body[1:] else len(body)]
    return "\n".join(re.findall(r"```python\n(.*?)```", body, flags=re.S))


@pytest.mark.slow
def test_the_readme_notebook_code_runs(tmp_path, monkeypatch):
    """The README's Python section as written, its model and training settings swapped for
    the tests' tiny ones (random weights, a ResNet-18 at 32 px, one epoch)."""
    code = readme_python()
    swaps = {
        'MODEL = dict(model="ViT-B-32", pretrained="openai")': f"MODEL = {TINY!r}",
        'TRAIN = dict(arch="resnet50", img_size=224, epochs=5)': f"TRAIN = {dict(SMALL, epochs=1)!r}",
    }
    for line, tiny in swaps.items():
        assert line in code
        code = code.replace(line, tiny)
    _photos(tmp_path / "photos")
    (tmp_path / "photos" / "broken.jpg").unlink()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["run"].epochs == 1 and namespace["run"].label_round == 1
    assert sorted(namespace["store"].rounds) == [0, 1] and namespace["df"].shape == (8, 3)
    assert namespace["decided"].to_numpy().sum(axis=1).tolist() == [2] * 8
    assert namespace["result"].images == 8 and os.path.exists("labels.parquet")
    assert (namespace["preds"].images, namespace["preds"].failed) == (8, 0) and os.path.exists("preds.csv")
    assert os.path.exists("model.onnx") and not os.path.exists("preds.csv.parts")
    assert not os.path.exists("labels.txt")
