"""Global-local aggregation (docs/algorithm.md §2.5, paper Eq. 5-6), for numpy arrays or torch tensors.

    gamma = 1[alpha >= zeta];  S_ag = gamma * alpha + (1 - gamma) * beta
    y0    = 0.5 * (S_g + S_ag + lam * |S_g - S_ag|)

Cheap enough to run at read time for any zeta and lam, so the store keeps only S_g, alpha
and beta.
"""

from __future__ import annotations

import numpy as np


def _where(cond, a, b):
    if isinstance(cond, np.ndarray):
        return np.where(cond, a, b)
    import torch

    return torch.where(cond, a, b)


def aggregate_local(alpha, beta, zeta: float = 0.5):
    """S_ag: alpha where it reaches zeta, beta elsewhere."""
    return _where(alpha >= zeta, alpha, beta)


def initial_labels(s_g, alpha, beta, zeta: float = 0.5, lam: float = 0.0):
    """y0 from the global similarity and the aggregated local one."""
    s_ag = aggregate_local(alpha, beta, zeta)
    return 0.5 * (s_g + s_ag + lam * abs(s_g - s_ag))
