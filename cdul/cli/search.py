"""cdul-search: the store's images nearest to a text or an image, in CLIP space."""

from __future__ import annotations

import json
import os

import click
import numpy as np

from .common import CONTEXT, fail, table, version_option, warn_random_clip

HELP = """Find the images of STORE that best match QUERY (a text) or --image PATH, using the
store's own CLIP model and its stored image embeddings (extract with --keep-embeddings).

\b
  cdul-search --store voc12_train.zarr "a photo of a dog" -k 20
  cdul-search --store voc12_train.zarr --image query.jpg --json hits.json
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.argument("query", required=False)
@click.option("--store", "store_url", required=True, help="Store written by cdul-extract --keep-embeddings.")
@click.option("--image", "image_path", default=None, help="Search by this image instead of a text.")
@click.option("-k", "k", type=click.IntRange(min=1), default=20, help="How many images to return.")
@click.option("--json", "json_out", default=None, help="Also write the hits as JSON to this file.")
@click.option(
    "--index",
    "kind",
    type=click.Choice(["auto", "flat", "ivf"]),
    default="auto",
    help="Exact (flat) up to 200,000 images with auto, an IVF index beyond.",
)
@click.option("--cache-dir", default=None, help="open_clip weights cache.")
def main(query, store_url, image_path, k, json_out, kind, cache_dir):
    if (query is None) == (image_path is None):
        raise click.UsageError("give a text QUERY or --image PATH (one of them)")
    from cdul.extractor.clip_model import WeightsUnavailableError
    from cdul.index import choose_index, load_or_build, search
    from cdul.store import StoreError, layout, open_verified

    try:
        store = open_verified(store_url)
        if not store.has(layout.EMB_GLOBAL):
            fail(f"{store_url} has no image embeddings: extract with --keep-embeddings")
        vector = encode_query(store, query, image_path, cache_dir)
        index = load_or_build(store, choose_index(store.n, kind))
        scores, rows = search(index, vector[None], k)
    except (StoreError, WeightsUnavailableError, ValueError, OSError) as exc:
        fail(str(exc))
    warn_random_clip(store_url, store.section("model"))
    ids = store.read(layout.IDS)
    hits = [
        {"rank": i + 1, "id": str(ids[r]), "row": int(r), "score": float(s)}
        for i, (s, r) in enumerate(zip(scores[0], rows[0]))
        if r >= 0
    ]
    click.echo(table([(h["rank"], h["id"], f"{h['score']:.4f}") for h in hits], ("rank", "image", "cosine")))
    if json_out:
        from cdul.data.fs import atomic_write_text

        atomic_write_text(json_out, json.dumps({"query": query or os.path.abspath(image_path), "hits": hits}, indent=1))


def encode_query(store, text: str | None, image_path: str | None, cache_dir=None) -> np.ndarray:
    """The normalised CLIP embedding of the query, with the model the store was built with."""
    import torch
    import torch.nn.functional as F

    from cdul.data.decode import decode_image
    from cdul.extractor.clip_model import load_clip
    from cdul.extractor.views import ViewMaker

    info = store.attrs.get("model") or {}
    if not info:
        raise ValueError(f"{store.url} does not record its model (was extraction finished?)")
    weights = info.get("weights_file") or info.get("pretrained") or "none"
    template = "{}" if text is not None else "a photo of a {}."
    bundle = load_clip(info["name"], weights, [text or "x"], cache_dir=cache_dir, template=template)
    if text is not None:
        return bundle.text[0].numpy().astype(np.float32)
    assert image_path is not None  # a text or an image: main() refuses neither
    with open(image_path, "rb") as f:
        image = torch.tensor(decode_image(f.read(), exif=bool(store.attrs.get("config", {}).get("exif", True))))
    maker = ViewMaker(
        bundle.input_size, bundle.mean, bundle.std, interpolation=bundle.interpolation, resize_mode=bundle.resize_mode
    )
    view, _ = maker.make(image, None)
    with torch.inference_mode():
        emb = F.normalize(bundle.visual(view).float(), dim=-1)
    return emb[0].numpy()
