"""A store extracted with random CLIP weights is flagged in one warning line by the commands
that read it (cdul-train and cdul-eval: tests/test_trainer_resume.py; cdul-report: the demo's
test)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from embedding_stores import clustered, embedding_store

from cdul.cli.refine import main as refine
from cdul.store import Store

LINE = "comes from a CLIP with random weights (--pretrained none)"


@pytest.fixture(params=["none", "openai"])
def store(request, tmp_path):
    emb, _, targets = clustered(64)
    url = str(tmp_path / "s.zarr")
    embedding_store(url, emb, np.clip((targets + 1) / 2, 0.05, 0.95).astype(np.float32), targets)
    Store.open(url, mode="r+").set_attrs(model={"name": "ViT-B-32", "pretrained": request.param})
    return url, request.param


def test_random_weights_flagged_once(store):
    url, pretrained = store
    result = CliRunner().invoke(refine, ["--store", url, "--knn", "4", "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    flagged = [line for line in result.stderr.splitlines() if LINE in line]
    assert len(flagged) == (1 if pretrained == "none" else 0), result.stderr
    assert LINE not in result.stdout
    if flagged:
        end = ": its scores and labels are meaningless; extract with real weights for real results"
        assert flagged[0] == f"warning: {url} {LINE}{end}"
