"""The extraction stages one by one, then the host work per image of the whole batch path."""

import os

import numpy as np
import pytest
import torch

from cdul.data import sample_reader
from cdul.extractor.config import ExtractConfig
from cdul.extractor.encoder import Encoder
from cdul.extractor.local import local_mode
from cdul.extractor.packing import ViewSpec, pack
from cdul.extractor.reader import BatchReader, BatchSampler
from cdul.extractor.stages import ChunkResults, ChunkWriter, ExactViews, KernelViews, Scorer, images_per_batch
from cdul.extractor.tiling import Tiling
from cdul.extractor.views import ViewMaker
from cdul.store import layout

CPU = torch.device("cpu")


def _batch(sizes, rows=None, failed=(), tiling=None, size=16, seed=0):
    tiling = tiling or Tiling.grid(3)
    rng = np.random.default_rng(seed)
    decoded = [
        f"broken {i}" if i in failed else rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for i, hw in enumerate(sizes)
    ]
    return pack(0, rows if rows is not None else range(len(sizes)), decoded, ViewSpec(size), tiling)


def test_batches_are_whole_images_of_one_chunk():
    asked = []

    def ids_of(k):  # chunk k's ids, read once when its first batch is due
        asked.append(k)
        return {2: [f"a{i}" for i in range(10)], 5: ["x", "y", "z"]}[k]

    s = BatchSampler([2, 5], [(20, 30), (50, 53)], 4, ids_of)
    got = list(s)
    assert [g[:3] for g in got] == [(2, 20, 24), (2, 24, 28), (2, 28, 30), (5, 50, 53)] and len(s) == 4
    assert got[1][3] == ("a4", "a5", "a6", "a7") and got[3][3] == ("x", "y", "z") and asked == [2, 5]
    # the cut of a chunk does not depend on which other chunks the worker has
    assert [g[:3] for g in BatchSampler([5], [(50, 53)], 4, ids_of)] == [(5, 50, 53)]
    assert images_per_batch(Tiling.grid(3), 64) == 6 and images_per_batch(Tiling.grid(3), 8) == 4
    assert images_per_batch(Tiling.grid(1), 64) == 64 and images_per_batch(Tiling.pixel(32), 64) == 4


def test_reader_packs_a_batch_and_records_failures(tmp_path):
    from PIL import Image

    from cdul.data import load_dataset
    from cdul.extractor.config import ExtractConfig, WorkerConfig
    from cdul.extractor.store_life import prepare_store
    from cdul.sample import write_voc_layout

    items = {"a": (Image.new("RGB", (30, 20), (255, 0, 0)), []), "b": (Image.new("RGB", (9, 40)), [])}
    root = write_voc_layout(str(tmp_path / "voc"), items)  # .../VOCdevkit/VOC2012
    os.remove(os.path.join(root, "JPEGImages", "b.jpg"))
    data = load_dataset("voc2012", root, "train")
    cfg = WorkerConfig(str(tmp_path / "s.zarr"), data.root, ExtractConfig("m", "none"))
    store = prepare_store(cfg.store, cfg, data, chunk_len=8, overwrite=False)
    ids = tuple(str(i) for i in store.chunk(0, layout.IDS)[layout.IDS])
    batch = BatchReader(sample_reader(data.kind, data.root), ViewSpec(16), Tiling.grid(2))[(0, 0, store.n, ids)]
    assert batch.n_views.tolist() == [5, 0] and batch.hw[0].tolist() == [20, 30]
    assert "not found" in batch.errors[1]
    img = batch.image(0)
    assert img.shape == (20, 30, 3) and int(img[..., 0].float().mean()) > 250


def test_kernel_and_exact_views_agree_and_pad():
    batch = _batch([(40, 30), (5, 70)], failed=(), size=16)
    maker = ViewMaker(16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    exact = ExactViews(maker, Tiling.grid(3))(batch)
    kernel = KernelViews(16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), CPU, torch.float32)(batch)
    assert exact.shape == (20, 3, 16, 16) and torch.equal(kernel, exact)
    padded = KernelViews(16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), CPU, torch.float32, min_rows=32)(batch)
    assert padded.shape[0] == 32 and torch.equal(padded[:20], exact) and torch.isfinite(padded).all()


class _Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16 * 16, 8)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.proj(x.flatten(1))


