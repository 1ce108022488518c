"""How an op picks its implementation: the fused Triton kernel or the plain-torch reference.

``CDUL_KERNELS`` (``auto``, ``torch`` or ``triton``; default ``auto``) or a caller's explicit
``backend`` chooses. ``auto`` takes the Triton kernel for CUDA tensors when the op's ``fused``
module imports (triton installed), and the reference otherwise (CPU tensors, no triton).
``triton`` on CPU tensors runs the kernel through Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib
import os

import torch

BACKENDS = ("auto", "torch", "triton")


def fused_available(package: str) -> bool:
    """Whether ``<package>.fused`` (the op's Triton kernel and launcher) imports."""
    try:
        importlib.import_module(f"{package}.fused")
    except ImportError:
        return False
    return True


def pick_backend(tensor: torch.Tensor, package: str, backend: str | None = None) -> str:
    """``"triton"`` or ``"torch"`` for an op of ``package`` on ``tensor``'s device; ``backend``,
    when given, overrides ``CDUL_KERNELS``."""
    choice = (backend or os.environ.get("CDUL_KERNELS", "auto")).lower()
    if choice not in BACKENDS:
        raise ValueError(f"CDUL_KERNELS must be auto, torch or triton, not {choice!r}")
    if choice == "auto":
        return "triton" if tensor.is_cuda and fused_available(package) else "torch"
    return choice


def require_fused(package: str) -> None:
    """Import ``<package>.fused`` now (ImportError without triton), for a caller that will
    force the Triton backend and would rather fail before its first batch than at it."""
    importlib.import_module(f"{package}.fused")
