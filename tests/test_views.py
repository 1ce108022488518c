"""The tensor preprocess against PIL + torchvision (CLIP's own eval transform), and tiling."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from cdul.extractor.tiling import Tiling
from cdul.extractor.views import ViewMaker, output_geometry

MEAN, STD = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # keeps views in grey levels


def pil_view(arr: np.ndarray, size: int, interpolation=InterpolationMode.BICUBIC) -> np.ndarray:
    im = TF.center_crop(TF.resize(Image.fromarray(arr), size, interpolation=interpolation), size)
    return np.asarray(im, dtype=np.float64).transpose(2, 0, 1)


SIZES = [
    (1, 1),
    (2, 3),
    (3, 500),
    (3, 3),
    (7, 500),
    (500, 7),
    (224, 224),
    (224, 300),
    (300, 224),
    (375, 500),
    (480, 640),
    (1000, 2),
    (33, 17),
    (100000 // 50, 2),
]


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("size,interp", [(224, "bicubic"), (64, "bicubic"), (96, "bilinear")])
def test_global_view_matches_pil(hw, size, interp):
    rng = np.random.default_rng(hash(hw) % 2**32)
    arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    maker = ViewMaker(size, MEAN, STD, interpolation=interp)
    ours = maker.make(torch.from_numpy(arr), None)[0][0].numpy().astype(np.float64)
    mode = InterpolationMode.BICUBIC if interp == "bicubic" else InterpolationMode.BILINEAR
    ref = pil_view(arr, size, mode)
    diff = np.abs(ours - ref)
    # float64 on the CPU: PIL's fixed-point arithmetic reproduced bit for bit
    assert diff.max() == 0, f"worst pixel {np.unravel_index(diff.argmax(), diff.shape)}: {diff.max()}"


@pytest.mark.parametrize("hw", SIZES[:10])
def test_float32_path_is_within_one_level(hw, monkeypatch):
    """The float32 path (GPUs) stays within one grey level of PIL in rare pixels; two where a
    tiny side is upscaled 75 times and a first-pass level is magnified by the second pass."""
    import cdul.extractor.views as views

    monkeypatch.setattr(views, "exact_dtype", lambda device: torch.float32)
    rng = np.random.default_rng(sum(hw))
    arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    ours = views.ViewMaker(224, MEAN, STD).make(torch.from_numpy(arr), None)[0][0].numpy().astype(np.float64)
    diff = np.abs(ours - pil_view(arr, 224))
    assert diff.max() <= (2.0 if min(hw) <= 3 else 1.0) and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("hw", [(512, 512), (300, 451), (7, 500), (90, 120)])
def test_tile_views_match_pil_crops(hw):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    maker = ViewMaker(64, MEAN, STD)
    views, n = maker.make(torch.from_numpy(arr), Tiling.grid(3))
    assert n == 9 and views.shape == (10, 3, 64, 64)
    h, w = hw[0] // 3, hw[1] // 3
    for k in range(9):
        i, j = divmod(k, 3)
        ref = pil_view(arr[i * h : (i + 1) * h, j * w : (j + 1) * w], 64)
        assert np.abs(views[1 + k].numpy() - ref).max() == 0


def test_geometry_follows_torchvision():
    for h, w in [(7, 500), (500, 7), (224, 300), (375, 500), (1, 1)]:
        new_h, new_w, top, left = output_geometry(h, w, 224)
        im = TF.resize(Image.new("RGB", (w, h)), 224)
        assert (new_h, new_w) == (im.height, im.width)
        assert top == round((new_h - 224) / 2.0) and left == round((new_w - 224) / 2.0)


def test_huge_aspect_ratio_costs_a_crop_not_the_resize():
    # 100000 x 2 would be 224 x 11.2M pixels if resized before cropping
    arr = np.zeros((100000, 2, 3), dtype=np.uint8)
    views, n = ViewMaker(224, MEAN, STD).make(torch.from_numpy(arr), Tiling.grid(3))
    assert views.shape == (1, 3, 224, 224) and n == 0


class TestTiling:
    def test_grid_boxes_drop_the_remainder(self):
        boxes = Tiling.grid(3).boxes(10, 11)
        assert boxes == [(i * 3, j * 3, 3, 3) for i in range(3) for j in range(3)]

    def test_pixel_boxes(self):
        t = Tiling.pixel(4)
        assert t.layout(9, 13) == (2, 3, 4, 4)
        assert t.boxes(9, 13)[-1] == (4, 8, 4, 4)

    @pytest.mark.parametrize(
        "tiling,hw",
        [
            (Tiling.grid(3), (2, 100)),
            (Tiling.grid(3), (100, 2)),
            (Tiling.pixel(64), (63, 500)),
            (Tiling.grid(8), (1, 1)),
        ],
    )
    def test_too_small_has_no_tiles(self, tiling, hw):
        assert tiling.count(*hw) == 0 and tiling.boxes(*hw) == []

    def test_invalid(self):
        with pytest.raises(ValueError):
            Tiling.grid(0)
        with pytest.raises(ValueError):
            Tiling("diagonal", 3)


@pytest.mark.parametrize("tiling", [None, Tiling.grid(3)])
def test_strips_give_the_same_views(monkeypatch, tiling):
    """A resize done in strips of rows (huge images) equals the one-pass resize."""
    import cdul.extractor.views as views

    rng = np.random.default_rng(7)
    arr = torch.from_numpy(rng.integers(0, 256, (301, 170, 3), dtype=np.uint8))
    whole = views.ViewMaker(32, MEAN, STD).make(arr, tiling)[0]
    monkeypatch.setattr(views, "STRIP_BYTES", 3 * 170 * 8 * 7)  # 7 rows a strip, tiles one by one
    strips = views.ViewMaker(32, MEAN, STD).make(arr, tiling)[0]
    assert torch.equal(whole, strips)
