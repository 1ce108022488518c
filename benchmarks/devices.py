"""What a device can do at most, and what a tower asks of it: the share of the peak.

- Peaks: dense fp16 tensor-core rates (no sparsity) from the vendors' data sheets, by a
  word of the device's name (``torch.cuda.get_device_name``): H100 SXM 989 TFLOP/s (its
  name reads ``H100 80GB HBM3``; the PCIe and NVL cards have other peaks and no entry),
  H200 989, A100 312, L4 121, RTX 4090 165. A device without an entry (a CPU) has no peak:
  its share is left empty.
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one call of the tower on one
  view, counted once per model: 2 FLOPs per multiply-add of the convolutions and matrix
  products (elementwise work, softmax and normalisation are not counted).

share = views/s * FLOPs per view / peak.
"""

from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

PEAK_FP16_TFLOPS = (
    ("H100 80GB HBM3", 989.0),
    ("H100 SXM", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
)


def peak_tflops(name: str) -> float | None:
    """The dense fp16 peak of the device called ``name`` (a whole-word match, so that
    ``L4`` is not ``L40S``), or None."""
    for key, peak in PEAK_FP16_TFLOPS:
        if re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", name, flags=re.IGNORECASE):
            return peak
    return None


@torch.no_grad()
def tower_flops(visual: torch.nn.Module, size: int, device: torch.device | str = "cpu") -> int:
    """FLOPs of one call of ``visual`` on one [1, 3, size, size] view (in the tower's own
    dtype; the count does not depend on it)."""
    param = next(visual.parameters())
    x = torch.zeros(1, 3, size, size, dtype=param.dtype, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        visual(x)
    return int(counter.get_total_flops())


def share_of_peak(views_per_s: float, flops_per_view: int, name: str) -> float | None:
    peak = peak_tflops(name)
    return None if peak is None else views_per_s * flops_per_view / (peak * 1e12)
