"""How a device runs the extraction, from the options' names: the precision, the views path
and the image tower's mode (``--compile``; ``auto`` reads ``options.AUTO_COMPILE``, the
fastest mode measured per device class)."""

from __future__ import annotations

import os

import torch

from .encoder import PRECISIONS
from .options import AUTO_COMPILE, COMPILE_MODES, DECODE_MODES, VIEW_MODES

STATIC_OUT = ("reduce-overhead", "max-autotune")  # compiled with CUDA graphs: an output lives until the next call


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    return precision


def resolve_views(views: str, device: torch.device) -> str:
    """auto: the batch kernel on CUDA, the float64 matrix path on the CPU."""
    if views not in VIEW_MODES:
        raise ValueError(f"views must be one of {', '.join(VIEW_MODES)}, not {views!r}")
    if views == "auto":
        return "kernel" if device.type == "cuda" else "exact"
    if views == "kernel" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "--views kernel on the CPU runs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before starting (or use --views exact)"
        )
    return views


def check_decode(decode: str, device: torch.device) -> str:
    """gpu: nvJPEG, which only a CUDA device has (ValueError, one line, elsewhere)."""
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, not {decode!r}")
    if decode == "gpu" and (device.type != "cuda" or not torch.cuda.is_available()):
        raise ValueError(
            f"--decode gpu needs a CUDA device (nvJPEG); this run's device is {device}: leave --decode at pil"
        )
    return decode


def auto_compile(device: torch.device, name: str | None = None) -> str:
    """The mode ``--compile auto`` picks for ``device`` (``options.AUTO_COMPILE``: the eager
    tower in a CUDA graph on CUDA, eager on the CPU, unless a device's name says otherwise)."""
    if name is None:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else ""
    for key, mode in AUTO_COMPILE:
        if key.lower() in name.lower():
            return mode
    return dict(AUTO_COMPILE).get(device.type, "none")


def resolve_compile(mode: str, device: torch.device) -> str:
    """auto: the fastest measured mode for the device (``auto_compile``)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    if mode == "auto":
        return auto_compile(device)
    if mode == "cuda-graph" and device.type != "cuda":
        raise ValueError("--compile cuda-graph needs a CUDA device (use auto or none on the CPU)")
    return mode


def _tower(visual: torch.nn.Module, device: torch.device, mode: str) -> torch.nn.Module:
    """The image tower as ``mode`` (resolved: not auto) runs it on ``device``."""
    if device.type == "cuda":
        visual = visual.to(memory_format=torch.channels_last)
    if mode not in ("none", "cuda-graph"):  # a CUDA graph is captured by the Encoder
        compiled = torch.compile(visual, mode=None if mode == "default" else mode, dynamic=False)
        assert isinstance(compiled, torch.nn.Module)  # a module compiles to a module (OptimizedModule)
        visual = compiled
    return visual
