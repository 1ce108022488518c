"""Plain JPEGs take torchvision's libjpeg-turbo call; every outcome must be the PIL path's:
the same pixels bit for bit, or the same failure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from bad_images import bad_files, exif_rotated, jpeg_bytes
from PIL import Image

import cdul.data.decode as decode
from cdul.data.decode import DecodeError, decode_image


def _pil_path(data: bytes, monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setattr(decode, "_FAST_MAX_PIXELS", 0)  # every file through PIL
        return decode_image(data, **kw)


def _outcome(fn):
    try:
        return fn()
    except DecodeError as exc:
        return str(exc)


def _variants() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.integers(-8, 9, (333, 501, 3)), axis=1).clip(0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (97, 61, 3), dtype=np.uint8)
    out = {}
    for name, arr in (("smooth", smooth), ("noise", noise)):
        im = Image.fromarray(arr)
        for sub in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
            for progressive in (False, True):
                q = int(rng.integers(40, 99))
                out[f"{name}-s{sub}-p{int(progressive)}-q{q}"] = jpeg_bytes(
                    im, subsampling=sub, progressive=progressive, quality=q
                )
        out[f"{name}-gray"] = jpeg_bytes(im.convert("L"))
        out[f"{name}-optimized"] = jpeg_bytes(im, optimize=True)
    for w, h in ((1, 1), (2, 2), (17, 33), (7, 500), (449, 448)):
        out[f"size-{w}x{h}"] = jpeg_bytes(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    return out


@pytest.mark.parametrize("name, data", list(_variants().items()))
def test_plain_jpegs_decode_to_pils_pixels(name, data, monkeypatch):
    im = Image.open(io.BytesIO(data))
    assert decode._jpeg_fast(im, data, True) is not None, "the fast path should take this file"
    fast = decode_image(data)
    ref = _pil_path(data, monkeypatch)
    assert fast.shape == ref.shape and fast.dtype == np.uint8 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("name, data", [(k, v) for k, v in bad_files().items() if v is not None])
def test_every_odd_file_has_the_pil_paths_outcome(name, data, monkeypatch):
    fast = _outcome(lambda: decode_image(data, max_pixels=10**8))
    ref = _outcome(lambda: _pil_path(data, monkeypatch, max_pixels=10**8))
    if isinstance(ref, str):
        assert fast == ref
    else:
        np.testing.assert_array_equal(fast, ref)


def test_what_the_fast_path_leaves_to_pil():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    cmyk, rotated = jpeg_bytes(rgb.convert("CMYK")), exif_rotated()
    assert decode._jpeg_fast(Image.open(io.BytesIO(cmyk)), cmyk, True) is None  # CMYK, Adobe marker
    assert decode._jpeg_fast(Image.open(io.BytesIO(rotated)), rotated, True) is None  # to be turned
    assert decode._jpeg_fast(Image.open(io.BytesIO(rotated)), rotated, False) is not None  # kept as stored
    png = io.BytesIO()
    rgb.save(png, format="PNG")
    assert decode._jpeg_fast(Image.open(png), png.getvalue(), True) is None
