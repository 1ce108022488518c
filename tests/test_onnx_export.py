"""The classifier as ONNX: onnxruntime, fed as the README says (PIL, numpy and the model's
metadata only), gives PyTorch's scores within 1e-4 in float32."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from classifier_checkpoints import CLASSES, image_folder, make_checkpoint

ort = pytest.importorskip("onnxruntime")


def run_like_the_readme(model_path: str, image_paths: list[str]) -> tuple[np.ndarray, dict]:
    """The README's lines, for a batch of images: read the metadata, resize, normalise, run."""
    from PIL import Image

    s = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    m = s.get_modelmeta().custom_metadata_map
    n = int(m["input_size"])
    xs = []
    for path in image_paths:
        x = np.asarray(Image.open(path).convert("RGB").resize((n, n), Image.BILINEAR)) / 255
        xs.append(((x - json.loads(m["mean"])) / json.loads(m["std"])).transpose(2, 0, 1).astype(np.float32))
    return s.run(["scores"], {"image": np.stack(xs)})[0], m


def torch_scores(checkpoint: str, root: str, names: list[str]) -> np.ndarray:
    from cdul.trainer.classifier import load_classifier

    clf = load_classifier(checkpoint, "cpu")
    batches = [[(i, n) for i, n in enumerate(names)]]
    (_, scores, ok), *_ = list(clf.score_batches(root, batches, kind="folder", workers=0))
    assert ok.all()
    return scores


def export(*args):
    from click.testing import CliRunner

    from cdul.cli.export import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["kl", "bce"])
def test_onnx_scores_equal_pytorch(tmp_path, loss):
    names = image_folder(tmp_path, 5)
    ckpt = make_checkpoint(tmp_path / "best.pt", loss=loss, img_size=40)
    r = export("--checkpoint", ckpt, "--out", tmp_path / "model.onnx")
    assert r.exit_code == 0 and "onnxruntime matches torch within" in r.output, r.output
    assert sorted(os.listdir(tmp_path)) == sorted([*names, "best.pt", "model.onnx"])  # no temporary file left
    want = torch_scores(ckpt, str(tmp_path), names)
    got, meta = run_like_the_readme(str(tmp_path / "model.onnx"), [str(tmp_path / n) for n in names])
    assert got.shape == (5, len(CLASSES))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert json.loads(meta["classes"]) == CLASSES and meta["input_size"] == "40"
    assert meta["score"] == {"kl": "softmax", "bce": "sigmoid"}[loss] and meta["arch"] == "resnet18"
    sums = got.sum(axis=1)
    if loss == "kl":  # probabilities: the score function is in the graph
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    else:
        assert ((got > 0) & (got < 1)).all() and np.abs(sums - 1).max() > 1e-3
    one, _ = run_like_the_readme(str(tmp_path / "model.onnx"), [str(tmp_path / names[2])])  # the batch axis is free
    np.testing.assert_allclose(one[0], want[2], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--checkpoint", "{ckpt}", "--out", "{tmp}/model.csv"], "give a name ending in .onnx"),
        (["--checkpoint", "{tmp}/text.pt", "--out", "{tmp}/model.onnx"], "cannot be read as a checkpoint"),
        (["--checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/model.onnx"], "no checkpoint at"),
        (["--checkpoint", "{ckpt}", "--out", "{tmp}/nowhere/model.onnx"], "does not exist"),
        (["--checkpoint", "{ckpt}", "--store", "{tmp}/s.zarr", "--out", "{tmp}/model.onnx"], "one of them"),
    ],
)
def test_export_refuses_with_one_line(tmp_path, args, says):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    if "{ckpt}" in " ".join(args):
        make_checkpoint(ckpt)
    r = export(*[a.replace("{tmp}", str(tmp_path)).replace("{ckpt}", str(ckpt)) for a in args])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and says in r.output, r.output
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".onnx")]
