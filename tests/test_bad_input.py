"""Bad images: each either decodes the documented way or is recorded as failed with its
reason, and the run goes on."""
import os

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from PIL import Image

from bad_images import UNDECODABLE, bad_files, exif_rotated, gray16
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


@pytest.mark.parametrize("name,needle", [("truncated", "truncated"), ("zero_bytes", "empty file"),
                                         ("text_file", "cannot identify"), ("bomb", "over the limit")])
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
    args = [str(root), "--out", str(out), "--model", "cdul-tiny-rn", "--pretrained", "none", "--gpus", "cpu",
            "--chunk-len", "4", "-q", "--workers", "1", *extra]
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
