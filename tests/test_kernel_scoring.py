"""The fused Triton scorer against the plain-torch reference (``score_segments_torch``).

On CPU the kernels run under ``TRITON_INTERPRET=1`` (set by conftest before triton is
imported), so shapes stay tiny; block-size overrides force the multi-block paths anyway:
several class blocks (online softmax), class blocks sliced across programs, several row
blocks per image, an image's row blocks dealt to several programs (atomic max / min),
several images per program (row blocks spanning images), and a D loop with a ragged tail.
"""

import sys

import pytest
import torch

from cdul.kernels import scoring
from cdul.kernels.scoring import score_segments, score_segments_torch

triton_scoring = pytest.importorskip("cdul.kernels.scoring.fused")
score_segments_triton = triton_scoring.score_segments_triton

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
S = 100.0  # CLIP's logit scale
# The scores are fp32 in both paths (16-bit products are exact in fp32), so fp16 inputs keep
# the fp32 tolerance; the fp16 tile output is compared to within about one fp16 ulp.
DTYPES = [(torch.float32, 3e-5, 1e-4), (torch.float16, 3e-5, 1e-4)]
TILE_TOL = (1e-3, 2e-3)

# (tiles per image, C, D, block overrides)
SHAPES = [
    ([0], 1, 16, None),  # one class: every probability is 1
    ([0], 20, 32, None),
    ([1], 3, 16, None),
    ([2, 0, 9], 17, 40, None),  # D not a multiple of a block
    ([9, 9, 9, 9], 20, 64, None),
    ([40], 20, 32, {"seg_block_m": 16}),  # three row blocks in one image
    ([40, 0, 1], 17, 40, {"block_n": 16, "seg_block_m": 16, "block_m": 16, "block_k": 16}),
    ([9, 2, 40, 0], 130, 32, {"block_n": 64}),  # two-pass, three class blocks
    ([40, 9], 130, 24, {"block_n": 16, "block_m": 16, "block_k": 16}),  # nine class blocks
    ([40, 9, 0], 130, 24, {"block_n": 16, "block_m": 16, "csplit": 4}),  # split row statistics
    ([40, 1, 9], 20, 16, {"seg_block_m": 16, "split": 3}),  # row blocks dealt to 3 programs
    ([40, 0, 3], 130, 16, {"block_n": 64, "seg_block_m": 16, "split": 2}),
    ([0, 0, 0], 130, 16, None),  # fused at 256 classes per block, no tiles anywhere
    # several images per program: row blocks span images and images span row blocks
    ([9, 2, 40, 0, 1, 0, 3], 20, 16, {"group": 3, "seg_block_m": 16}),
    ([2, 0, 1, 9, 0, 13, 5, 1], 130, 16, {"group": 4, "seg_block_m": 16, "block_n": 64}),
    ([0, 0, 0, 0, 0], 17, 16, {"group": 2}),
    ([1, 5, 0, 14], 3, 24, {"group": 4, "seg_block_m": 16, "fused": False}),
    ([9, 9], 3, 16, {"fused": False}),  # two-pass with a single class block
]


def _ids(shape):
    tiles, c, d, blocks = shape
    return f"t{'-'.join(map(str, tiles))}_C{c}_D{d}" + (
        "_" + "-".join(f"{k}{v}" for k, v in blocks.items()) if blocks else ""
    )


def make_inputs(tiles, c, d, dtype, seed, device=DEVICE, offsets_dtype=torch.int64):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor([1 + t for t in tiles])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(offsets_dtype)
    emb = torch.randn(int(offsets[-1]), d, generator=gen)
    text = torch.randn(c, d, generator=gen)
    return emb.to(device, dtype), offsets.to(device), text.to(device, dtype)


def assert_close(name, got, want, atol, rtol):
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    got, want = got.double(), want.double()
    excess = (got - want).abs() - (atol + rtol * want.abs())
    if bool((excess > 0).any()) or bool(got.isnan().any()):
        flat = int(torch.nan_to_num(excess, nan=float("inf")).argmax())
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
        n_bad = int((excess > 0).sum())
        raise AssertionError(
            f"{name}: {n_bad} of {got.numel()} entries off; worst at {idx}: "
            f"got {got[idx].item():.8g}, want {want[idx].item():.8g} "
            f"(atol {atol}, rtol {rtol})"
        )


def compare(got, want, atol, rtol):
    for name in ("global_", "alpha", "beta"):
        g = getattr(got, name)
        assert g.dtype == torch.float32, f"{name} is {g.dtype}"
        assert_close(name, g, getattr(want, name), atol, rtol)
    if want.tiles is None:
        assert got.tiles is None
    else:
        assert got.tiles.dtype == torch.float16
        assert_close("tiles", got.tiles, want.tiles, *TILE_TOL)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_matches_reference(shape, dtype, atol, rtol):
    tiles, c, d, blocks = shape
    emb, offsets, text = make_inputs(tiles, c, d, dtype, seed=len(tiles) * 1000 + c * 10 + d)
    got = score_segments_triton(emb, offsets, text, S, keep_tiles=True, blocks=blocks)
    compare(got, score_segments_torch(emb, offsets, text, S, keep_tiles=True), atol, rtol)


