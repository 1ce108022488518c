"""Bad images: each either decodes the documented way or is recorded as failed with its
reason, and the run goes on."""

import os

import numpy as np
import pytest
import zarr
from bad_images import UNDECODABLE, bad_files, exif_rotated, gray16
from click.testing import CliRunner
from extract_runs import extract_args
from PIL import Image

from cdul.cli.extract import main as extract
from cdul.data.decode import DecodeError, decode_image
from cdul.sample import write_voc_layout


def test_exif_orientation_is_applied_by_default():
    data = exif_rotated(60, 40)
    turned = decode_image(data)
    assert turned.shape == (60, 40, 3)
    # stored top half red; turned 90 degrees clockwise, the red half is on the right
    assert turned[:, -5:, 0].mean() > 200 and turned[:, :5, 2].mean() > 200
    assert decode_image(data, exif=False).shape == (40, 60, 3)


def test_sixteen_bit_is_scaled_not_clipped():
    data, values = gray16()
    out = decode_image(data)
    np.testing.assert_array_equal(out[..., 0], (values >> 8).astype(np.uint8))
    assert out.max() == 255 and len(np.unique(out)) > 200


@pytest.mark.parametrize(
    "name,needle",
    [
        ("truncated", "truncated"),
        ("zero_bytes", "empty file"),
        ("text_file", "cannot identify"),
        ("bomb", "over the limit"),
    ],
)
def test_undecodable_files_raise_with_a_reason(name, needle):
    with pytest.raises(DecodeError, match=needle):
        decode_image(bad_files()[name])


@pytest.mark.parametrize("name", ["cmyk", "palette", "rgba", "gray", "one_pixel", "very_tall"])
def test_odd_modes_become_rgb(name):
    out = decode_image(bad_files()[name])
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.writeable


def _bad_voc(root):
    files = bad_files()
    base = write_voc_layout(str(root), {name: (Image.new("RGB", (4, 4)), []) for name in files})
    for name, data in files.items():
        path = os.path.join(base, "JPEGImages", f"{name}.jpg")
        if data is None:
            os.remove(path)
        else:
            with open(path, "wb") as f:
                f.write(data)
    return files


def _run(root, out, *extra):
    args = extract_args(root, out, *extra, chunk_len=4, quiet=True, workers=1)
    return CliRunner().invoke(extract, args, catch_exceptions=False)


def test_a_run_records_failures_and_goes_on(tmp_path):
    files = _bad_voc(tmp_path)
    result = _run(tmp_path, tmp_path / "s.zarr")
    # 5 of 15 failed: above the default 1% limit, so the command says so with status 3
    assert result.exit_code == 3, result.output
    assert "5 of 15 images failed" in result.output and "--max-failures" in result.output
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    ids = [os.path.basename(str(i))[:-4] for i in g["images/id"][:]]
    status = dict(zip(ids, g["images/status"][:]))
    errors = dict(zip(ids, g["images/error"][:]))
    for name in files:
        if name in UNDECODABLE:
            assert status[name] == 2 and errors[name], name
            assert np.isnan(g["sim/global"][ids.index(name)]).all()
        else:
            assert status[name] == 1 and errors[name] == "", (name, errors[name])
    assert "file not found" in errors["missing"] and "over the limit" in errors["bomb"]
    hw = dict(zip(ids, map(tuple, g["images/hw"][:])))
    assert hw["exif_rotated"] == (60, 40) and hw["very_tall"] == (100_000, 2) and hw["one_pixel"] == (1, 1)
    assert g.attrs["summary"]["failed"] == 5 and g.attrs["complete"] is True
    assert set(g["images/status"].attrs["failures"]) == {f"JPEGImages/{n}.jpg" for n in UNDECODABLE}
    assert "truncated" in result.output  # the summary lists the failures
    # a looser limit accepts the same store (nothing is re-extracted)
    again = _run(tmp_path, tmp_path / "s.zarr", "--max-failures", "40%")
    assert again.exit_code == 0, again.output


