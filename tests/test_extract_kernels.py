"""The extractor gives the same store whichever path scores it: the fused Triton kernel
(run by the interpreter on this CPU) or the torch reference."""

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from extract_runs import extract_args

from cdul.cli.extract import main as extract


def _extract(root, out, backend, monkeypatch):
    monkeypatch.setenv("CDUL_KERNELS", backend)
    r = CliRunner().invoke(
        extract,
        extract_args(root, out, model="cdul-tiny-vit", quiet=True, workers=0, limit=8, keep_tiles=True),
    )
    assert r.exit_code == 0, r.output
    return zarr.open_group(out, mode="r")


def test_triton_and_torch_paths_agree(voc_root, tmp_path, monkeypatch):
    pytest.importorskip("triton")
    import cdul.kernels.scoring.fused as ts

    calls = []
    real = ts.score_segments_triton
    monkeypatch.setattr(ts, "score_segments_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = _extract(voc_root, str(tmp_path / "torch.zarr"), "torch", monkeypatch)
    assert not calls
    b = _extract(voc_root, str(tmp_path / "triton.zarr"), "triton", monkeypatch)
    assert calls, "the Triton path was not taken"
    for name in ("sim/global", "sim/alpha", "sim/beta", "labels/round_000"):
        np.testing.assert_allclose(b[name][:], a[name][:], atol=1e-5, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(
        b["sim/tiles"][:].astype(np.float32), a["sim/tiles"][:].astype(np.float32), atol=2e-3, equal_nan=True
    )
