import os

# Before anything imports triton: its kernels run through the interpreter on the CPU.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download anything

import pytest
import torch
from voc_fixtures import make_voc

TINY_MODEL = "cdul-tiny-rn"  # a random-weight ResNet CLIP small enough for CPU tests


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> str:
    """A small VOC 2012 layout: 5 real photos, 6 odd generated images, 9 generated ones."""
    root = tmp_path_factory.mktemp("voc")
    make_voc(str(root), n_generated=9)
    return str(root)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return TINY_MODEL
