"""cdul-search: the store's images nearest to a text or an image, in CLIP space."""

from __future__ import annotations

import json
import os

import click
import numpy as np

from cdul.index import choose_index
from cdul.index.faiss_index import INDEX_KINDS

from .common import CONTEXT, fail, note, table, version_option, warn_random_clip
from .options import record_option

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
@record_option(
    choose_index,
    "kind",
    "--index",
    "kind",
    type=click.Choice(INDEX_KINDS),
    help="Exact (flat) up to 200,000 images with auto, an IVF index beyond.",
)
@click.option("--cache-dir", default=None, help="open_clip weights cache.")
def main(query, store_url, image_path, k, json_out, kind, cache_dir):
    if (query is None) == (image_path is None):
        raise click.UsageError("give a text QUERY or --image PATH (one of them)")
    if query is not None and not query.strip():
        fail('the text QUERY is empty: say what to look for ("a photo of a dog")')
    from cdul.data.decode import DecodeError
    from cdul.extractor.clip_model import WeightsUnavailableError
    from cdul.index import load_or_build, search
    from cdul.limits import bounded
    from cdul.store import StoreError, layout, open_verified

    try:
        store = open_verified(store_url)
        if not store.has(layout.EMB_GLOBAL):
            fail(f"{store_url} has no image embeddings: extract with --keep-embeddings")
        vector = encode_query(store, query, image_path, cache_dir)
        index = load_or_build(store, choose_index(store.n, kind))
        k = bounded(k, index.ntotal, "-k", f"images of {store_url} with an embedding", note)
        scores, rows = search(index, vector[None], k)
    except DecodeError as exc:
        fail(f"--image {image_path}: {exc}")
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
        from cdul.data import outputs
        from cdul.data.fs import atomic_write_text

        try:
            atomic_write_text(
                outputs.output_file(json_out, "--json"),
                json.dumps({"query": query or os.path.abspath(image_path), "hits": hits}, indent=1),
            )
        except (outputs.OutputError, OSError) as exc:
            fail(str(exc))


def encode_query(store, text: str | None, image_path: str | None, cache_dir=None) -> np.ndarray:
    """The normalised CLIP embedding of the query, with the model the store was built with."""
    encoder = QueryEncoder(store, cache_dir)
    if text is not None:
        return encoder.text(text)
    assert image_path is not None  # a text or an image: main() refuses neither
    from cdul.data.inputs import read_input

    return encoder.image(read_input(image_path, "--image"))  # a regular file, or one line saying what it is


class QueryEncoder:
    """The store's own CLIP, loaded once: a text or an image's bytes -> its normalised
    embedding [D] (float32), comparable with the store's ``emb/global``. ValueError for a
    store that does not record its model; WeightsUnavailableError when its weights cannot
    be had; DecodeError for bytes that are not an image."""

    def __init__(self, store, cache_dir=None):
        from cdul.extractor.clip_model import load_clip
        from cdul.extractor.views import ViewMaker

        info = store.section("model")
        if "name" not in info:
            raise ValueError(f"{store.url} does not record its model (was extraction finished?)")
        weights = info.get("weights_file") or info.get("pretrained") or "none"
        # one throwaway class embedding: the text tower is kept for the queries
        self.bundle = b = load_clip(info["name"], weights, ["x"], cache_dir=cache_dir, keep_text=True)
        self.maker = ViewMaker(b.input_size, b.mean, b.std, interpolation=b.interpolation, resize_mode=b.resize_mode)
        self.exif = bool(store.section("config").get("exif", True))

    def text(self, text: str) -> np.ndarray:
        assert self.bundle.encode_texts is not None  # kept by load_clip(keep_text=True)
        return self.bundle.encode_texts([text])[0].numpy().astype(np.float32)

    def image(self, data: bytes) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from cdul.data.decode import decode_image

        view, _ = self.maker.make(torch.tensor(decode_image(data, exif=self.exif)), None)
        with torch.inference_mode():
            emb = F.normalize(self.bundle.visual(view).float(), dim=-1)
        return emb[0].numpy()
