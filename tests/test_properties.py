"""Property-based checks of the tiling and of the aggregation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdul.extractor.tiling import Tiling
from cdul.kernels import aggregate_local, initial_labels, score_segments_torch


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), g=st.integers(1, 12))
def test_grid_tiles_are_disjoint_inside_and_counted(h, w, g):
    boxes = Tiling.grid(g).boxes(h, w)
    th, tw = h // g, w // g
    assert len(boxes) == (g * g if th and tw else 0)
    seen = set()
    for top, left, bh, bw in boxes:
        assert (bh, bw) == (th, tw)
        assert top >= 0 and top + bh <= h and left >= 0 and left + bw <= w
        assert top % th == 0 and left % tw == 0  # on the grid, so no two overlap
        assert (top, left) not in seen
        seen.add((top, left))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 2000), w=st.integers(1, 2000), p=st.integers(1, 700))
def test_pixel_tiles_are_disjoint_inside_and_counted(h, w, p):
    boxes = Tiling.pixel(p).boxes(h, w)
    assert len(boxes) == (h // p) * (w // p)
    mask = np.zeros((h // p + 1, w // p + 1), bool)
    for top, left, bh, bw in boxes:
        assert (bh, bw) == (p, p) and top + p <= h and left + p <= w
        assert not mask[top // p, left // p]
        mask[top // p, left // p] = True


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_tiles=st.integers(0, 12),
    c=st.integers(1, 30),
    zeta=st.floats(0, 1),
    lam=st.floats(-1, 1),
)
def test_aggregation_bounds(seed, n_tiles, c, zeta, lam):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(1 + n_tiles, 8, generator=g)
    text = torch.randn(c, 8, generator=g)
    sc = score_segments_torch(emb, torch.tensor([0, 1 + n_tiles]), text, logit_scale=float(1 + seed % 100))
    s_g, alpha, beta = sc.global_[0].numpy(), sc.alpha[0].numpy(), sc.beta[0].numpy()
    assert (beta <= alpha).all()
    s_ag = aggregate_local(alpha, beta, zeta)
    assert ((beta <= s_ag) & (s_ag <= alpha)).all()
    y_mean = initial_labels(s_g, alpha, beta, zeta, 0.0)
    lo, hi = np.minimum(s_g, s_ag), np.maximum(s_g, s_ag)
    assert ((lo - 1e-7 <= y_mean) & (y_mean <= hi + 1e-7)).all()
    y = initial_labels(s_g, alpha, beta, zeta, lam)
    assert ((lo - 1e-7 <= y) & (y <= hi + 1e-7)).all()  # any lambda in [-1, 1] stays between them
