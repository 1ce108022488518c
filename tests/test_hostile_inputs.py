"""Damaged metadata (B), hostile input files (E), resource limits and special files (F) and
success on nothing (G): each is one line and a non-zero exit, or the safe behaviour the
README states, never a traceback. Stores here are generated (no CLIP); the end-to-end cases
are in test_hostile_commands.py."""

import json
import os
import shutil
import tarfile
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from embedding_stores import clustered, embedding_store
from PIL import Image
from test_webdataset import samples, write_tar

from cdul.cli.eval import main as eval_cli
from cdul.cli.extract import main as extract_cli
from cdul.cli.refine import main as refine_cli
from cdul.cli.report import main as report_cli
from cdul.cli.search import main as search_cli
from cdul.data import VOC_NAMES, DatasetError, fs, load_dataset, sample_reader
from cdul.extractor.reader import read_image
from cdul.sample import write_voc_layout
from cdul.store import Store, StoreError, layout
from cdul.trainer.checkpoint import save_checkpoint


def one_line(r, *needles, code=1):
    """A click result that is one line on stderr, exit status ``code``, no traceback."""
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith(("warning:", "note:"))]
    assert r.exit_code == code and len(lines) == 1, (r.exit_code, r.stderr, r.exception)
    assert "Traceback" not in r.output + r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def store(tmp_path):
    emb, _, targets = clustered(30, classes=3)
    url = str(tmp_path / "s.zarr")
    embedding_store(url, emb, np.random.default_rng(0).random((30, 3)), targets=targets, chunk_len=8)
    Store.open(url, mode="r+").set_attrs(model={"name": "cdul-tiny-vit", "pretrained": "none"}, complete=True)
    return url


def edit_attrs(url, **values):
    path = os.path.join(url, "zarr.json")
    meta = json.load(open(path))
    meta["attributes"].update(values)
    json.dump(meta, open(path, "w"))


# -- B: damaged or tampered metadata ------------------------------------------------------------
@pytest.mark.parametrize(
    "values,needle",
    [
        ({"n_images": 29}, "shape 30"),
        ({"n_images": 3.5}, "'n_images'"),
        ({"chunk_len": "8"}, "'chunk_len'"),
        ({"chunk_len": 16}, "chunked by 8"),
        ({"classes": ["c0", "c1", "c2", "c3"]}, "30 x 4"),
        ({"classes": []}, "'classes'"),
        ({"classes": ["c0", "", "c2"]}, "'classes'"),
        ({"label_rounds": "0"}, "'label_rounds'"),
        ({"label_rounds": [0, 2]}, "round_002 is missing"),
        ({"summary": [1, 2]}, "'summary'"),
        ({"dataset": {"root": 5}}, "dataset.root"),
        ({"model": {"name": "x", "logit_scale": -1}}, "model.logit_scale"),
    ],
)
def test_tampered_attributes_are_one_line(store, values, needle):
    edit_attrs(store, **values)
    with pytest.raises(StoreError, match="extract"):
        Store.open(store)
    one_line(CliRunner().invoke(refine_cli, ["--store", store, "-q"]), needle)


@pytest.mark.parametrize("array", [layout.round_name(0), layout.EMB_GLOBAL, layout.DONE])
def test_unreadable_array_metadata_is_one_line(store, array):
    path = os.path.join(store, array, "zarr.json")
    open(path, "w").write(open(path).read()[:25])
    one_line(CliRunner().invoke(refine_cli, ["--store", store, "-q"]), array, "cannot be read")


def test_an_array_of_another_type_is_one_line(store):
    path = os.path.join(store, layout.STATUS, "zarr.json")
    meta = json.load(open(path))
    meta.update(data_type="float64", fill_value=0.0)
    json.dump(meta, open(path, "w"))
    one_line(CliRunner().invoke(refine_cli, ["--store", store, "-q"]), "images/status holds values of type float64")


