"""The batch view kernel (kernels/resample, run by Triton's interpreter here) against the
matrix path (ViewMaker, float64: PIL bit for bit) and a plain-torch reading of the same tables."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from cdul.extractor.packing import ViewSpec, pack
from cdul.extractor.tiling import Tiling
from cdul.extractor.views import ViewMaker
from cdul.kernels import resample as op
from cdul.kernels.resample.fused import resample_views
from cdul.kernels.resample.reference import resample_views_torch

LEVELS = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # views in grey levels
CLIP_NORM = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
ODD_SIZES = [(1, 1), (2, 2), (7, 500), (449, 448), (33, 17)]


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


def _kernel(batch, spec, mean, std, dtype=torch.float32, channels_last=False):
    v = batch.n_view_rows
    out = torch.full((v, 3, spec.size, spec.size), float("nan"), dtype=dtype)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    scratch = torch.empty(batch.scratch_bytes, dtype=torch.uint8)
    mul = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).tolist()
    add = (-torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)).tolist()
    resample_views(batch.data, batch.views_off, batch.taps_off, v, batch.max_rows, scratch, out, mul, add)
    return out, mul, add


def _matrix_path(images, spec, tiling, mean, std):
    maker = ViewMaker(spec.size, mean, std, interpolation=spec.interpolation, resize_mode=spec.resize_mode)
    return torch.cat([maker.make(torch.from_numpy(a), tiling)[0] for a in images])


def _worst(a: torch.Tensor, b: torch.Tensor) -> str:
    d = (a.float() - b.float()).abs()
    i = np.unravel_index(int(d.argmax()), d.shape)
    return f"worst at {i}: {a[i].item()} vs {b[i].item()}"


@pytest.mark.parametrize(
    "tiling", [Tiling.grid(3), Tiling.grid(1), Tiling.pixel(96), None], ids=["grid3", "grid1", "px96", "global"]
)
def test_levels_equal_the_matrix_path_on_odd_sizes(tiling):
    spec = ViewSpec(32)
    images = _images(ODD_SIZES)
    batch = pack(0, range(len(images)), list(images), spec, tiling)
    out, _, _ = _kernel(batch, spec, *LEVELS)
    ref = _matrix_path(images, spec, tiling, *LEVELS)
    assert out.shape == ref.shape
    assert torch.equal(out, ref), _worst(out, ref)


@pytest.mark.parametrize(
    "spec",
    [ViewSpec(24, "bilinear"), ViewSpec(20, "bicubic", "squash"), ViewSpec(64)],
    ids=["bilinear", "squash", "r64"],
)
def test_interpolations_and_resize_modes(spec):
    images = _images([(40, 57), (3, 90), (64, 64), (120, 31)], seed=1)
    batch = pack(0, range(4), list(images), spec, Tiling.grid(2))
    out, _, _ = _kernel(batch, spec, *LEVELS)
    ref = _matrix_path(images, spec, Tiling.grid(2), *LEVELS)
    assert torch.equal(out, ref), _worst(out, ref)


def test_normalised_fp16_channels_last_output():
    """CLIP's mean and std, written as fp16 into a channels_last buffer: the encoder's input."""
    spec = ViewSpec(32)
    images = _images([(50, 70), (9, 9), (31, 200)], seed=2)
    batch = pack(0, range(3), list(images), spec, Tiling.grid(3))
    out, mul, add = _kernel(batch, spec, *CLIP_NORM, dtype=torch.float16, channels_last=True)
    ref = _matrix_path(images, spec, Tiling.grid(3), *CLIP_NORM)
    torch.testing.assert_close(out.float(), ref.half().float(), atol=0, rtol=0)
    plain = resample_views_torch(batch.data, batch.views_off, batch.taps_off, batch.n_view_rows, 32, mul, add)
    torch.testing.assert_close(out.float(), plain.half().float(), atol=0, rtol=0)


def test_failed_images_have_no_views_and_offsets_skip_them():
    spec = ViewSpec(16)
    images = _images([(20, 20), (30, 10)])
    batch = pack(
        3,
        [10, 11, 12, 13],
        [images[0], "cannot decode image: broken", images[1], "file not found: x"],
        spec,
        Tiling.grid(3),
    )
    assert batch.n_views.tolist() == [10, 0, 10, 0] and batch.n_ok == 2 and batch.chunk == 3
    assert batch.errors[1].startswith("cannot decode") and batch.hw[1].tolist() == [0, 0]
    offsets = batch.data[batch.offsets_off : batch.offsets_off + 24].view(torch.int64).tolist()
    assert offsets == [0, 10, 20]
    out, _, _ = _kernel(batch, spec, *LEVELS)
    assert torch.equal(out, _matrix_path(images, spec, Tiling.grid(3), *LEVELS))


def test_tiles_of_a_grid_share_one_taps_table():
    spec = ViewSpec(16)
    batch = pack(0, [0], _images([(90, 60)]), spec, Tiling.grid(3))
    table = batch.data[: batch.offsets_off].view(torch.int64).view(10, -1)
    assert len(set(table[1:, 5].tolist())) == 1 and table[0, 5] != table[1, 5]


def test_argument_checks():
    spec = ViewSpec(8)
    batch = pack(0, [0], _images([(9, 9)]), spec, None)
    scratch = torch.empty(batch.scratch_bytes, dtype=torch.uint8)
    with pytest.raises(ValueError, match="out must be"):
        resample_views(
            batch.data, 0, batch.taps_off, 1, batch.max_rows, scratch, torch.empty(1, 3, 8, 9), [1] * 3, [0] * 3
        )
    with pytest.raises(ValueError, match="uint8"):
        resample_views(batch.data.float(), 0, batch.taps_off, 1, 1, scratch, torch.empty(1, 3, 8, 8), [1] * 3, [0] * 3)
    with pytest.raises(ValueError, match="aligned"):
        resample_views(batch.data, 4, batch.taps_off, 1, 1, scratch, torch.empty(1, 3, 8, 8), [1] * 3, [0] * 3)


def _dispatch(batch, spec, **kw):
    out = torch.full((batch.n_view_rows + 2, 3, spec.size, spec.size), float("nan"))
    scratch = torch.empty(batch.scratch_bytes, dtype=torch.uint8)
    v = batch.n_view_rows
    got = op.resample_views(batch.data, batch.views_off, batch.taps_off, v, batch.max_rows, scratch, out, *_LV, **kw)
    assert got.data_ptr() == out.data_ptr() and got.shape[0] == v and bool(out[v:].isnan().all())
    return got


_LV = [1.0] * 3, [0.0] * 3  # mul, add of LEVELS


def test_dispatcher_picks_by_device_and_backend(monkeypatch):
    """On CPU tensors ``auto`` runs the reference; ``triton`` (argument or CDUL_KERNELS) runs
    the kernel; all give the matrix path's levels."""
    calls = []
    monkeypatch.setattr(op, "resample_views_torch", lambda *a: calls.append("torch") or resample_views_torch(*a))
    import cdul.kernels.resample.fused as fused

    monkeypatch.setattr(fused, "resample_views", lambda *a: calls.append("triton") or resample_views(*a))
    spec, images = ViewSpec(16), _images([(30, 41), (5, 60)], seed=6)
    batch = pack(0, range(2), list(images), spec, Tiling.grid(2))
    ref = _matrix_path(images, spec, Tiling.grid(2), *LEVELS)
    monkeypatch.setenv("CDUL_KERNELS", "auto")
    assert torch.equal(_dispatch(batch, spec), ref) and calls == ["torch"]
    assert torch.equal(_dispatch(batch, spec, backend="triton"), ref) and calls[-1] == "triton"
    monkeypatch.setenv("CDUL_KERNELS", "triton")
    assert torch.equal(_dispatch(batch, spec), ref) and calls[-1] == "triton"
    assert torch.equal(_dispatch(batch, spec, backend="torch"), ref) and calls[-1] == "torch"
    monkeypatch.setenv("CDUL_KERNELS", "cuda")
    with pytest.raises(ValueError, match="CDUL_KERNELS"):
        _dispatch(batch, spec)


