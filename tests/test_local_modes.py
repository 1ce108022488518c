"""A local mode is one class and one line in ``cdul.extractor.local.MODES``: a toy mode,
defined here, that scores the global view (the model's centre crop) alone and keeps its
scores in an array of its own, extracts into a store like the modes the command ships."""

from __future__ import annotations

import numpy as np
import pytest

from cdul.data import load_dataset
from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
from cdul.extractor.local import MODES, ChunkPart, LocalMode, flag_owners
from cdul.extractor.packing import ViewSpec
from cdul.store import layout

CENTRE = "sim/centre"


class CentrePart(ChunkPart):
    def put(self, arrays, batch, good, scores, tiles, extra) -> None:
        arrays[CENTRE][good] = scores[:, 0].astype(np.float16)


class CentreMode(LocalMode):
    """No local views: alpha and beta are the centre crop's own scores."""

    name = "centre"

    def views_per_image(self, config):
        return 1

    def view_spec(self, config, size, interpolation, resize_mode):
        return ViewSpec(size, interpolation, resize_mode), None

    def extra_specs(self, config, n_classes):
        return [layout.ArraySpec(CENTRE, (n_classes,), np.float16, np.nan, ("image", "class"))]

    def chunk_part(self, config, n_classes):
        return CentrePart()

    def describe(self, config):
        return {"mode": "grid", "G": 1}  # as the store's schema knows it: the one tile is the global view


def test_the_shipped_modes_own_their_options():
    assert flag_owners()["--keep-tiles"] == "tiles" and flag_owners()["--keep-patches"] == "dense"
    with pytest.raises(ValueError, match="--dense-size goes with --local dense"):
        MODES["tiles"].check_flags(["--dense-size"], flag_owners())
    with pytest.raises(ValueError, match="scores patches, not tiles"):
        MODES["dense"].check_flags(["--snippet"], flag_owners())


@pytest.mark.slow
def test_a_registered_mode_extracts_and_writes_its_arrays(voc_root, tmp_path, monkeypatch):
    from cdul.extractor.job import extract
    from cdul.extractor.plan import plan_extraction

    monkeypatch.setitem(MODES, "centre", CentreMode())
    data = load_dataset("voc2012", voc_root, "train").head(5)
    config = ExtractConfig("cdul-tiny-rn", "none", local="centre", precision="fp32")
    cfg = WorkerConfig(str(tmp_path / "c.zarr"), data.root, config, RunOptions(batch_size=4, loader_workers=0))
    summary = extract(plan_extraction(cfg, ["cpu"], chunk_len=3), data)
    store = summary.store
    assert store.attrs["tiling"] == {"mode": "grid", "G": 1} and store.attrs["complete"]
    ok = store.array(layout.STATUS)[:] == layout.OK
    assert ok.sum() == summary.result["summary"]["ok"] > 0
    s_g = store.array(layout.SIM_GLOBAL)[:]
    centre = store.array(CENTRE)[:]
    np.testing.assert_allclose(centre[ok], s_g[ok], rtol=1e-2, atol=1e-3)  # stored as fp16
    assert np.isnan(centre[~ok]).all()
    np.testing.assert_array_equal(store.array(layout.SIM_ALPHA)[:][ok], s_g[ok])  # no local views
    assert (store.array(layout.N_TILES)[:][ok] == 0).all()