@pytest.mark.parametrize("damage", ["garbage", "empty", "meta"])
def test_a_damaged_index_cache_is_rebuilt(store, damage):
    assert CliRunner().invoke(refine_cli, ["--store", store, "-q", "--knn", "3"]).exit_code == 0
    folder = os.path.join(store, "_index")
    index = next(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".faiss"))
    target = index[: -len(".faiss")] + ".json" if damage == "meta" else index
    open(target, "wb").write(b"\x00\x01 not an index" if damage != "empty" else b"")
    r = CliRunner().invoke(refine_cli, ["--store", store, "-q", "--knn", "3"])
    assert r.exit_code == 0, r.output
    assert Store.open(store).label_rounds() == [0, 1, 2]


# -- E: untrusted input files ---------------------------------------------------------------------
def _coco(root, data):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    path = os.path.join(root, "annotations", "instances_val2014.json")
    open(path, "w").write(data if isinstance(data, str) else json.dumps(data))


GOOD = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "dog"}], "annotations": []}


@pytest.mark.parametrize(
    "data,needle",
    [
        ({**GOOD, "categories": None}, "'categories' is null"),
        ({**GOOD, "images": [{"id": 1.5, "file_name": "a.jpg"}]}, "images[0].id is 1.5"),
        ({**GOOD, "images": [{"id": True, "file_name": "a.jpg"}]}, "images[0].id is true"),
        ({**GOOD, "images": [{"id": 1, "file_name": ["a.jpg"]}]}, "images[0].file_name is a list"),
        ({**GOOD, "annotations": {"image_id": 1}}, "'annotations' is an object"),
        ({**GOOD, "annotations": [{"image_id": {"a": 1}, "category_id": 1}]}, "annotations[0].image_id"),
        ({**GOOD, "categories": [{"id": 1, "name": "dog"}, {"id": 7, "name": "dog"}]}, "'dog' appears twice"),
        ({**GOOD, "categories": [{"id": 1, "name": " "}]}, "categories[0].name"),
        ("[" + json.dumps(GOOD) + "]", "top level is a list"),
        ('{"info": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}", "nested too deeply"),
        ('{"images": [1, 2,]}', ":1: not valid JSON"),
    ],
)
def test_malformed_annotation_files_are_one_line(tmp_path, data, needle):
    _coco(str(tmp_path), data)
    with pytest.raises(DatasetError) as err:
        load_dataset("coco2014", str(tmp_path), "val")
    assert "instances_val2014.json" in str(err.value) and needle in str(err.value)


def test_a_deeply_nested_sample_json_is_one_line(tmp_path):
    png = samples()[0][2]
    deep = b'{"labels": ["cat"], "extra": ' + b'{"x": ' * 50_000 + b"0" + b"}" * 50_000 + b"}"
    shard = write_tar(
        tmp_path / "deep.tar", [("a.png", png), ("a.json", b'{"labels": []}'), ("b.png", png), ("b.json", deep)]
    )
    with pytest.raises(DatasetError, match=r"deep.tar: b.json: JSON nested too deeply"):
        load_dataset("webdataset", shard, "")


@pytest.mark.parametrize("template", ["{0}", "a {name}", "a photo of a cat}", "{} and {}", "{!r}", "no slot"])
def test_bad_prompt_templates_are_one_line(voc_root, tmp_path, template):
    r = CliRunner().invoke(extract_cli, [voc_root, "--out", str(tmp_path / "s.zarr"), "--prompt", template])
    one_line(r, "--prompt")
    assert not os.path.exists(tmp_path / "s.zarr")


@pytest.mark.parametrize(
    "content,needle",
    [
        ('"just a string"', "top level is"),
        ('{"map": 50, "ap": [1, 2], "CF1": 0, "OF1": 0, "threshold": 0.5}', "'ap' is a list"),
        ('{"map": "high", "ap": {}, "CF1": 0, "OF1": 0, "threshold": 0.5}', "'map' is \"high\""),
        ('{"ap": {}}', "missing key 'map'"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_bad_eval_report_is_one_line(store, tmp_path, content, needle):
    path = tmp_path / "val.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    r = CliRunner().invoke(report_cli, ["--store", store, "--eval", str(path), "--out", str(tmp_path / "rep")])
    one_line(r, "val.json", needle)


def test_bad_run_records_are_one_line(store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n[1, 2]\n')
    r = CliRunner().invoke(report_cli, ["--store", store, "--run", str(run), "--out", str(tmp_path / "rep")])
    one_line(r, "metrics.jsonl:2")


def _voc(root, n=2):
    items = {f"im{i}": (Image.new("RGB", (40, 30), (30 * i, 90, 10)), ["cat"] if i % 2 else ["dog"]) for i in range(n)}
    return write_voc_layout(str(root), items, split="val")


def _checkpoint(path, arch="resnet18", weights_of="resnet18", **fields):
    import torchvision

    model = torchvision.models.get_model(weights_of, weights=None, num_classes=20)
    state = {"epoch": 1, "label_round": 0, "model": model.state_dict(), "config": {}, "arch": arch}
    state.update({"classes": list(VOC_NAMES), "img_size": 32, "loss": "kl", **fields})
    save_checkpoint(state, str(path))
    return str(path)


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"arch": "resnet34"}, "does not fit"),
        ({"model": {"fc.weight": torch.zeros(3, 3)}}, "does not fit"),
        ({"classes": ["cat", "cat"]}, "'classes'"),
        ({"img_size": "32"}, "'img_size'"),
        ({"loss": "hinge"}, "kl or bce"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_one_line(tmp_path, fields, needle):
    root = _voc(tmp_path / "voc")
    ckpt = _checkpoint(tmp_path / "best.pt", **fields)
    r = CliRunner().invoke(eval_cli, ["-c", ckpt, "--data", root, "--device", "cpu", "--workers", "0"])
    one_line(r, "best.pt", needle)


@pytest.mark.parametrize("option", ["--out", "--plots"])
def test_eval_outputs_of_the_wrong_kind_are_one_line(tmp_path, option):
    root = _voc(tmp_path / "voc", n=4)
    ckpt = _checkpoint(tmp_path / "best.pt")
    target = tmp_path / "target"
    if option == "--out":
        target.mkdir()  # a folder where the JSON file goes
    else:
        target.write_text("a file where the plots folder goes\n")
    r = CliRunner().invoke(
        eval_cli, ["-c", ckpt, "--data", root, "--device", "cpu", "--workers", "0", option, str(target)]
    )
    one_line(r, option)


@pytest.mark.parametrize("kind", ["folder", "text", "empty"])
def test_search_by_an_image_that_is_not_one_is_one_line(store, tmp_path, kind):
    path = tmp_path / "q.jpg"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"" if kind == "empty" else b"hello, not a picture\n")
    one_line(CliRunner().invoke(search_cli, ["--store", store, "--image", str(path)]), "--image")


# -- F: resource limits and special files ---------------------------------------------------------
def test_knn_is_clamped_to_the_images_there_are(store):
    r = CliRunner().invoke(refine_cli, ["--store", store, "-q", "--knn", str(10**12)])
    assert r.exit_code == 0, r.output
    assert "note: --knn 1000000000000 is more than the 29" in r.stderr
    assert Store.open(store).round_array(1).attrs["knn"] == 29


def test_ivf_lists_and_probes_are_clamped(store):
    big = str(10**12)
    r = CliRunner().invoke(refine_cli, ["--store", store, "-q", "--index", "ivf", "--nlist", big, "--nprobe", big])
    assert r.exit_code == 0, r.output
    assert "note: --nlist 1000000000000 is more than the 30 images" in r.stderr
    assert "note: --nprobe 1000000000000 is more than the 30 lists" in r.stderr
    attrs = Store.open(store).round_array(1).attrs
    assert (attrs["nlist"], attrs["nprobe"]) == (30, 30)


def _reads_without_blocking(read, rel):
    out = []
    worker = threading.Thread(
        target=lambda: out.append(read_image(read, rel, exif=True, max_pixels=10**8)), daemon=True
    )
    worker.start()
    worker.join(20)
    assert out, f"reading {rel} blocked"
    return out[0]


def test_special_files_are_failed_images_never_read(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    os.mkfifo(root / "b.png")
    (root / "c.png").mkdir()
    ds = load_dataset("folder", str(root), "", classes=["cat"])
    assert ds.ids == ["a.png", "b.png"]  # a folder is not listed; a FIFO is, and fails
    read = sample_reader(ds.kind, ds.root)
    assert isinstance(_reads_without_blocking(read, "a.png"), np.ndarray)
    assert "a FIFO, not a regular file" in _reads_without_blocking(read, "b.png")
    assert "folder" in _reads_without_blocking(read, "c.png")


def test_shards_that_cannot_be_listed_are_failed_images(tmp_path, monkeypatch):
    png = samples()[0][2]
    folder = tmp_path / "shards"
    folder.mkdir()
    write_tar(folder / "000000.tar", [("a.png", png), ("b.png", png)])
    whole = (folder / "000000.tar").read_bytes()
    (folder / "000001.tar").write_bytes(whole[:200])  # cut inside its first header
    (folder / "000002.tar").write_bytes(b"")
    os.mkfifo(folder / "000003.tar")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_tar(elsewhere / "x.tar", [("c.png", png)])
    os.symlink(elsewhere / "x.tar", folder / "000004.tar")
    with pytest.raises(DatasetError, match="--follow-symlinks"):
        load_dataset("webdataset", str(folder), "", classes=["cat"])
    monkeypatch.setenv(fs.FOLLOW_SYMLINKS, "1")
    ds = load_dataset("webdataset", str(folder), "", classes=["cat"])
    bad = ["000001.tar/__unreadable__", "000002.tar/__unreadable__", "000003.tar/__unreadable__"]
    assert ds.ids == ["000000.tar/a", "000000.tar/b", *bad, "000004.tar/c"]
    read = sample_reader(ds.kind, ds.root)
    assert isinstance(_reads_without_blocking(read, "000004.tar/c"), np.ndarray)
    for rel, why in zip(bad, ["not a readable tar shard", "not a readable tar shard", "a FIFO"]):
        assert why in _reads_without_blocking(read, rel)
    assert tarfile.is_tarfile(folder / "000000.tar")


# -- G: success reported on nothing ---------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_an_empty_query_is_one_line(store, query):
    one_line(CliRunner().invoke(search_cli, ["--store", store, query]), "empty")


def test_report_inputs_naming_nothing_are_one_line(store, tmp_path):
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    (empty_run / "metrics.jsonl").write_text("\n")
    out = ["--out", str(tmp_path / "rep")]
    one_line(CliRunner().invoke(report_cli, ["--store", store, "--run", str(tmp_path / "nope"), *out]), "no such")
    one_line(CliRunner().invoke(report_cli, ["--store", store, "--run", str(empty_run), *out]), "no epoch")
    other = tmp_path / "other"
    other.mkdir()
    one_line(CliRunner().invoke(report_cli, ["--store", store, "--run", str(other), *out]), "no metrics.jsonl")
    one_line(CliRunner().invoke(report_cli, ["--store", store, "--eval", str(tmp_path / "v.json"), *out]), "not found")
    assert not os.path.exists(tmp_path / "rep")


def test_eval_with_no_readable_image_is_one_line(tmp_path):
    root = _voc(tmp_path / "voc", n=3)
    ckpt = _checkpoint(tmp_path / "best.pt")
    shutil.rmtree(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, "JPEGImages"))
    out = tmp_path / "val.json"
    r = CliRunner().invoke(eval_cli, ["-c", ckpt, "--data", root, "--device", "cpu", "--workers", "0", "-o", str(out)])
    one_line(r, "none of the 3 images")
    assert not out.exists()
