"""What cdul-extract shows: the progress bar of a run, the summary tables after it, and the
report of ``--verify`` on a store's health."""

from __future__ import annotations

import time

import click

from .common import fail, table, warn


def verify_store(url: str) -> None:
    """--verify: report the health of the store at url; exit 1 when it is damaged."""
    from cdul.extractor.tiling import describe_local
    from cdul.store import Store, StoreError, layout, leftovers, verify

    try:
        store = Store.open(url)
        damage = verify(store)
        notes = leftovers(store)
    except StoreError as exc:
        fail(str(exc))
    for note in notes:
        click.echo(f"found: {note}")
    if not damage:
        done = int(store.done_flags().sum())
        state = "complete" if store.attrs.get("complete") else f"{store.n_chunks - done} chunks not done yet"
        local = describe_local(layout.local_mode(store.attrs))
        click.echo(f"{url}: {done} of {store.n_chunks} chunks done and healthy ({state}; {local})")
        return
    for d in damage:
        click.echo(f"damaged: {d}", err=True)
    fail(
        f"{url}: {len({d.chunk for d in damage})} damaged chunks; rerun the cdul-extract command that made it to "
        "re-extract them"
    )


class ProgressBar:
    """The progress bar: images/s from tqdm, tiles/s beside it."""

    def __init__(self, quiet: bool):
        self.quiet, self.tqdm, self.tiles, self.started = quiet, None, 0, time.time()

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.started = time.time()
        self.tqdm = tqdm(total=total, unit="img", desc="extract", disable=self.quiet, dynamic_ncols=True, smoothing=0.1)

    def update(self, images: int, tiles: int) -> None:
        self.tiles += tiles
        if self.tqdm is not None:
            self.tqdm.update(images)
            elapsed = max(time.time() - self.started, 1e-9)
            self.tqdm.set_postfix_str(f"{self.tiles / elapsed:.1f} tiles/s", refresh=False)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def print_summary(store, result: dict, speed: dict) -> None:
    """The run's counts and speed, the pseudo-label mAPs when the store has ground truth, and
    the first failed images."""
    s = result["summary"]
    secs = max(speed["seconds"], 1e-9)
    rows = [
        ("images", s["images"]),
        ("ok", s["ok"]),
        ("failed", s["failed"]),
        ("without tiles", s["no_tiles"]),
        ("tiles", s["tiles"]),
    ]
    if speed["images"]:
        work = max(secs - speed.get("load_seconds", 0.0), 1e-9)
        rows += [
            ("this run: seconds", f"{speed['seconds']:.1f}"),
            ("  of which start-up (model, workers)", f"{speed.get('load_seconds', 0.0):.1f}"),
            ("images/s (after start-up)", f"{speed['images'] / work:.2f}"),
            ("tiles/s (after start-up)", f"{speed['tiles'] / work:.1f}"),
        ]
    click.echo(table(rows, ("store " + store.url, "")))
    m = s.get("pseudo_label_map")
    if m:
        click.echo()
        click.echo(
            table(
                [
                    ("S_g (global)", f"{m['global']:.2f}"),
                    ("S_ag (aggregated local)", f"{m['aggregated']:.2f}"),
                    ("y0 (initial pseudo label)", f"{m['y0']:.2f}"),
                ],
                (f"pseudo-label mAP (zeta {m['zeta']:g}, lambda {m['lam']:g}, {m.get('ap', 'all-points')} AP)", "mAP"),
            )
        )
        if store.attrs.get("model", {}).get("pretrained") == "none":
            warn("these mAPs come from a CLIP with random weights (--pretrained none): they are meaningless")
    if result["failures"]:
        click.echo()
        click.echo(f"{s['failed']} images failed (reasons in the store, images/error); the first ones:")
        for name, reason in list(result["failures"].items())[:10]:
            click.echo(f"  {name}: {reason}")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (host or device memory; a worker's error
    arrives as its text, which names the exception's type)."""
    text = str(exc)
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or any(s in text for s in ("OutOfMemoryError", "MemoryError:", "can't allocate memory"))
    )


def smaller_run(plan) -> str:
    """The options that make ``plan``'s run need less memory, as advice."""
    config = plan.worker.config
    smaller = [f"--batch-size (now {plan.worker.run.batch_size})"]
    if config.local == "dense":
        smaller.append(f"--dense-size (now {config.dense_size})")
    if config.keep_tiles:
        smaller.append("--max-tiles or --chunk-len")
    return f"lower {', '.join(smaller)}"


def memory_advice(plan, exc: BaseException) -> str:
    """One line: what ran out and which options make the run smaller."""
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    what = what if len(what) <= 160 else what[:157] + "..."
    return f"out of memory ({what}): {smaller_run(plan)}"


def worker_hint(plan, exc: BaseException) -> str:
    """What to do about a worker's failure, where its text tells: memory or a full disk."""
    if out_of_memory(exc):
        return f" ({smaller_run(plan)})"
    return " (disk full? free some space)" if "No space left" in str(exc) else ""
