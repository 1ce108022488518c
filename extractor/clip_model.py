"""Loading a CLIP model through open_clip, with errors that say what to do when offline.

``model`` is an open_clip architecture name (``RN50x64``), an ``hf-hub:``/``local-dir:``
reference, or the path of a JSON architecture config (``{"embed_dim": ..., "vision_cfg":
..., "text_cfg": ...}``, as open_clip's own configs). ``pretrained`` is an open_clip tag
(``openai``), the path of a checkpoint file, or ``none`` for random weights.

OpenAI trained CLIP with QuickGELU (x sigmoid(1.702 x)); open_clip's plain names
(``ViT-B-16``) build GELU. For the ``openai`` tag QuickGELU is forced. A file is OpenAI's when
it is one of its TorchScript archives (a zip with ``constants.pkl`` and ``code/`` entries,
as OpenAI ships its ``.pt`` files) or a state dict with the entries only those archives
hold (``input_resolution``, ``context_length``, ``vocab_size``); QuickGELU is forced for it
too. A converted copy (open_clip's hub files) has open_clip's layout and no such mark:
give the ``-quickgelu`` name (``ViT-B-16-quickgelu``) for it.

Weights are looked for in the local caches first. When they are not there and the hub
cannot be reached, the error is one line naming the file to pass instead; it never sits
through minutes of download retries.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .options import PROMPT_TEMPLATE

RANDOM = ("none", "random", "")


class WeightsUnavailableError(Exception):
    """The asked-for weights are neither cached nor downloadable; the message says what to pass."""


@dataclass
class ClipBundle:
    visual: torch.nn.Module
    text: torch.Tensor  # [C, D] float32, L2-normalised class embeddings
    logit_scale: float  # s = exp(model.logit_scale), multiplied into the cosine similarities
    input_size: int
    mean: tuple
    std: tuple
    interpolation: str
    resize_mode: str
    embed_dim: int
    info: dict  # provenance for the store's attrs
    # texts -> [n, D] normalised embeddings, one text a row (load_clip(..., keep_text=True))
    encode_texts: Callable[[list[str]], torch.Tensor] | None = None


def register_model(model: str) -> str:
    """A JSON config path becomes an architecture name open_clip knows; cdul's own small
    test architectures (cdul-tiny-rn, cdul-tiny-vit) are known by name."""
    import open_clip

    if model.endswith(".json") and os.path.isfile(model):
        open_clip.add_model_config(model)
        return Path(model).stem
    if model.startswith("cdul-") and model not in open_clip.list_models():
        open_clip.add_model_config(_bundled_configs())
    return model


def model_config(model: str) -> dict:
    """The open_clip architecture config of a model (no weights loaded)."""
    import open_clip

    arch = register_model(model)
    if arch.startswith("local-dir:"):
        cfg_path = Path(arch[len("local-dir:") :]) / "open_clip_config.json"
        if cfg_path.is_file():
            import json

            return json.loads(cfg_path.read_text())["model_cfg"]
    cfg = open_clip.get_model_config(arch)
    if not cfg:
        raise ValueError(
            f"unknown model {model!r}: give an open_clip name (see open_clip.list_models()), "
            "a local-dir: folder or an architecture JSON file"
        )
    return cfg


def model_embed_dim(model: str) -> int:
    """The embedding width of an architecture, from its config alone (no weights loaded)."""
    return int(model_config(model)["embed_dim"])


def model_input_size(model: str) -> int:
    size = model_config(model).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def check_model(model: str) -> None:
    """Refuse an architecture open_clip does not know, before anything is created for it
    (hub references are checked when they load)."""
    if not register_model(model).startswith("hf-hub:"):
        model_embed_dim(model)


def check_weights_file(path: str) -> None:
    """Refuse a --pretrained file that is not a checkpoint, before any worker starts
    (a zip checkpoint is mapped, not read, so this is cheap for large ones)."""
    import zipfile

    if _is_jit_archive(path):
        return
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # pickle and zip errors of several types
        raise WeightsUnavailableError(f"--pretrained {path} is not a weights file ({type(exc).__name__})") from None


def _bundled_configs() -> Path:
    return Path(__file__).resolve().parent / "model_configs"


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_weights(cfg: dict, cache_dir: str | None) -> str | None:
    """The local file for a pretrained tag if a previous download left it in a cache."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith(".bin"):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def resolve_weights(arch: str, pretrained: str, cache_dir: str | None = None) -> tuple[str | None, dict]:
    """-> (checkpoint path or tag to hand to open_clip, or None for random; the tag's config)."""
    import open_clip

    if pretrained.lower() in RANDOM:
        return None, {}
    if os.path.isfile(pretrained):
        check_weights_file(pretrained)
        return pretrained, {}
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsUnavailableError(
            f"--pretrained {pretrained!r} is neither a file nor a tag of {arch} "
            f"(tags: {', '.join(tags) or 'none'}); pass a checkpoint path or 'none'"
        )
    cached = _cached_weights(cfg, cache_dir)
    if cached:
        return cached, cfg
    if not _hub_reachable():
        where = (cfg.get("hf_hub") and f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}") or cfg.get("url")
        raise WeightsUnavailableError(
            f"{arch} '{pretrained}' weights are not cached and the network is unreachable: download them on a "
            f"connected machine ({where}) and pass --pretrained /path/to/the/file"
        )
    return pretrained, cfg


