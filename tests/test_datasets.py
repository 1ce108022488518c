"""Dataset readers: what they return, and one-line errors naming file and line."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from voc_fixtures import make_voc

from cdul.data import DatasetError, load_dataset
from cdul.data.voc import VOC_KEYS


def test_voc_reads_ids_targets_and_readable_names(voc_root):
    ds = load_dataset("voc2012", voc_root, "train")
    assert ds.classes[VOC_KEYS.index("diningtable")] == "dining table"
    assert ds.class_keys == VOC_KEYS and len(ds) == 20
    assert ds.ids[0].startswith("JPEGImages/") and ds.ids[0].endswith(".jpg")
    person = VOC_KEYS.index("person")
    assert ds.targets[ds.ids.index("JPEGImages/camera.jpg"), person] == 0
    assert ds.targets[ds.ids.index("JPEGImages/chelsea.jpg"), VOC_KEYS.index("cat")] == 1
    assert set(np.unique(ds.targets)) <= {-1, 0, 1}
    # the VOC2012 folder itself and the folder above VOCdevkit both work
    assert len(load_dataset("voc2012", os.path.join(voc_root, "VOCdevkit", "VOC2012"), "train")) == 20


def test_voc_without_label_files_has_no_targets(tmp_path):
    base = make_voc(str(tmp_path), photos=False, odd=False, n_generated=3)
    for key in VOC_KEYS:
        os.remove(os.path.join(base, "ImageSets", "Main", f"{key}_train.txt"))
    assert load_dataset("voc2012", str(tmp_path), "train").targets is None


@pytest.mark.parametrize(
    "line,needle", [("gen_0000 7", "expected '<image id> <1|0|-1>'"), ("nosuch 1", "not in the split list")]
)
def test_voc_bad_label_line_names_file_and_line(tmp_path, line, needle):
    base = make_voc(str(tmp_path), photos=False, odd=False, n_generated=3)
    path = os.path.join(base, "ImageSets", "Main", "cat_train.txt")
    with open(path, "a") as f:
        f.write(line + "\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("voc2012", str(tmp_path), "train")
    assert "cat_train.txt:4:" in str(err.value) and needle in str(err.value)


def test_voc_duplicate_id(tmp_path):
    base = make_voc(str(tmp_path), photos=False, odd=False, n_generated=2)
    with open(os.path.join(base, "ImageSets", "Main", "train.txt"), "a") as f:
        f.write("gen_0000\n")
    with pytest.raises(DatasetError, match="listed twice"):
        load_dataset("voc2012", str(tmp_path), "train")


def test_missing_voc_layout(tmp_path):
    with pytest.raises(DatasetError, match="no VOC2012 layout"):
        load_dataset("voc2012", str(tmp_path), "train")


def _coco(tmp_path, data):
    os.makedirs(tmp_path / "annotations", exist_ok=True)
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(data))


def test_coco_targets(tmp_path):
    _coco(
        tmp_path,
        {
            "images": [{"id": 5, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
            "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
            "annotations": [
                {"image_id": 9, "category_id": 18},
                {"image_id": 9, "category_id": 1},
                {"image_id": 5, "category_id": 1},
            ],
        },
    )
    ds = load_dataset("coco2014", str(tmp_path), "val")
    assert ds.classes == ["person", "dog"] and ds.ids == ["val2014/a.jpg", "val2014/b.jpg"]
    np.testing.assert_array_equal(ds.targets, [[1, -1], [1, 1]])


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"images": [], "annotations": []}, "missing key 'categories'"),
        ({"images": [{"id": 1}], "categories": [], "annotations": []}, "images[0]: missing key 'file_name'"),
        (
            {"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], "categories": [], "annotations": []},
            "appears twice",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a"}],
                "categories": [{"id": 3, "name": "x"}],
                "annotations": [{"image_id": 1, "category_id": 4}],
            },
            "category_id 4",
        ),
    ],
)
def test_coco_malformed(tmp_path, data, needle):
    _coco(tmp_path, data)
    with pytest.raises(DatasetError) as err:
        load_dataset("coco2014", str(tmp_path), "val")
    assert "instances_val2014.json" in str(err.value) and needle in str(err.value)


def _folder(tmp_path, csv_text=None, names=("a.jpg", "sub/b.png")):
    for n in names:
        os.makedirs(os.path.dirname(tmp_path / n), exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / n)
    if csv_text is not None:
        (tmp_path / "labels.csv").write_text(csv_text)
    return str(tmp_path)


def test_folder_csv_with_labels(tmp_path):
    ds = load_dataset("folder", _folder(tmp_path, "path,labels\na.jpg,dog;cat\nsub/b.png,\n"), "")
    assert ds.classes == ["cat", "dog"] and ds.ids == ["a.jpg", "sub/b.png"]
    np.testing.assert_array_equal(ds.targets, [[1, 1], [-1, -1]])


def test_folder_scan_needs_class_names(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(DatasetError, match="--classes"):
        load_dataset("folder", root, "")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    ds = load_dataset("folder", root, "", classes=str(tmp_path / "classes.txt"))
    assert ds.ids == ["a.jpg", "sub/b.png"] and ds.targets is None and ds.classes == ["cat", "dog"]


def test_folder_unknown_label_names_the_line(tmp_path):
    root = _folder(tmp_path, "path,labels\na.jpg,cat\nsub/b.png,zebra\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DatasetError, match=r"labels.csv:3: unknown class 'zebra'"):
        load_dataset("folder", root, "", classes=str(tmp_path / "classes.txt"))


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/passwd", "sub/../../x.jpg", "s3://bucket/x.jpg"])
def test_paths_leaving_the_root_are_refused(tmp_path, path):
    root = _folder(tmp_path, f"path,labels\n{path},cat\n")
    with pytest.raises(DatasetError, match="leaves the dataset root"):
        load_dataset("folder", root, "")


def test_a_labelled_split_must_have_targets_for_the_same_classes(voc_root, tmp_path):
    from cdul.data import load_labelled
    from cdul.data.voc import VOC_NAMES

    assert len(load_labelled("voc2012", voc_root, "train", list(VOC_NAMES), limit=3)) == 3
    with pytest.raises(DatasetError, match="are not the classifier's"):
        load_labelled("voc2012", voc_root, "train", list(VOC_NAMES)[::-1])
    base = make_voc(str(tmp_path), photos=False, odd=False, n_generated=2)
    for key in VOC_KEYS:
        os.remove(os.path.join(base, "ImageSets", "Main", f"{key}_train.txt"))
    with pytest.raises(DatasetError, match="no labels to score against"):
        load_labelled("voc2012", str(tmp_path), "train", list(VOC_NAMES))


def test_demo_sample_val_shares_no_image_with_train(tmp_path):
    from cdul.sample import FILLER, PHOTO, build_sample

    sources = build_sample(str(tmp_path))
    train, val = (load_dataset("voc2012", str(tmp_path), split) for split in ("train", "val"))
    assert not set(train.ids) & set(val.ids)
    assert set(sources) == set(train.ids) | set(val.ids)
    photos = {i for i, kind in sources.items() if kind == PHOTO}
    assert {"JPEGImages/chelsea.jpg", "JPEGImages/camera.jpg"} <= photos
    assert all(sources[i] == FILLER for i in sources if "/gen_" in i or "/val_" in i)
    person = val.classes.index("person")
    assert val.targets[list(val.ids).index("JPEGImages/camera.jpg"), person] == 1  # val has a real positive