def test_tables_and_dispatcher_import_without_triton():
    """The loader's workers and the CPU path load the op's tables and dispatcher, never triton."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import cdul.extractor.packing, cdul.kernels.resample as op, cdul.kernels.resample.tables\n"
        "assert not op._triton_available()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("size", [224, 448])
def test_gpu_levels_equal_pil_on_real_sizes(size):
    """On the GPU: VOC-sized and odd images, PIL's levels exactly, large batches."""
    spec = ViewSpec(size)
    images = _images([(375, 500), (500, 333), (3000, 4000), (1, 1), (7, 500), (449, 448), (2, 2)], seed=4)
    batch = pack(0, range(len(images)), list(images), spec, Tiling.grid(3))
    dev = torch.device("cuda")
    batch.data = batch.data.to(dev)
    out = torch.empty(batch.n_view_rows, 3, size, size, device=dev)
    scratch = torch.empty(batch.scratch_bytes, dtype=torch.uint8, device=dev)
    resample_views(
        batch.data,
        batch.views_off,
        batch.taps_off,
        batch.n_view_rows,
        batch.max_rows,
        scratch,
        out,
        [1.0] * 3,
        [0.0] * 3,
    )
    ref = _matrix_path(images, spec, Tiling.grid(3), *LEVELS)
    assert torch.equal(out.cpu(), ref), _worst(out.cpu(), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_normalised_half_outputs(dtype):
    spec = ViewSpec(224)
    images = _images([(375, 500), (90, 1200)], seed=5)
    batch = pack(0, range(2), list(images), spec, Tiling.grid(3))
    batch.data = batch.data.cuda()
    v = batch.n_view_rows
    out = torch.empty(v, 3, 224, 224, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    scratch = torch.empty(batch.scratch_bytes, dtype=torch.uint8, device="cuda")
    mean, std = CLIP_NORM
    mul = (1.0 / (255.0 * torch.tensor(std))).tolist()
    add = (-torch.tensor(mean) / torch.tensor(std)).tolist()
    resample_views(batch.data, batch.views_off, batch.taps_off, v, batch.max_rows, scratch, out, mul, add)
    ref = _matrix_path(images, spec, Tiling.grid(3), *CLIP_NORM).to(dtype)
    # the multiply-add may be fused on the GPU: at most one unit in the last place of the half type
    torch.testing.assert_close(
        out.cpu().float(), ref.float(), atol=0, rtol=2**-7 if dtype == torch.bfloat16 else 2**-10
    )
