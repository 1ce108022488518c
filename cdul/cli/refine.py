"""cdul-refine: smooth the pseudo labels over each image's nearest neighbours in CLIP space,
or (--gda) label every image from its patches with a Gaussian discriminant fitted on the bank."""

from __future__ import annotations

import click

from cdul.index import choose_index, refine_labels
from cdul.index.faiss_index import INDEX_KINDS
from cdul.index.gda_options import GdaOptions

from .common import CONTEXT, fail, note, version_option, warn_random_clip, write_error
from .options import record_option

HELP = """Refine the latest label round of STORE over each image's K nearest neighbours:

\b
    y <- (1 - W) * y + W * mean of y over the K nearest images (the image itself excluded)

Neighbours come from a faiss inner-product index over the stored global image embeddings
(extract with --keep-embeddings). The result is written as a new label round, so
cdul-train starts from it. Example:

\b
  cdul-refine --store voc12_train.zarr --knn 10 --weight 0.3

With --gda (PIAA's training-free method; the store from cdul-extract --local dense
--keep-patches 512 --keep-patch-embeddings): fit a Gaussian discriminant (class means, one
shared shrunk covariance) on the patch bank, and write as a new round

\b
    y = W_CLS * softmax(CLS_SCALE * cos(image, T)) + (1 - W_CLS) * softmax(PATCH_SCALE * max_j P_j)
    P_j = softmax(GDA logits of patch j / TEMPERATURE)

The fit and the logits run in float32, as PIAA's code. PIAA fits on the train split's bank
and labels val: give the train store with --gda-bank, e.g.


  cdul-refine --store voc12_val.zarr --gda --gda-bank voc12_train.zarr

The kNN options do not apply to it.
"""


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.option("--store", "store_url", required=True, help="Store written by cdul-extract --keep-embeddings.")
@click.option("--knn", type=click.IntRange(min=1), default=10, help="Neighbours per image (K).")
@click.option("--weight", type=click.FloatRange(0.0, 1.0), default=0.3, help="Weight W of the neighbours' mean.")
@record_option(
    refine_labels,
    "from_round",
    "--from-round",
    type=click.IntRange(min=0),
    help="Label round to refine.  [default: latest]",
)
@record_option(
    choose_index,
    "kind",
    "--index",
    "kind",
    type=click.Choice(INDEX_KINDS),
    help="Exact (flat) up to 200,000 images with auto, an IVF index beyond.",
)
@record_option(choose_index, "nlist", "--nlist", type=click.IntRange(min=1), help="IVF lists.  [default: 4 sqrt(N)]")
@record_option(
    choose_index, "nprobe", "--nprobe", type=click.IntRange(min=1), help="IVF lists probed per query.  [default: 16]"
)
@record_option(
    refine_labels,
    "gpu",
    "--gpu/--no-gpu",
    help="Use faiss-gpu when it is installed and a GPU is there.  [default: auto]",
)
@record_option(
    refine_labels,
    "cache_bytes",
    "--cache-gb",
    derive=lambda n: n / 2**30,
    type=click.FloatRange(min=0.01),
    help="Memory for cached label chunks.",
)
@click.option("--gda", is_flag=True, help="Label from the patches with a Gaussian discriminant (see above).")
@record_option(
    GdaOptions, "weight", "--gda-weight", "w_cls", type=click.FloatRange(0.0, 1.0), help="W_CLS, the weight of S_cls."
)
@record_option(
    GdaOptions,
    "cls_scale",
    "--gda-cls-scale",
    "cls_scale",
    type=click.FloatRange(min=0.0, min_open=True),
    help="CLS_SCALE.",
)
@record_option(
    GdaOptions,
    "patch_scale",
    "--gda-patch-scale",
    "patch_scale",
    type=click.FloatRange(min=0.0, min_open=True),
    help="PATCH_SCALE (PIAA: 200 for VOC, 400 for COCO).",
)
@record_option(
    GdaOptions,
    "temperature",
    "--gda-temperature",
    "temperature",
    type=click.FloatRange(min=0.0, min_open=True),
    help="TEMPERATURE of the per-patch probabilities.",
)
@record_option(
    GdaOptions,
    "fit_scale",
    "--gda-fit-scale",
    "fit_scale",
    type=click.FloatRange(min=0.0, min_open=True),
    help="Scale of the first fit's probabilities, which pick the bank entries of the second "
    "(PIAA: 100 for VOC, 0.01 for COCO).",
)
@click.option(
    "--gda-bank",
    "bank_url",
    default=None,
    help="Store whose bank the fit uses, made with the same model and prompt (PIAA: the train split's, to "
    "label val). Example: --gda-bank voc12_train.zarr.  [default: STORE's own bank]",
)
@record_option(
    GdaOptions,
    "keep",
    "--gda-keep",
    "keep",
    help="Bank entries of the second fit, per class: piaa keeps those at or above mean + std of the first "
    "fit's probabilities (a class can lose them all, e.g. a lone entry); robust caps the threshold at the "
    "class's best, so each class keeps at least one. Example: --gda-keep robust.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(
    store_url,
    knn,
    weight,
    from_round,
    kind,
    nlist,
    nprobe,
    gpu,
    cache_gb,
    gda,
    w_cls,
    cls_scale,
    patch_scale,
    temperature,
    fit_scale,
    bank_url,
    keep,
    quiet,
):
    from tqdm import tqdm

    from cdul.index.gda import refine_gda
    from cdul.store import StoreError, StoreLock, StoreLockedError, open_verified

    try:
        with StoreLock(store_url):
            store = open_verified(store_url, mode="r+")
            if gda:
                opts = GdaOptions(w_cls, cls_scale, patch_scale, temperature, fit_scale, keep)
                with tqdm(total=store.n, unit="img", desc="refine", disable=quiet) as bar:
                    bank = open_verified(bank_url) if bank_url else None
                    k, empty = refine_gda(store, opts, bank_store=bank, progress=bar.update)
                if empty:
                    click.echo(
                        f"the second fit kept no bank entry of {len(empty)} classes, whose means are their text "
                        f"embeddings: {', '.join(empty)}"
                    )
                warn_random_clip(store_url, store.section("model"))
                click.echo(f"wrote label round {k} of {store_url} (Gaussian discriminant on the patch bank)")
                return
            spec = choose_index(store.n, kind, nlist, nprobe, note)
            with tqdm(total=store.n, unit="img", desc="refine", disable=quiet) as bar:
                k = refine_labels(
                    store,
                    knn,
                    weight,
                    spec,
                    from_round=from_round,
                    gpu=gpu,
                    cache_bytes=int(cache_gb * 2**30),
                    progress=bar.update,
                    note=note,
                )
                knn = store.round_array(k).attrs["knn"]
    except (StoreError, StoreLockedError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(write_error(store_url, exc))
    warn_random_clip(store_url, store.section("model"))
    click.echo(f"wrote label round {k} of {store_url} ({spec.kind} index, K={knn}, W={weight:g})")