OPENAI_ONLY = ("input_resolution", "context_length", "vocab_size")  # entries of OpenAI's archives


def _is_jit_archive(path: str) -> bool:
    import zipfile

    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in f"/{n}" for n in names)


def _openai_state(path: str) -> dict | None:
    """The weights of an OpenAI checkpoint file without its extra entries; None for another file."""
    import zipfile

    if _is_jit_archive(path):
        state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except Exception:  # not a torch file (safetensors, ...): open_clip reads it
            return None
        if not isinstance(state, dict) or not all(k in state for k in OPENAI_ONLY):
            return None
    return {k: v for k, v in state.items() if k not in OPENAI_ONLY}


@contextlib.contextmanager
def _quiet():
    """open_clip logs through the root logger and huggingface_hub warns on every retry;
    cdul reports the outcome itself."""
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    previous = [q.level for q in loggers]
    for q in loggers:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for q, level in zip(loggers, previous):
            q.setLevel(level)


def _create_kwargs(tag_cfg: dict) -> dict:
    """open_clip.create_model's options for a pretrained tag's configuration."""
    kwargs: dict = {}
    if tag_cfg.get("quick_gelu"):
        # The tag was trained with QuickGELU; open_clip only warns on a mismatch, which
        # silently changes every activation of e.g. RN50x64 + openai.
        kwargs["force_quick_gelu"] = True
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    if preprocess:
        kwargs["force_preprocess_cfg"] = preprocess
    return kwargs


def _view_fields(pcfg: dict) -> tuple[int, str, str]:
    size = pcfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return size, pcfg.get("interpolation", "bicubic"), pcfg.get("resize_mode", "shortest")


def eval_preprocess(model: str, pretrained: str) -> tuple[int, str, str]:
    """(input size, interpolation, resize mode) of the model's eval preprocess from its
    configuration alone: the model is built on the meta device, no weights are read or
    fetched. The decoding workers start with it while the weights load."""
    import open_clip

    arch = register_model(model)
    tag_cfg: dict = {}
    if pretrained.lower() not in RANDOM and not os.path.isfile(pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) or {}
    with _quiet(), torch.device("meta"):
        net = open_clip.create_model(arch, pretrained=None, device="meta", **_create_kwargs(tag_cfg))
    return _view_fields(open_clip.get_model_preprocess_cfg(net))


