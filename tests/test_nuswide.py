"""NUS-WIDE in its release layout: lists with backslashes, one label file per concept, images
missing from a download recorded as failed, and one line for every bad tree."""

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr
from benchmark_trees import NUS_CONCEPTS, make_nuswide_tree
from extract_runs import extract_args

from cdul.data import DATASETS, DatasetError, load_dataset, sample_reader

LABELS = os.path.join("Groundtruth", "TrainTestLabels")


def test_reads_lists_labels_and_concepts(tmp_path):
    root = make_nuswide_tree(str(tmp_path), n=7)
    ds = load_dataset("nuswide", str(tmp_path), "train")
    assert "nuswide" in DATASETS and ds.kind == "nuswide" and ds.split == "train"
    assert ds.classes == list(NUS_CONCEPTS) and len(ds) == 7
    assert ds.ids[1] == "Flickr/nighttime/0001_train1.jpg"  # the list's backslashes, under Flickr/
    for c, concept in enumerate(NUS_CONCEPTS):
        with open(os.path.join(root, LABELS, f"Labels_{concept}_Train.txt")) as f:
            want = [1 if line.strip() == "1" else -1 for line in f]
        assert ds.targets[:, c].tolist() == want
    test = load_dataset("nuswide", str(tmp_path), "test")
    assert test.ids[0] == "Flickr/airport/0000_test0.jpg" and set(np.unique(test.targets)) <= {-1, 1}
    assert sample_reader("nuswide", ds.root)(ds.ids[0])[:2] == b"\xff\xd8"  # a JPEG


def test_concept_list_in_its_release_folder(tmp_path):
    make_nuswide_tree(str(tmp_path), n=3, concept_dir="ConceptsList")
    assert load_dataset("nuswide", str(tmp_path), "test").classes == list(NUS_CONCEPTS)


def _break(root, what):
    if what == "list":
        os.remove(os.path.join(root, "ImageList", "TrainImagelist.txt"))
    elif what == "concepts":
        os.remove(os.path.join(root, "Concepts81.txt"))
    elif what == "label file":
        os.remove(os.path.join(root, LABELS, "Labels_sunset_Train.txt"))
    elif what == "length":
        with open(os.path.join(root, LABELS, "Labels_rainbow_Train.txt"), "a") as f:
            f.write("0\n")
    elif what == "value":
        with open(os.path.join(root, LABELS, "Labels_rainbow_Train.txt"), "w") as f:
            f.write("0\n2\n0\n0\n")


@pytest.mark.parametrize(
    "what,needle",
    [
        ("list", "TrainImagelist.txt: image list not found"),
        ("concepts", "no concept list (looked for Concepts81.txt"),
        ("label file", "Labels_sunset_Train.txt: label file not found"),
        ("length", "Labels_rainbow_Train.txt: 5 labels for the 4 images"),
        ("value", "Labels_rainbow_Train.txt:2: expected 0 or 1, got '2'"),
    ],
)
def test_bad_trees_name_the_file(tmp_path, what, needle):
    root = make_nuswide_tree(str(tmp_path), n=4)
    _break(root, what)
    with pytest.raises(DatasetError) as err:
        load_dataset("nuswide", root, "train")
    assert needle in str(err.value)


def test_unknown_split(tmp_path):
    make_nuswide_tree(str(tmp_path), n=2)
    with pytest.raises(DatasetError, match="splits train and test, not 'val'"):
        load_dataset("nuswide", str(tmp_path), "val")


def _cli(*args):
    code = "import sys; from cdul.cli.extract import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_extract_records_missing_images_and_refuses_a_bad_tree_in_one_line(tmp_path):
    root = make_nuswide_tree(str(tmp_path / "nus"), n=6, missing=2)
    out = tmp_path / "nus.zarr"
    run = _cli(*extract_args(root, out, "--dataset", "nuswide", "--split", "train", "--snippet", "2", quiet=True))
    assert run.returncode == 3, run.stderr  # 2 of 6 failed: over the default 1%
    g = zarr.open_group(str(out), mode="r")
    errors = dict(zip(g["images/id"][:], g["images/error"][:]))
    assert sorted(k for k, v in errors.items() if v) == [
        "Flickr/airport/0005_train5.jpg",
        "Flickr/military/0004_train4.jpg",
    ]
    assert errors["Flickr/airport/0005_train5.jpg"] == "file not found: Flickr/airport/0005_train5.jpg"
    assert g.attrs["classes"] == list(NUS_CONCEPTS) and "pseudo_label_map" in g.attrs["summary"]
    os.remove(os.path.join(root, LABELS, "Labels_military_Train.txt"))
    bad = _cli(*extract_args(root, tmp_path / "x.zarr", "--dataset", "nuswide", quiet=True))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Labels_military_Train.txt" in bad.stderr
