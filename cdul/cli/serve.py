"""cdul-serve: a small web application to browse, search and check a store's labels."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import click

from .common import CONTEXT, decision_options, fail, version_option

HELP = """Serve the images of one or several stores in a browser: per class ranked by a
label round (or S_g, S_ag, y0) with the decided labels next to the ground truth, per image
its tiles, scores over the rounds and nearest neighbours, search by text or by example,
and an overview with the pseudo-label mAP per round. Every page has its data as JSON at
/api + its path. Decided labels follow the rule cdul-export applies (--threshold, --top-k).

\b
  cdul-serve --store voc12_train.zarr                 # then open http://127.0.0.1:8000/
  cdul-serve --store a.zarr --store b.zarr --data /data/VOCdevkit --port 8080
  ssh -L 8000:localhost:8000 gpu-box   # from a laptop, to a server on gpu-box
  cdul-serve --store s.zarr --threshold 0.3 --cache-dir /tmp/thumbs --cache-mb 1024
  cdul-serve --store s.zarr --top-k 2       # decided labels: each image's two best classes
  cdul-serve --store s.zarr --host 0.0.0.0 --allow-remote   # any machine that reaches this one
"""

LOCAL = ("127.0.0.1", "localhost", "::1")


@click.command(help=HELP, context_settings=CONTEXT)
@version_option
@click.option("--store", "stores", multiple=True, required=True, help="A store (give several to serve several).")
@click.option(
    "--data",
    "roots",
    multiple=True,
    help="Dataset root the images are read from, when not where cdul-extract read them: once for every "
    "store, or once per store in the order of --store.",
)
@click.option("--host", default="127.0.0.1", help="Address to listen on (this machine only by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, help="Port to listen on.")
@click.option(
    "--allow-remote", is_flag=True, help="Listen on an address other machines can reach (refused without it)."
)
@click.option("--cache-dir", default=None, help="Keep thumbnails in this folder (outside the dataset) across restarts.")
@click.option("--cache-mb", type=click.IntRange(min=1), default=256, help="Memory for thumbnails and store chunks.")
@click.option("--weights-cache", default=None, help="open_clip weights cache, for search by text or upload.")
@decision_options
def main(stores, roots, host, port, allow_remote, decision, cache_dir, cache_mb, weights_cache):
    if host not in LOCAL and not allow_remote:
        fail(
            f"--host {host} would let other machines read these images; pass --allow-remote to mean it "
            "(or reach a local server through an SSH tunnel)"
        )
    if len(roots) not in (0, 1, len(stores)):
        fail(f"--data: give it once, or once per store ({len(stores)}), not {len(roots)} times")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    started = time.perf_counter()
    app = build(stores, roots, decision, cache_dir, cache_mb << 20, weights_cache)
    import uvicorn

    threading.Thread(target=_warm_up, daemon=True).start()
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    click.echo(
        f"serving {len(stores)} store(s) at {where} (ready in {time.perf_counter() - started:.2f} s; Ctrl-C stops)"
    )
    if host not in LOCAL:
        click.secho(f"warning: listening on {host}: anyone who can reach it can browse these images", fg="yellow")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    except (OSError, SystemExit):
        fail(f"cannot listen on {host}:{port} (see above)")


def _warm_up() -> None:
    """Import, beside the running server, what the first pages need and start-up does not
    (torch and torchvision, for decoding, the scores S_ag and y0 and the mAP of a round): the
    server answers at once, and its first pages do not wait for the imports."""
    import cdul.report
    import cdul.trainer.evaluate  # noqa: F401

    with contextlib.suppress(ImportError):
        import torchvision.io  # noqa: F401  (decode_image's JPEG path)


def build(stores, roots, decision, cache_dir, cache_bytes: int, weights_cache):
    """The application over the stores (their attributes read, nothing else)."""
    from cdul.serve import Catalog, Finder, Pictures, Served, check_cache_dir, create_app
    from cdul.store import StoreError

    served = []
    try:
        for i, url in enumerate(stores):
            root = roots[0] if len(roots) == 1 else roots[i] if roots else None
            cat = Catalog(url, data_root=root, rule=decision, cache_bytes=cache_bytes // (2 * len(stores)))
            if cache_dir:
                check_cache_dir(cache_dir, [cat.root])
            pictures = Pictures(cat, cache_dir, cache_bytes // (2 * len(stores)))
            served.append(Served(cat, pictures, Finder(cat, weights_cache)))
    except (StoreError, ValueError, OSError) as exc:
        fail(str(exc))
    return create_app(served)


if __name__ == "__main__":
    main()
