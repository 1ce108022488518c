"""cdul-extract --views kernel (the GPU's batch path, through Triton's interpreter here)
gives the store that --views exact gives, and refuses what cannot work with one line."""

import dataclasses

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from extract_runs import extract_args

from cdul.cli.extract import main as extract
from cdul.sample import generated_images, write_voc_layout


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory):
    """Small images (the interpreter is slow), one of them too small for a 3 x 3 grid."""
    from PIL import Image

    items = generated_images(9, seed=3, size=(40, 53))
    items["tiny"] = (Image.new("RGB", (2, 2), (9, 200, 30)), [])
    items["tall"] = (Image.new("RGB", (7, 90), (100, 20, 30)), [])
    return write_voc_layout(str(tmp_path_factory.mktemp("small")), items)


def _run(root, out, *extra):
    r = CliRunner().invoke(
        extract,
        extract_args(root, out, *extra, model="cdul-tiny-vit", quiet=True, batch_size=24),
    )
    return r


@pytest.mark.parametrize("tiling", [["--snippet", "3"], ["--tile-px", "20"]], ids=["grid", "pixel"])
def test_kernel_views_give_the_exact_store(small_voc, tmp_path, tiling):
    a = _run(small_voc, str(tmp_path / "exact.zarr"), "--views", "exact", "--keep-tiles", "--keep-embeddings", *tiling)
    assert a.exit_code == 0, a.output
    b = _run(
        small_voc, str(tmp_path / "kernel.zarr"), "--views", "kernel", "--keep-tiles", "--keep-embeddings", *tiling
    )
    assert b.exit_code == 0, b.output
    x, y = (
        zarr.open_group(str(tmp_path / "exact.zarr"), mode="r"),
        zarr.open_group(str(tmp_path / "kernel.zarr"), mode="r"),
    )
    # the views are PIL's levels on both paths, so the encoder sees the same input
    np.testing.assert_array_equal(x["emb/global"][:], y["emb/global"][:])
    for name in ("images/n_tiles", "images/hw", "images/status"):
        np.testing.assert_array_equal(x[name][:], y[name][:], err_msg=name)
    for name in ("sim/global", "sim/alpha", "sim/beta", "labels/round_000"):
        np.testing.assert_allclose(x[name][:], y[name][:], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        x["sim/tiles"][:].astype(np.float32), y["sim/tiles"][:].astype(np.float32), atol=1e-3, equal_nan=True
    )
    assert x["images/n_tiles"][:].min() == 0  # the 2 x 2 image


def test_view_path_is_not_part_of_the_configuration(small_voc, tmp_path):
    """A store begun with one view path resumes with the other (both give PIL's levels);
    a store begun with another precision does not."""
    out = str(tmp_path / "s.zarr")
    assert _run(small_voc, out, "--views", "exact", "--limit", "4").exit_code == 0
    r = _run(small_voc, out, "--views", "kernel", "--limit", "4")
    assert r.exit_code == 0, r.output
    r = _run(small_voc, out, "--views", "exact", "--limit", "4", "--precision", "bf16")
    assert r.exit_code == 1 and "precision: fp32 -> bf16" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--views", "fast"], "'fast' is not one of"),
        (["--compile", "yes"], "'yes' is not one of"),
    ],
)
def test_wrong_values_are_one_line(small_voc, tmp_path, args, message):
    r = _run(small_voc, str(tmp_path / "x.zarr"), *args)
    assert r.exit_code == 2 and message in r.output


@pytest.mark.gpu
def test_gpu_kernel_and_exact_views_give_close_stores(small_voc, tmp_path):
    """On CUDA the exact path resizes in float32 (a grey level off in rare pixels); both
    run the fp16 encoder, so the stores agree closely, not bit for bit."""
    out = {}
    for views in ("kernel", "exact"):
        r = CliRunner().invoke(
            extract,
            extract_args(
                small_voc, tmp_path / f"{views}.zarr", model="cdul-tiny-vit", gpus="0", quiet=True, views=views
            ),
        )
        assert r.exit_code == 0, r.output
        out[views] = zarr.open_group(str(tmp_path / f"{views}.zarr"), mode="r")
    for name in ("sim/global", "sim/alpha", "sim/beta"):
        np.testing.assert_allclose(out["kernel"][name][:], out["exact"][name][:], atol=2e-3, err_msg=name)


def test_the_extract_config_is_hashed_whole_and_run_options_never():
    import dataclasses

    from cdul.data import Dataset
    from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
    from cdul.extractor.store_life import _digest, extraction_config

    @dataclasses.dataclass(frozen=True)
    class Wider(ExtractConfig):
        sharpen: float = 0.0

    data = Dataset(kind="folder", root="/r", split="all", ids=["a"], classes=["cat"], targets=None)
    a = extraction_config(WorkerConfig("s", "/r", Wider("m", "none")), data, 8)
    assert a["sharpen"] == 0.0 and a["precision"] == "auto"  # a new field is hashed from the start
    assert extraction_config(WorkerConfig("s", "/r", Wider("m", "none", sharpen=1.0)), data, 8) != a
    for f in dataclasses.fields(RunOptions):  # what a run may change freely
        assert f.name not in a
    run = RunOptions(batch_size=7, views="exact", loader_workers=3, compile="none", cache_dir="/c")
    assert extraction_config(WorkerConfig("t", "/r", Wider("m", "none"), run), data, 8) == a
    # the digest of a fixed configuration: stores made before stay resumable
    cfg = ExtractConfig("RN50", "openai", precision="fp16", keep_tiles=True, max_tiles=9)
    data = Dataset(kind="voc2012", root="/r", split="train", ids=["a", "b"], classes=["cat", "dog"], targets=None)
    digest = _digest(extraction_config(WorkerConfig("s", "/r", cfg), data, 64))
    assert digest == "e7ab6f486d477335d126c21f1d173ec9ac21af376616d1ba8b24269413361153"


def test_following_symlinks_is_part_of_the_configuration(small_voc, tmp_path):
    out = str(tmp_path / "s.zarr")
    assert _run(small_voc, out, "--limit", "3").exit_code == 0
    r = _run(small_voc, out, "--limit", "3", "--follow-symlinks")
    assert r.exit_code == 1 and "follow_symlinks: False -> True" in r.output


@pytest.mark.gpu
def test_gpu_copy_stream_and_queue_depth_leave_the_store_unchanged(small_voc, tmp_path):
    """The copy on its own stream, more batches in flight, lower-priority decoding workers
    and a sleeping wait change when the device works, never what it computes: the stores
    are equal."""
    from cdul.data import load_dataset
    from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
    from cdul.extractor.job import extract as run
    from cdul.extractor.plan import plan_extraction

    data = load_dataset("voc2012", small_voc, "train")
    out = {}
    runs = {"now": (4, 5, True, True), "before": (2, 0, False, False), "deep": (16, 5, True, True)}
    for name, (depth, nice, side, blocking) in runs.items():
        options = RunOptions(
            batch_size=8, loader_workers=2, in_flight=depth, worker_nice=nice, copy_stream=side, blocking_wait=blocking
        )
        cfg = WorkerConfig(str(tmp_path / f"{name}.zarr"), data.root, ExtractConfig("cdul-tiny-vit", "none"), options)
        run(plan_extraction(dataclasses.replace(cfg, kind=data.kind), ["cuda:0"]), data)
        out[name] = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="r")
    for name in ("sim/global", "sim/alpha", "sim/beta", "sim/tiles"):
        if name in out["now"]:
            for other in ("before", "deep"):
                np.testing.assert_array_equal(out["now"][name][:], out[other][name][:], err_msg=f"{name} {other}")