def load_clip(
    model: str,
    pretrained: str,
    classes: list[str],
    *,
    device="cpu",
    cache_dir: str | None = None,
    template: str = PROMPT_TEMPLATE,
    ensemble: bool = False,
    keep_text: bool = False,
) -> ClipBundle:
    """The image tower on `device` in eval mode, and the class embeddings of `classes`;
    with ``keep_text``, also the text tower (on the CPU) for any text (``encode_texts``)."""
    import open_clip

    arch = register_model(model)
    weights, tag_cfg = resolve_weights(arch, pretrained, cache_dir)
    openai = _openai_state(weights) if weights and os.path.isfile(weights) else None
    kwargs = _create_kwargs({**tag_cfg, "quick_gelu": True} if openai is not None else tag_cfg)
    try:
        with _quiet():
            if weights is None:
                # Random weights from a fixed seed: every worker (and every rerun) builds the
                # same model, so a store never mixes two random models.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    net = open_clip.create_model(arch, pretrained=None, **kwargs)
            elif openai is not None:
                net = open_clip.create_model(arch, pretrained=None, **kwargs)
                net.load_state_dict(openai, strict=True)
            else:
                net = open_clip.create_model(arch, pretrained=weights, cache_dir=cache_dir, **kwargs)
    except (RuntimeError, FileNotFoundError) as exc:
        if "download" in str(exc).lower():
            raise WeightsUnavailableError(
                f"{arch} '{pretrained}' weights could not be downloaded ({str(exc).splitlines()[0][:160]}); "
                "pass --pretrained /path/to/the/file"
            ) from None
        if "state_dict" in str(exc):
            raise WeightsUnavailableError(
                f"--pretrained {pretrained}: its weights do not fit {arch} ({str(exc).splitlines()[-1].strip()[:120]}"
                "...); pass the checkpoint of this architecture"
            ) from None
        raise
    net.eval()
    pcfg = open_clip.get_model_preprocess_cfg(net)
    size, interpolation, resize_mode = _view_fields(pcfg)
    logit_scale = float(net.logit_scale.detach().exp().item())
    tokenizer = open_clip.get_tokenizer(arch)
    text = encode_classes(net, tokenizer, classes, template, ensemble)
    visual = net.visual.to(device).eval()
    embed_dim = int(text.shape[1])
    encode_texts = functools.partial(encode_classes, net, tokenizer, template="{}") if keep_text else None
    del net  # unless kept above, the text tower is no longer needed: only the image tower stays
    info = {
        "name": model,
        "arch": arch,
        "pretrained": pretrained if weights else "none",
        "weights_file": weights if weights and os.path.isfile(str(weights)) else None,
        "input_size": size,
        "logit_scale": logit_scale,
        "embed_dim": embed_dim,
        "quick_gelu_forced": bool(kwargs.get("force_quick_gelu")),
    }
    return ClipBundle(
        visual,
        text.to(device),
        logit_scale,
        size,
        tuple(pcfg.get("mean")),
        tuple(pcfg.get("std")),
        interpolation,
        resize_mode,
        embed_dim,
        info,
        encode_texts,
    )


def class_prompts(classes: list[str], template: str = PROMPT_TEMPLATE, ensemble: bool = False) -> list[list[str]]:
    """The prompt texts of each class: one template, or open_clip's ImageNet template list."""
    if ensemble:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [[t(name) for t in OPENAI_IMAGENET_TEMPLATES] for name in classes]
    if "{}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{}}' for the class name")
    return [[template.format(name)] for name in classes]


@torch.no_grad()
def encode_classes(net, tokenizer, classes, template=PROMPT_TEMPLATE, ensemble=False) -> torch.Tensor:
    """T: [C, D], each row the normalised (mean of normalised) prompt embedding(s) of a class."""
    rows = []
    for prompts in class_prompts(classes, template, ensemble):
        emb = F.normalize(net.encode_text(tokenizer(prompts)).float(), dim=-1)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)