@pytest.mark.parametrize("seed", range(4))
def test_default_choices_random_segments(seed):
    """The launcher's own block choices (group, csplit, fused) on random segment lengths."""
    gen = torch.Generator().manual_seed(100 + seed)
    c_range = ((1, 257), (257, 700))[seed // 2]  # one class block (fused) or several
    b, c, d = (int(torch.randint(lo, hi, (1,), generator=gen)) for lo, hi in ((2, 40), c_range, (8, 70)))
    tiles = torch.randint(0, 14, (b,), generator=gen)
    tiles[int(torch.randint(0, b, (1,), generator=gen))] = 60  # one long segment
    dtype = (torch.float32, torch.float16)[seed % 2]
    emb, offsets, text = make_inputs(tiles.tolist(), c, d, dtype, seed=seed)
    got = score_segments_triton(emb, offsets, text, S, keep_tiles=True)
    compare(got, score_segments_torch(emb, offsets, text, S, keep_tiles=True), 3e-5, 1e-4)


@pytest.mark.parametrize("keep_tiles", [False, True])
def test_keep_tiles_layout(keep_tiles):
    emb, offsets, text = make_inputs([3, 0, 2], 5, 16, torch.float32, seed=1)
    got = score_segments_triton(emb, offsets, text, S, keep_tiles=keep_tiles)
    if not keep_tiles:
        assert got.tiles is None
        return
    assert got.tiles.shape == (emb.shape[0] - 3, 5)
    # tile rows in segment order: rows 1-3 of image 0, then rows 1-2 of image 2
    rows = torch.tensor([1, 2, 3, 6, 7])
    want = torch.softmax(
        S * torch.nn.functional.normalize(emb[rows], dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T, dim=-1
    )
    assert_close("tiles", got.tiles, want.half(), *TILE_TOL)


def test_zero_tiles_fall_back_to_global():
    emb, offsets, text = make_inputs([0, 4, 0], 7, 16, torch.float32, seed=2)
    got = score_segments_triton(emb, offsets, text, S, blocks={"split": 2, "seg_block_m": 16})
    for b in (0, 2):
        assert torch.equal(got.alpha[b], got.global_[b]) and torch.equal(got.beta[b], got.global_[b])
    assert bool((got.alpha[1] >= got.beta[1]).all())


def test_logit_scale_multiplies():
    """A near one-hot similarity must give a confident S_g (a divided scale gives ~1/C)."""
    gen = torch.Generator().manual_seed(3)
    text = torch.nn.functional.normalize(torch.randn(20, 32, generator=gen), dim=-1)
    emb = text[[4, 11]] + 0.05 * torch.randn(2, 32, generator=gen)
    emb, text, offsets = emb.to(DEVICE), text.to(DEVICE), torch.tensor([0, 2], device=DEVICE)
    got = score_segments_triton(emb, offsets, text, S)  # one image: a global view and a tile
    assert int(got.global_[0].argmax()) == 4 and float(got.global_[0, 4]) > 0.9
    assert float(got.alpha[0, 11]) > 0.9


def test_inputs_mixed_dtype_strided_int32():
    emb, offsets, text = make_inputs([2, 9, 0], 20, 32, torch.float16, seed=4, offsets_dtype=torch.int32)
    wide = torch.zeros(emb.shape[0], 48, dtype=emb.dtype, device=emb.device)
    wide[:, 8:40] = emb
    emb = wide[:, 8:40]  # row stride 48, unit column stride
    emb[3] = 0  # a zero row normalises to zero, as F.normalize does: uniform probabilities
    got = score_segments_triton(emb, offsets, text.float(), S, keep_tiles=True)
    compare(got, score_segments_torch(emb, offsets, text.float(), S, keep_tiles=True), 3e-5, 1e-4)
    transposed = emb.contiguous().T.contiguous().T  # column stride != 1: copied by the launcher
    got = score_segments_triton(transposed, offsets, text, S)
    compare(got, score_segments_torch(emb, offsets, text, S), 3e-5, 1e-4)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda e, o, t: (e[0], o, t), "2-D"),
        (lambda e, o, t: (e, o, t[:, :8]), "width"),
        (lambda e, o, t: (e, o.float(), t), "int32 or int64"),
        (lambda e, o, t: (e, o[:1], t), "B \\+ 1"),
        (lambda e, o, t: (e, torch.arange(e.shape[0] + 2, device=o.device), t), "B \\+ 1"),
        (lambda e, o, t: (e.double(), o, t), "float16, bfloat16 or float32"),
        (lambda e, o, t: (e, o, t.to(torch.int8)), "float16, bfloat16 or float32"),
        (lambda e, o, t: (e, o, t[:0]), "C >= 1"),
    ],
)
def test_launcher_rejects_bad_inputs(bad, match):
    args = bad(*make_inputs([2, 1], 5, 16, torch.float32, seed=5))
    with pytest.raises(ValueError, match=match):
        score_segments_triton(*args, S)


