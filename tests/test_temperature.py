"""The logit scale multiplies the cosine similarities (docs/algorithm.md §2.2 and §6).

A public reproduction divided by model.logit_scale (ln 100) instead: every vector it
produced was nearly uniform. These tests fail for a divisor, for ln(s) used as the scale,
and for a scale that is not read from the model."""

import math
import os

import numpy as np
import open_clip
import pytest
import torch
import zarr
from click.testing import CliRunner
from clip_reference import Reference
from extract_runs import extract_args

from cdul.cli.extract import main as extract
from cdul.extractor.clip_model import load_clip, register_model
from cdul.kernels import score_segments

ARCH = "cdul-tiny-rn"


def planted(c: int = 20, d: int = 32, target: int = 3, tiles: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = torch.linalg.qr(torch.randn(d, c, generator=g, dtype=torch.float64))[0].T.float()  # orthonormal rows
    rows = text[target] + 0.05 * torch.randn(1 + tiles, d, generator=g)
    return rows, torch.tensor([0, 1 + tiles]), text


def test_planted_near_one_hot_similarity_is_sharp():
    emb, offsets, text = planted()
    sc = score_segments(emb, offsets, text, logit_scale=100.0)
    assert sc.global_.max() > 0.9 and int(sc.global_.argmax()) == 3
    assert sc.alpha[0, 3] > 0.9 and sc.beta[0, 3] > 0.9


@pytest.mark.parametrize("wrong_scale", [math.log(100.0), 1 / math.log(100.0), 1.0])
def test_the_wrong_scales_would_fail_that_test(wrong_scale):
    emb, offsets, text = planted()
    assert score_segments(emb, offsets, text, logit_scale=wrong_scale).global_.max() < 0.9


def test_logit_scale_is_exp_of_the_models_parameter(tmp_path):
    register_model(ARCH)
    torch.manual_seed(0)
    net = open_clip.create_model(ARCH, pretrained=None)
    net.logit_scale.data.fill_(math.log(100.0))
    torch.save(net.state_dict(), tmp_path / "m.pt")
    bundle = load_clip(ARCH, str(tmp_path / "m.pt"), ["cat", "dog"])
    assert bundle.logit_scale == pytest.approx(100.0, rel=1e-5)


def _plant_class(model, classes: list[str], target: str, image_emb: np.ndarray, seed: int = 0):
    """Re-solve the text projection so that the prompt of `target` embeds exactly as the image
    and every other prompt orthogonally to it."""
    tokens = open_clip.get_tokenizer(ARCH)([f"a photo of a {c}." for c in classes])
    width = model.text_projection.shape[0]
    with torch.no_grad():
        keep = model.text_projection.data.clone()
        model.text_projection.data = torch.eye(width, keep.shape[1])
        pooled = model.encode_text(tokens).double()  # [C, width], the features before projection
        model.text_projection.data = keep
    rng = np.random.default_rng(seed)
    e = image_emb / np.linalg.norm(image_emb)
    goal = rng.normal(size=(len(classes), len(e)))
    goal -= np.outer(goal @ e, e)  # orthogonal to the image
    goal[classes.index(target)] = e
    proj = torch.linalg.lstsq(pooled, torch.from_numpy(goal)).solution
    model.text_projection.data = proj.float()


def test_end_to_end_planted_image_is_recognised(voc_root, tmp_path):
    register_model(ARCH)
    torch.manual_seed(5)
    model = open_clip.create_model(ARCH, pretrained=None).eval()
    model.logit_scale.data.fill_(math.log(100.0))
    store_classes = [
        "aeroplane",
        "bicycle",
        "bird",
        "boat",
        "bottle",
        "bus",
        "car",
        "cat",
        "chair",
        "cow",
        "dining table",
        "dog",
        "horse",
        "motorbike",
        "person",
        "potted plant",
        "sheep",
        "sofa",
        "train",
        "tv monitor",
    ]
    chelsea = os.path.join(voc_root, "VOCdevkit", "VOC2012", "JPEGImages", "chelsea.jpg")
    image_emb = Reference(model, ARCH, store_classes).embed(Reference.open(chelsea))
    _plant_class(model, store_classes, "cat", image_emb)
    torch.save(model.state_dict(), tmp_path / "planted.pt")
    out = str(tmp_path / "s.zarr")
    result = CliRunner().invoke(
        extract,
        extract_args(voc_root, out, model=ARCH, pretrained=tmp_path / "planted.pt", quiet=True, workers=0),
    )
    assert result.exit_code == 0, result.output
    store = zarr.open_group(out, mode="r")
    assert list(store.attrs["classes"]) == store_classes
    row = [str(x) for x in store["images/id"][:]].index("JPEGImages/chelsea.jpg")
    s_g = store["sim/global"][row]
    assert s_g.max() > 0.9 and store_classes[int(s_g.argmax())] == "cat", s_g
    assert store.attrs["model"]["logit_scale"] == pytest.approx(100.0, rel=1e-5)
