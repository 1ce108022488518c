"""--dataset folder reads Hugging Face imagefolder metadata (metadata.csv / metadata.jsonl with
a file_name column, labels as a list or ';'-separated), beside cdul's labels.csv."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdul.data import DatasetError, load_folder


def _write(root, name, text):
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def _labels(ds):
    return {i: sorted(ds.classes[j] for j in np.flatnonzero(row > 0)) for i, row in zip(ds.ids, ds.targets)}


EXPECTED = {"a.jpg": ["cat", "dog"], "sub/b.png": ["dog"], "c.jpg": []}


def test_metadata_csv(tmp_path):
    _write(tmp_path, "metadata.csv", "file_name,labels,caption\na.jpg,cat;dog,x\nsub/b.png,dog,y\nc.jpg,,z\n")
    ds = load_folder(str(tmp_path), "train")
    assert ds.ids == list(EXPECTED) and ds.classes == ["cat", "dog"] and _labels(ds) == EXPECTED


def test_metadata_jsonl_lists_or_strings(tmp_path):
    rows = [{"file_name": "a.jpg", "labels": ["cat", "dog"]}, {"file_name": "sub/b.png", "labels": "dog"}]
    rows.append({"file_name": "c.jpg", "labels": []})
    _write(tmp_path, "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    ds = load_folder(str(tmp_path), "train")
    assert _labels(ds) == EXPECTED


def test_per_split_folders_and_unlabelled(tmp_path):
    _write(tmp_path, "train/metadata.csv", "file_name\nx.jpg\ny.jpg\n")
    _write(tmp_path, "validation/metadata.jsonl", '{"file_name": "z.jpg", "labels": ["cat"]}\n')
    train = load_folder(str(tmp_path), "train", classes=["cat", "dog"])
    assert train.ids == ["train/x.jpg", "train/y.jpg"] and train.targets is None
    val = load_folder(str(tmp_path), "validation")
    assert val.ids == ["validation/z.jpg"] and val.classes == ["cat"]


def test_labels_csv_comes_first(tmp_path):
    _write(tmp_path, "metadata.csv", "file_name,labels\na.jpg,cat\n")
    _write(tmp_path, "labels.csv", "path,labels\nb.jpg,dog\n")
    assert load_folder(str(tmp_path)).ids == ["b.jpg"]


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("metadata.csv", "path,labels\na.jpg,cat\n", "metadata.csv:1: expected a header row with a file_name column"),
        ("metadata.jsonl", '{"labels": ["cat"]}\n', "metadata.jsonl:1: no file_name"),
        ("metadata.jsonl", '{"file_name": "a.jpg", "labels": 3}\n', "metadata.jsonl:1: labels must be a list"),
        ("metadata.jsonl", "{oops\n", "metadata.jsonl:1: not JSON"),
        ("metadata.csv", "file_name,labels\n../a.jpg,cat\n", "metadata.csv:2"),
        ("metadata.csv", "file_name,labels\na.jpg,cat\na.jpg,dog\n", "listed twice"),
    ],
)
def test_bad_metadata_is_one_line(tmp_path, name, text, message):
    _write(tmp_path, name, text)
    with pytest.raises(DatasetError) as err:
        load_folder(str(tmp_path), "train")
    assert message in str(err.value) and "\n" not in str(err.value)
