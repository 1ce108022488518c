"""The classifier f_theta: any torchvision classification model, with C outputs.

Initialisation (``--weights``):
- ``imagenet``: torchvision's DEFAULT ImageNet weights for the architecture, from the
  torch hub cache or downloaded once into it. Offline, it fails at once with a one-line
  message naming the file to fetch and ``--weights PATH``.
- ``none``: random initialisation (tests, benchmarks).
- a path: a state dict (``torch.load(weights_only=True)``), e.g. torchvision's ImageNet
  file, or a cdul checkpoint (its ``model`` entry). Everything but the classification head
  must fit; a head of another width (1000 ImageNet classes) is left freshly initialised.
"""

from __future__ import annotations

import os
import socket

import torch
import torchvision
from torch import nn


class WeightsError(Exception):
    """Initial weights that cannot be had or do not fit; the message says what to pass instead."""


def classification_archs() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def head_name(model: nn.Module) -> str:
    """The name of the final Linear layer, the one replaced by C outputs."""
    name = None
    for n, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name = n
    if name is None:
        raise WeightsError(f"{type(model).__name__} has no final Linear layer to give C outputs")
    return name


def new_model(arch: str, n_classes: int) -> nn.Module:
    if arch not in classification_archs():
        raise WeightsError(
            f"unknown --arch {arch!r}: use a torchvision classification model such as resnet18, "
            "resnet50, resnet101, convnext_tiny, efficientnet_b0 (torchvision.models.list_models())"
        )
    model = torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
    head_name(model)
    return model


def imagenet_state(arch: str, timeout: float = 30.0) -> dict:
    """torchvision's DEFAULT ImageNet state dict for ``arch``, from the hub cache or the network."""
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise WeightsError(f"torchvision has no ImageNet weights for {arch!r}; pass --weights PATH or none") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # a dead network fails within the timeout, never hangs
        try:
            torch.hub.download_url_to_file(weights.url, path, progress=False)
        except (OSError, RuntimeError) as exc:
            reason = str(getattr(exc, "reason", exc)).splitlines()[0][:120]
            raise WeightsError(
                f"cannot download the ImageNet weights of {arch} ({reason}); fetch {weights.url} to "
                f"{path}, or pass --weights PATH (a state dict file), or --weights none"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    return torch.load(path, map_location="cpu", weights_only=True)


def file_state(path: str) -> dict:
    """A state dict from a file: a plain one, or the ``model`` of a cdul checkpoint."""
    if not os.path.isfile(path):
        raise WeightsError(f"--weights {path}: no such file (give imagenet, none, or a state dict file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors of several types
        raise WeightsError(
            f"--weights {path}: not a loadable state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"--weights {path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_fitting(model: nn.Module, state: dict, where: str) -> list[str]:
    """Load ``state`` into ``model``; only the head may be missing or of another width.
    Returns the names of the head tensors left as initialised."""
    head = head_name(model) + "."
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    misfit = [k for k in state if k in own and own[k].shape != state[k].shape]
    missing = [k for k in own if k not in state]
    bad = [k for k in unexpected + misfit + missing if not k.startswith(head)]
    if bad:
        raise WeightsError(
            f"{where} does not fit this architecture: {len(bad)} tensors differ (first: {bad[0]}); check --arch"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in misfit}, strict=False)
    return sorted(set(misfit + missing))


def build_classifier(arch: str, n_classes: int, weights: str = "none") -> tuple[nn.Module, str]:
    """-> (model, a line saying how it was initialised)."""
    model = new_model(arch, n_classes)
    if weights == "none":
        return model, f"{arch}: random initialisation (--weights none)"
    if weights == "imagenet":
        state, where = imagenet_state(arch), "ImageNet weights"
    else:
        state, where = file_state(weights), weights
    fresh = load_fitting(model, state, where)
    note = f", new {n_classes}-class head" if fresh else ""
    return model, f"{arch}: {where}{note}"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel."""
    inner = model.module if hasattr(model, "module") else model
    assert isinstance(inner, nn.Module)
    return inner
