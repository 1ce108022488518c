"""cdul-extract's stored numbers against the independent per-image reference (docs/algorithm.md §6):
a random-weight CLIP shared through a checkpoint file, real photos and odd generated images."""

import os

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from clip_reference import Reference, make_checkpoint, y0
from extract_runs import extract_args

from cdul.cli.extract import main as extract

ARCH = "cdul-tiny-rn"
# float32 encoders against a float64 reference: the probabilities agree to ~1e-6. A tile box
# one pixel off moves them by 3e-5 or more on these images, so 1e-5 still catches geometry bugs.
ATOL = 1e-5


def run_extract(root, out, ckpt, *extra):
    args = extract_args(
        root,
        out,
        *extra,
        dataset="voc2012",
        split="train",
        model=ARCH,
        pretrained=ckpt,
        chunk_len=4,
        workers=1,
        quiet=True,
    )
    result = CliRunner().invoke(extract, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return zarr.open_group(out, mode="r")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    # logit scale 100, as OpenAI's CLIP: sharp distributions make the comparison sensitive
    return path, make_checkpoint(path, ARCH, seed=3, logit_scale=100.0)


@pytest.fixture(scope="module")
def grid_store(voc_root, checkpoint, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stores") / "grid.zarr")
    return run_extract(
        voc_root,
        out,
        checkpoint[0],
        "--snippet",
        "3",
        "--keep-tiles",
        "--keep-embeddings",
        "--zeta",
        "0.3",
        "--lam",
        "0.5",
    )


@pytest.fixture(scope="module")
def reference(grid_store, checkpoint):
    return Reference(checkpoint[1], ARCH, list(grid_store.attrs["classes"]))


def images(store):
    root = store.attrs["dataset"]["root"]
    return [(i, os.path.join(root, str(rel))) for i, rel in enumerate(store["images/id"][:])]


def test_every_formula_matches_the_reference(grid_store, reference):
    seen_no_tiles = False
    for i, path in images(grid_store):
        ref = reference.scores(path, snippet=3)
        name = os.path.basename(path)
        assert tuple(grid_store["images/hw"][i]) == ref["hw"], name
        assert grid_store["images/status"][i] == 1, name
        assert grid_store["images/n_tiles"][i] == len(ref["tiles"]), name
        for key, arr in [("global", "sim/global"), ("alpha", "sim/alpha"), ("beta", "sim/beta")]:
            got = grid_store[arr][i]
            worst = int(np.abs(got - ref[key]).argmax())
            assert np.allclose(got, ref[key], atol=ATOL, rtol=0), (
                f"{name} {arr}[{worst}]: {got[worst]} vs {ref[key][worst]}"
            )
        if len(ref["tiles"]):
            np.testing.assert_allclose(grid_store["sim/tiles"][i, : len(ref["tiles"])], ref["tiles"], atol=2e-3)
        else:
            seen_no_tiles = True
            # too small to tile: the local view falls back to the global one
            np.testing.assert_array_equal(grid_store["sim/alpha"][i], grid_store["sim/global"][i])
        np.testing.assert_allclose(grid_store["emb/global"][i], ref["emb"], atol=2e-3)
        want_y0 = y0(ref["global"], ref["alpha"], ref["beta"], zeta=0.3, lam=0.5)
        np.testing.assert_allclose(grid_store["labels/round_000"][i], want_y0, atol=2 * ATOL, rtol=0)
    assert seen_no_tiles, "the fixture should hold an image too small for a 3 x 3 grid"


def test_round_zero_records_its_parameters(grid_store):
    attrs = grid_store["labels/round_000"].attrs
    assert attrs["zeta"] == 0.3 and attrs["lam"] == 0.5 and attrs["complete"] is True
    assert grid_store.attrs["label_rounds"] == [0]


def test_pixel_tiles_match_the_reference(voc_root, checkpoint, tmp_path, reference):
    store = run_extract(voc_root, str(tmp_path / "px.zarr"), checkpoint[0], "--tile-px", "96")
    counts = []
    for i, path in images(store):
        ref = reference.scores(path, snippet=None, tile_px=96)
        counts.append(len(ref["tiles"]))
        assert store["images/n_tiles"][i] == len(ref["tiles"])
        for key, arr in [("global", "sim/global"), ("alpha", "sim/alpha"), ("beta", "sim/beta")]:
            np.testing.assert_allclose(store[arr][i], ref[key], atol=ATOL, rtol=0, err_msg=f"{path} {arr}")
    assert max(counts) >= 12 and min(counts) == 0  # large photos have many tiles, thin ones none


def test_snippet_one_is_the_global_view(voc_root, checkpoint, tmp_path):
    store = run_extract(voc_root, str(tmp_path / "g1.zarr"), checkpoint[0], "--snippet", "1", "--limit", "5")
    np.testing.assert_array_equal(store["sim/alpha"][:], store["sim/global"][:])
    np.testing.assert_array_equal(store["sim/beta"][:], store["sim/global"][:])
    assert (store["images/n_tiles"][:] == 1).all()
