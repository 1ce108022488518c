"""The encoder stage's modes (eager, CUDA graph), ``--compile auto``, and the preprocess
known before the model loads (the decoding workers start with it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cdul.extractor.clip_model import eval_preprocess, load_clip, model_input_size
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.encoder import Encoder
from cdul.extractor.modes import resolve_compile
from cdul.extractor.pipeline import build_stages, early_view_spec
from cdul.extractor.plan import plan_extraction
from cdul.extractor.tiling import Tiling

CPU = torch.device("cpu")


def test_compile_auto_is_eager_on_the_cpu_and_a_graph_needs_cuda():
    assert resolve_compile("auto", CPU) == "none"
    assert resolve_compile("auto", torch.device("cuda:0")) == "cuda-graph"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_compile("cuda-graph", CPU)
    with pytest.raises(ValueError, match="compile must be one of"):
        resolve_compile("fast", CPU)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Encoder(torch.nn.Identity(), 4, CPU, "fp32", graph=True)


@pytest.mark.parametrize("model", ["cdul-tiny-rn", "cdul-tiny-vit"])
def test_preprocess_from_the_configuration_is_the_loaded_models(model):
    bundle = load_clip(model, "none", ["cat", "dog"])
    assert eval_preprocess(model, "none") == (bundle.input_size, bundle.interpolation, bundle.resize_mode)


def test_preprocess_from_the_configuration_follows_the_pretrained_tag():
    # the tag's own preprocess (bilinear, squash) overrides the architecture's defaults
    assert eval_preprocess("ViT-L-14-CLIPA", "datacomp1b") == (model_input_size("ViT-L-14-CLIPA"), "bilinear", "squash")
    assert eval_preprocess("RN50", "openai") == (224, "bicubic", "shortest")


@pytest.mark.parametrize("local, size", [("tiles", 0), ("dense", 0), ("dense", 64)])
def test_the_workers_early_spec_is_what_the_stages_use(local, size):
    config = ExtractConfig(
        "cdul-tiny-vit", "none", tiling=Tiling.grid(2), local=local, dense_size=size, precision="fp32"
    )
    cfg = plan_extraction(WorkerConfig("s", "r", config, RunOptions(views="exact")), ["cpu"]).worker
    bundle = load_clip(config.model, "none", ["cat"])
    stages = build_stages(cfg, bundle, bundle.visual, CPU, cfg.run.views, 0)
    assert early_view_spec(cfg) == (stages.spec, stages.tiling)
    hub = WorkerConfig("s", "r", dataclasses.replace(config, model="hf-hub:org/model"))
    assert early_view_spec(hub) is None  # the workers start after the load


class _Tower(torch.nn.Module):
    def __init__(self, sync: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.proj = torch.nn.Linear(8, 6)
        self.sync = sync

    def forward(self, x):
        y = self.conv(x).float().mean((2, 3))
        if self.sync and float(y.sum()) > -1e30:  # a host sync: cannot be captured
            y = y + 0
        return self.proj(y.to(self.proj.weight.dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_a_graph_replays_the_eager_tower(precision):
    dev = torch.device("cuda:0")
    tower = _Tower().to(dev).eval().to(memory_format=torch.channels_last)
    eager = Encoder(tower, 8, dev, precision, fixed_shape=True)
    graph = Encoder(tower, 8, dev, precision, graph=True)
    graph.capture(16)
    g = torch.Generator(device=dev).manual_seed(0)
    for n in (8, 5, 19):  # one piece, a padded piece, three pieces
        x = torch.randn(n, 3, 16, 16, device=dev, generator=g).to(eager.in_dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        a, b = eager(x, n), graph(x, n)
        assert b.shape == (n, 6) and torch.allclose(a.float(), b.float(), atol=1e-5 if precision == "fp32" else 1e-2)
    assert graph.graph and not graph.note


@pytest.mark.gpu
def test_a_tower_that_cannot_be_captured_runs_eagerly_with_a_note():
    dev = torch.device("cuda:0")
    tower = _Tower(sync=True).to(dev).eval()
    enc = Encoder(tower, 4, dev, "fp32", graph=True)
    enc.capture(16)
    assert not enc.graph and "runs eagerly" in enc.note
    x = torch.randn(6, 3, 16, 16, device=dev)
    assert torch.allclose(enc(x, 6), tower(x), atol=1e-6)


@pytest.mark.gpu
def test_gpu_stores_with_and_without_a_graph_agree(voc_root, tmp_path):
    from cdul.data import load_dataset
    from cdul.extractor.job import extract

    data = load_dataset("voc2012", voc_root, "train")
    out = {}
    for mode in ("none", "cuda-graph"):
        run = RunOptions(batch_size=16, compile=mode, loader_workers=1)
        cfg = WorkerConfig(str(tmp_path / f"{mode}.zarr"), data.root, ExtractConfig("cdul-tiny-vit", "none"), run)
        summary = extract(plan_extraction(cfg, ["cuda:0"], chunk_len=8, overwrite=True), data)
        assert not summary.counts.get("notes")
        out[mode] = summary.store
    for name in ("sim/global", "sim/alpha", "sim/beta"):
        a, b = (out[m].array(name)[:] for m in ("none", "cuda-graph"))
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=name)
