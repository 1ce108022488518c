"""The classifier as a portable ONNX model: runs with onnxruntime, without cdul or torch.

The graph takes ``image``, float32 [B, 3, S, S] (B free: a dynamic axis), the RGB image
resized to S x S (bilinear, the whole image, as cdul scores it) and normalised with the
model's mean and std, ``x = (pixel / 255 - mean) / std`` per channel; its output ``scores``,
float32 [B, C], are the classifier's probabilities: ``softmax(f(x))`` for a model trained with
the KL loss, ``sigmoid(f(x))`` with BCE, the score function baked into the graph.

The model's metadata (``metadata_props``, all strings) says how to feed it:

    classes      JSON list of the C class names, in output order
    input_size   S
    mean, std    JSON lists of 3 floats (RGB, for pixels scaled to [0, 1])
    score        softmax or sigmoid (already applied: the outputs are probabilities)
    resize       how the image becomes S x S
    arch, epoch  the torchvision architecture and the epochs it trained
    producer     cdul and its version

Exported in float32 on the CPU with torch's TorchScript-based exporter (opset 17), which
needs no package beyond ``onnx``; the file appears under its name only when complete.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np
import torch

from cdul.data import outputs

from .classifier import Classifier

OPSET = 17
RESIZE = "the whole image to input_size x input_size, bilinear (PIL Image.BILINEAR), RGB"


class ExportError(Exception):
    """An export that cannot be done; the message is one line."""


class _Scored(torch.nn.Module):
    """The classifier followed by its score function."""

    def __init__(self, model: torch.nn.Module, score: str):
        super().__init__()
        self.model, self.score = model, score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return torch.softmax(z, dim=1) if self.score == "softmax" else torch.sigmoid(z)


def metadata(clf: Classifier) -> dict[str, str]:
    import cdul

    return {
        "classes": json.dumps(clf.classes),
        "input_size": str(clf.img_size),
        "mean": json.dumps(list(clf.mean)),
        "std": json.dumps(list(clf.std)),
        "score": clf.score_function,
        "resize": RESIZE,
        "arch": clf.arch,
        "epoch": str(int(clf.checkpoint.get("epoch", 0))),
        "producer": f"cdul {cdul.__version__}",
    }


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'cdul[onnx]'") from None
    return onnx


def export_onnx(clf: Classifier, out: str, *, check: bool = True) -> dict:
    """Write ``clf`` to ``out`` as ONNX (see the module docstring). With ``check``, and
    onnxruntime installed, a random batch is scored by both and must agree within 1e-4.
    Returns a summary: out, bytes, classes, input_size, score, max_abs_diff (None unchecked)."""
    onnx = _onnx()
    try:
        outputs.table_file(out)
    except outputs.OutputError as exc:
        raise ExportError(f"{exc} (model.onnx, say)") from None
    folder = os.path.dirname(os.path.abspath(out))
    clf.model.to("cpu").to(memory_format=torch.contiguous_format)
    model = _Scored(clf.model, clf.score_function).float().eval()
    example = torch.zeros(2, 3, clf.img_size, clf.img_size)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (example,),
                tmp,
                input_names=["image"],
                output_names=["scores"],
                dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        for key, value in metadata(clf).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = "cdul classifier: image [B, 3, S, S] normalised -> scores [B, C] probabilities"
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        diff = _check(model, tmp, clf.img_size) if check else None
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    clf.model.to(clf.device)
    if clf.device.type == "cuda":
        clf.model.to(memory_format=torch.channels_last)
    return {
        "out": out,
        "bytes": os.path.getsize(out),
        "classes": len(clf.classes),
        "input_size": clf.img_size,
        "score": clf.score_function,
        "max_abs_diff": diff,
    }


def _check(model: torch.nn.Module, path: str, size: int, tolerance: float = 1e-4) -> float | None:
    """Largest difference between onnxruntime's scores and torch's on a random batch of 3."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"image": x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    if not diff <= tolerance:
        raise ExportError(f"the exported model's scores differ from torch's by {diff:.2e} (more than {tolerance:g})")
    return diff