def test_encoder_slices_long_batches_and_pads_for_a_fixed_shape():
    x = torch.randn(23, 3, 16, 16)
    tower = _Tower()
    whole = tower(x).detach()
    tower.calls.clear()
    out = Encoder(tower, 10, CPU, "fp32")(x, 23)
    assert tower.calls == [10, 10, 3] and torch.allclose(out, whole, atol=1e-6)
    tower.calls.clear()
    out = Encoder(tower, 10, CPU, "fp32", fixed_shape=True)(x, 23)
    assert tower.calls == [10, 10, 10] and out.shape == (23, 8) and torch.allclose(out, whole, atol=1e-6)


@pytest.mark.parametrize("keep", [False, True])
def test_scorer_triton_and_torch_fill_the_same_rows(keep):
    pytest.importorskip("triton")
    batch = _batch([(40, 30), (5, 5), (2, 2)], failed=(1,), tiling=Tiling.grid(3))
    v = batch.n_view_rows
    g = torch.Generator().manual_seed(0)
    emb, text = torch.randn(v, 8, generator=g), torch.randn(5, 8, generator=g)
    got = {}
    for triton in (True, False):
        scorer = Scorer(text, 100.0, triton=triton, keep_tiles=keep, keep_embeddings=keep)
        host = scorer(emb, batch)
        specs = layout.result_specs(5, tiles_max=9 if keep else 0, embed_dim=8 if keep else 0)
        chunk = ChunkResults(0, 3, specs, local_mode("tiles").chunk_part(ExtractConfig("m", "none"), 5))
        tiles = chunk.put(batch, *host.wait())
        assert tiles == 9 and chunk.complete
        got[triton] = chunk.arrays
    a, b = got[True], got[False]
    assert a[layout.STATUS].tolist() == [layout.OK, layout.FAILED, layout.OK]
    assert a[layout.N_TILES].tolist() == [9, 0, 0] and a[layout.ERROR][1] == "broken 1"
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name], b[name], atol=1e-5, equal_nan=True, err_msg=name)
    # a 2 x 2 image has no tiles: its local scores are its global ones
    assert np.array_equal(a[layout.SIM_ALPHA][2], a[layout.SIM_GLOBAL][2])
    assert np.isnan(a[layout.SIM_GLOBAL][1]).all()


class _FakeStore:
    def __init__(self, fail_at=None):
        self.written, self.fail_at = [], fail_at

    def write_chunk(self, k, arrays):
        if k == self.fail_at:
            raise OSError(28, "No space left on device")
        self.written.append(k)


def test_chunk_writer_writes_in_order_and_reports_errors():
    store = _FakeStore()
    w = ChunkWriter(store)
    for k in range(5):
        w.submit(k, {})
    w.close()
    assert store.written == [0, 1, 2, 3, 4] and w.written == 5
    store = _FakeStore(fail_at=1)
    w = ChunkWriter(store)
    w.submit(0, {})
    w.submit(1, {})
    with pytest.raises(OSError, match="No space"):
        w.close()
    assert store.written == [0]


def test_host_ops_per_image_with_the_batch_kernels(tmp_path, monkeypatch):
    """The GPU's host path, counted on the CPU: at most 5 torch ops per image outside the
    towers (snippet 3, batch 64), against about 60 for the one-image-at-a-time path."""
    from cdul.benchmarks.host_ops_bench import marginal

    monkeypatch.setenv("CDUL_BENCH_DIR", str(tmp_path))

    r = marginal("kernel", "cdul-tiny-rn", 3, 64, small=7, large=20)
    assert r["ops_per_image"] <= 5, r
    assert r["launches_per_image"] <= 1, r


def test_host_ops_per_image_in_dense_mode(tmp_path, monkeypatch):
    """Dense mode's host path: one view an image, so at batch 8 its per-batch ops count
    eightfold against snippet 3's at 64; still at most 5 per image (none per image)."""
    from cdul.benchmarks.host_ops_bench import marginal

    monkeypatch.setenv("CDUL_BENCH_DIR", str(tmp_path))
    r = marginal("kernel", "cdul-tiny-vit", 3, 8, "dense", small=7, large=20)
    assert r["ops_per_image"] <= 5, r
    assert r["launches_per_image"] <= 1, r
