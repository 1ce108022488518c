"""A compiled image tower in the extraction pipeline: one graph for the whole run.

Every call of a compiled tower goes through the encoder's one static input (fixed rows,
dtype and layout), so the short pieces at the ends of images' views and of chunks compile
nothing new, and the scores equal the eager tower's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from cdul.data import load_dataset
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.encoder import Encoder
from cdul.extractor.job import extract
from cdul.extractor.modes import auto_compile
from cdul.extractor.plan import plan_extraction
from cdul.extractor.tiling import Tiling

CPU = torch.device("cpu")


def test_auto_picks_the_measured_mode_per_device_class():
    assert auto_compile(CPU) == "none"
    assert auto_compile(torch.device("cuda:0"), "NVIDIA H200") == "cuda-graph"
    assert auto_compile(torch.device("cuda:0"), "NVIDIA H100 80GB HBM3") == "cuda-graph"


class _Recorder(torch.nn.Module):
    """Records the shape, strides and identity of every input."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen.append((tuple(x.shape), x.stride(), x.data_ptr()))
        return x.flatten(1)[:, :2] * 1.0


def test_fixed_shape_pieces_share_one_static_input():
    tower = _Recorder()
    enc = Encoder(tower, 4, CPU, "fp32", fixed_shape=True)
    enc.capture(2)
    x = torch.arange(10 * 3 * 2 * 2, dtype=torch.float32).reshape(10, 3, 2, 2)
    out = enc(x, 10)  # pieces of 4, 4 and 2 rows (padded with zeros to 4)
    assert torch.equal(out, x.flatten(1)[:, :2])
    assert len(set(tower.seen)) == 1 and tower.seen[0][0] == (4, 3, 2, 2)
    assert len(tower.seen) == 4  # the start-up call, then three pieces
    short = enc(x[:1], 1)
    assert torch.equal(short, x[:1].flatten(1)[:, :2])
    assert enc._in is not None and not enc._in[1:].any()  # the padding is zeros


@pytest.mark.slow
def test_compiled_tower_compiles_once_and_scores_as_eager(voc_root, tmp_path, monkeypatch):
    data = load_dataset("voc2012", voc_root, "train").head(7)
    # snippet 2: 5 views an image, batch 4: every image ends on a short piece; chunks of 3
    # images end on short batches
    config = ExtractConfig("cdul-tiny-rn", "none", tiling=Tiling.grid(2))
    stores, speeds = {}, {}
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    for mode in ("default", "none"):
        run = RunOptions(batch_size=4, compile=mode, loader_workers=0)
        cfg = WorkerConfig(str(tmp_path / f"{mode}.zarr"), data.root, config, run)
        summary = extract(plan_extraction(cfg, ["cpu"], chunk_len=3, overwrite=True), data)
        assert not summary.counts.get("notes")
        stores[mode], speeds[mode] = summary.store, summary.speed
    assert speeds["default"]["tower_graphs"] == 1  # no graph break
    assert speeds["default"]["tower_recompiles"] == 0
    assert stores["default"].attrs["last_run"]["tower_recompiles"] == 0  # the user sees it
    assert "tower_graphs" not in speeds["none"]
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    for name in ("sim/global", "sim/alpha", "sim/beta"):
        a, b = (stores[m].array(name)[:] for m in ("default", "none"))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_compiled_vit_tower_is_one_graph_without_breaks():
    from cdul.extractor.clip_model import load_clip
    from cdul.extractor.modes import _tower

    bundle = load_clip("cdul-tiny-vit", "none", ["a", "b"], device=CPU)
    torch._dynamo.reset()
    counters.clear()
    enc = Encoder(_tower(bundle.visual, CPU, "default"), 4, CPU, "fp32", fixed_shape=True)
    enc.capture(bundle.input_size)
    x = torch.randn(10, 3, bundle.input_size, bundle.input_size)
    with torch.no_grad():
        ref = bundle.visual(x)
    torch.testing.assert_close(enc(x, 10), ref, rtol=1e-4, atol=1e-5)  # pieces of 4, 4 and 2
    torch.testing.assert_close(enc(x[:3], 3), ref[:3], rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
