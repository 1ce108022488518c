"""--pretrained FILE with a plain open_clip name: OpenAI's own checkpoints (TorchScript
archives, or state dicts with their extra entries) get QuickGELU, as the openai tag does;
open_clip's own files keep the architecture's GELU. Tiny random-weight models, offline."""

import zipfile

import open_clip
import pytest
import torch

from cdul.extractor.clip_model import load_clip, register_model

EXTRA = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}


class Node(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def archive(state: dict, path: str) -> None:
    """A TorchScript archive holding ``state`` under its dotted names, as OpenAI's .pt files."""
    root = Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if name not in node._modules:
                node.add_module(name, Node())
            node = node._modules[name]
        node.register_buffer(leaf, value.clone())
    torch.jit.save(torch.jit.script(root), path)


@pytest.fixture(scope="module")
def tiny():
    arch = register_model("cdul-tiny-vit")
    torch.manual_seed(3)
    return arch, open_clip.create_model(arch).state_dict()


def load(arch: str, path: str):
    bundle = load_clip(arch, path, ["cat", "dog"])
    acts = {type(m).__name__ for m in bundle.visual.modules() if "GELU" in type(m).__name__}
    return bundle, acts


@pytest.mark.parametrize("kind", ["torchscript", "state dict"])
def test_openai_checkpoint_files_get_quickgelu(tiny, tmp_path, kind):
    arch, state = tiny
    path = str(tmp_path / "ViT.pt")
    if kind == "torchscript":
        archive({**state, **EXTRA}, path)
        names = zipfile.ZipFile(path).namelist()
        assert any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)
    else:
        torch.save({**state, **EXTRA}, path)
    bundle, acts = load(arch, path)
    assert acts == {"QuickGELU"} and bundle.info["quick_gelu_forced"]
    want = open_clip.create_model(arch, force_quick_gelu=True)
    want.load_state_dict(state)
    assert torch.equal(bundle.visual.conv1.weight, want.visual.conv1.weight)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(bundle.visual(x), want.eval().visual(x))


def test_open_clip_state_dict_keeps_gelu(tiny, tmp_path):
    arch, state = tiny
    path = str(tmp_path / "laion.pt")
    torch.save(state, path)
    bundle, acts = load(arch, path)
    assert acts == {"GELU"} and not bundle.info["quick_gelu_forced"]