def test_launcher_rejects_bad_blocks():
    emb, offsets, text = make_inputs([2], 40, 16, torch.float32, seed=6)
    with pytest.raises(ValueError, match="power of two"):
        score_segments_triton(emb, offsets, text, S, blocks={"block_n": 24})
    with pytest.raises(ValueError, match="fused"):
        score_segments_triton(emb, offsets, text, S, blocks={"block_n": 16, "fused": True})
    with pytest.raises(ValueError, match="split == 1 when group > 1"):
        score_segments_triton(emb, offsets, text, S, blocks={"group": 2, "split": 2})
    with pytest.raises(ValueError, match="exceeds"):
        score_segments_triton(emb, offsets, text, S, blocks={"block_n": 16, "fused": False, "csplit": 4})
    with pytest.raises(ValueError, match="unknown"):
        score_segments_triton(emb, offsets, text, S, blocks={"block_q": 16})


def test_dispatch_forced_to_triton(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return score_segments_triton(*args, **kwargs)

    monkeypatch.setattr(triton_scoring, "score_segments_triton", spy)
    monkeypatch.setenv("CDUL_KERNELS", "triton")
    emb, offsets, text = make_inputs([3, 0], 20, 16, torch.float32, seed=7)
    got = score_segments(emb, offsets, text, S, keep_tiles=True)
    assert calls == [1]
    compare(got, score_segments_torch(emb, offsets, text, S, keep_tiles=True), 3e-5, 1e-4)


def test_torch_path_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.delitem(sys.modules, "cdul.kernels.scoring.fused")
    monkeypatch.delattr(sys.modules["cdul.kernels.scoring"], "fused")  # else `from . import` finds it
    assert not scoring._triton_available()
    monkeypatch.setenv("CDUL_KERNELS", "auto")
    emb, offsets, text = make_inputs([3, 0], 20, 16, torch.float32, seed=8)
    got = score_segments(emb, offsets, text, S)
    compare(got, score_segments_torch(emb, offsets, text, S), 0, 0)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_dispatch_backend_argument_and_out(monkeypatch, backend):
    """``backend`` overrides CDUL_KERNELS; ``out`` [B, 3, C] receives S_g, alpha, beta on
    either path and the scores returned are views of it."""
    monkeypatch.setenv("CDUL_KERNELS", "triton" if backend == "torch" else "torch")
    emb, offsets, text = make_inputs([3, 0, 2], 20, 16, torch.float32, seed=9)
    out = torch.full((3, 3, 20), float("nan"))
    got = score_segments(emb, offsets, text, S, keep_tiles=True, backend=backend, out=out)
    want = score_segments_torch(emb, offsets, text, S, keep_tiles=True)
    compare(got, want, 3e-5, 1e-4)
    assert got.global_.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, torch.stack([want.global_, want.alpha, want.beta], 1), atol=3e-5, rtol=1e-4)


# ---- GPU only: bf16 (the interpreter does not do it correctly) and full-size shapes.
# conftest sets TRITON_INTERPRET=1 unless told otherwise: run these with TRITON_INTERPRET=0.
compiled = pytest.mark.skipif(
    torch.cuda.is_available() and triton_scoring._is_interpreted(),
    reason="needs compiled kernels: run with TRITON_INTERPRET=0",
)


@pytest.mark.gpu
@compiled
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_bf16_matches_reference(shape):
    tiles, c, d, blocks = shape
    emb, offsets, text = make_inputs(tiles, c, d, torch.bfloat16, seed=9)
    got = score_segments_triton(emb, offsets, text, S, keep_tiles=True, blocks=blocks)
    compare(got, score_segments_torch(emb, offsets, text, S, keep_tiles=True), 5e-5, 2e-4)


@pytest.mark.gpu
@compiled
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "tiles,c,d,blocks",
    [
        ([1024, 0, 1024, 9], 4096, 1024, None),
        ([9] * 64 + [0, 1, 63], 1000, 512, None),
        ([9] * 300 + [0] * 50, 4096, 512, {"group": 26}),
        ([64] * 8, 80, 1024, None),
        ([1024], 20, 512, None),
        ([1024, 700], 80, 1024, {"split": 5}),
        ([2047, 3], 1023, 768, {"csplit": 3}),
    ],
)
def test_large_shapes(tiles, c, d, blocks, dtype):
    emb, offsets, text = make_inputs(tiles, c, d, dtype, seed=10)
    got = score_segments_triton(emb, offsets, text, S, keep_tiles=True, blocks=blocks)
    compare(got, score_segments_torch(emb, offsets, text, S, keep_tiles=True), 5e-5, 2e-4)