def _voc_with_escapes(tmp_path):
    """A VOC split whose lines lead outside the root: by '..' and by a symbolic link."""
    base = write_voc_layout(str(tmp_path), {"good": (Image.new("RGB", (8, 8), "red"), [])})
    main = os.path.join(base, "ImageSets", "Main")
    for name in os.listdir(main):
        if name != "train.txt":
            os.remove(os.path.join(main, name))  # no ground truth: the split list alone
    secret = tmp_path / "VOCdevkit" / "outside" / "secret.jpg"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8), "blue").save(secret)
    os.symlink(secret, os.path.join(base, "JPEGImages", "link.jpg"))
    with open(os.path.join(main, "train.txt"), "w") as f:
        f.write("good\nlink\n../../outside/secret\n")
    return base


def _status(out):
    g = zarr.open_group(str(out), mode="r")
    return {str(i): (int(s), str(e)) for i, s, e in zip(g["images/id"][:], g["images/status"][:], g["images/error"][:])}


def test_paths_outside_the_root_are_recorded_as_failed(tmp_path):
    _voc_with_escapes(tmp_path)
    r = _run(tmp_path, tmp_path / "s.zarr", "--max-failures", "100%")
    assert r.exit_code == 0, r.output
    status = _status(tmp_path / "s.zarr")
    assert status["JPEGImages/good.jpg"] == (1, "")
    assert status["JPEGImages/link.jpg"][0] == 2 and "--follow-symlinks" in status["JPEGImages/link.jpg"][1]
    escaped = status["JPEGImages/../../outside/secret.jpg"]
    assert escaped[0] == 2 and "leaves the dataset root" in escaped[1]
    r = _run(tmp_path, tmp_path / "f.zarr", "--max-failures", "100%", "--follow-symlinks")
    status = _status(tmp_path / "f.zarr")
    assert status["JPEGImages/link.jpg"] == (1, "") and status["JPEGImages/../../outside/secret.jpg"][0] == 2


def test_the_trainer_reads_no_image_outside_the_root(tmp_path, monkeypatch):
    from cdul.data import fs
    from cdul.trainer.images import ImageSet

    base = _voc_with_escapes(tmp_path)
    images = ImageSet(base, 8)
    monkeypatch.setenv(fs.FOLLOW_SYMLINKS, "0")
    assert [images[(i, f"JPEGImages/{n}.jpg")][2] for i, n in enumerate(["good", "link", "../../outside/secret"])] == [
        True,
        False,
        False,
    ]
    fs.follow_symlinks(True)
    assert images[(1, "JPEGImages/link.jpg")][2]


def test_a_file_name_that_is_not_utf8_is_recorded_and_read(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "plain.png")
    Image.new("RGB", (8, 8), "blue").save(os.path.join(os.fsencode(root), b"caf\xe9.png"), format="PNG")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    r = _run(root, tmp_path / "s.zarr", "--dataset", "folder", "--classes", str(tmp_path / "classes.txt"))
    assert r.exit_code == 0, r.output
    assert _status(tmp_path / "s.zarr") == {"caf\\xe9.png": (1, ""), "plain.png": (1, "")}


@pytest.mark.parametrize("which", ["split", "csv", "classes"])
def test_a_list_file_that_is_not_utf8_is_one_line(tmp_path, which):
    base = write_voc_layout(str(tmp_path), {"good": (Image.new("RGB", (8, 8)), [])})
    bad = b"good\n\xff\xfe odd\n"
    extra = []
    if which == "split":
        path = os.path.join(base, "ImageSets", "Main", "train.txt")
    elif which == "csv":
        path, extra = os.path.join(base, "labels.csv"), ["--dataset", "folder", "--classes", str(tmp_path / "c.txt")]
        bad = b"path,labels\nJPEGImages/good.jpg,\xe9t\xe9\n"
        (tmp_path / "c.txt").write_text("cat\n")
    else:
        path, extra = str(tmp_path / "c.txt"), ["--dataset", "folder", "--classes", str(tmp_path / "c.txt")]
    with open(path, "wb") as f:
        f.write(bad)
    root = base if which != "split" else tmp_path
    result = CliRunner().invoke(extract, [str(root), "--out", str(tmp_path / "s.zarr"), *extra], catch_exceptions=False)
    assert result.exit_code == 1 and f"{path}:2: not UTF-8" in result.output, result.output
    assert not os.path.exists(tmp_path / "s.zarr")
