"""One extraction worker: the stages of ``stages.py`` wired by a short runner.

    loader (decode + pack, worker processes) -> ToDevice -> views -> Encoder -> Scorer
        -> ChunkResults -> ChunkWriter

Batches are fixed groups of whole images of one chunk and never mix chunks, so results do
not depend on how the work was distributed or resumed. ``extract_chunks`` times each stage
(host seconds; with ``sync_stages`` the device is waited for after each stage, so the
times include its work: for profiles only).
"""

from __future__ import annotations

import collections
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from cdul.data import sample_reader
from cdul.data.transfer import handed_over
from cdul.store import Store, layout

from .clip_model import eval_preprocess, load_clip
from .config import WorkerConfig
from .encoder import Encoder, dynamo_graphs
from .gpu_decode import DeviceDecode
from .local import Wiring, local_mode, result_specs
from .modes import STATIC_OUT, _tower
from .orphans import decoding_worker_init
from .packing import PackedBatch, ViewSpec
from .reader import BatchReader, BatchSampler, unbatched
from .stages import (
    ChunkResults,
    ChunkWriter,
    ExactViews,
    HostScores,
    KernelViews,
    Scorer,
    StageTimes,
    ToDevice,
    images_per_batch,
)
from .tiling import Tiling
from .views import ViewMaker

PREFETCH = 4  # packed batches each decoding worker keeps ready (in shared memory)...
PREFETCH_LARGE = 2  # ... or this many when a batch holds more than 64 images (dense mode's 256)


def loader_prefetch(per_batch: int) -> int:
    return PREFETCH if per_batch <= 64 else PREFETCH_LARGE


def early_view_spec(cfg: WorkerConfig) -> tuple[ViewSpec, Tiling | None] | None:
    """What the decoding workers need, from the model's configuration alone (no weights), so
    that they can start before the model is loaded; None where the configuration is not
    local (hub models): then they start after."""
    if cfg.config.model.startswith("hf-hub:"):
        return None
    try:
        size, interpolation, resize_mode = eval_preprocess(cfg.config.model, cfg.config.pretrained)
    except Exception:  # the model load that follows reports the problem
        return None
    return view_spec(cfg, size, interpolation, resize_mode)


def view_spec(cfg: WorkerConfig, size: int, interpolation: str, resize_mode: str) -> tuple[ViewSpec, Tiling | None]:
    """The views a worker cuts, for a model of input ``size`` (the local mode's)."""
    return local_mode(cfg.config.local).view_spec(cfg.config, size, interpolation, resize_mode)


_LOADED: dict = {}


def _loaded(cfg: WorkerConfig, classes: list[str], device: torch.device):
    """The model and its (compiled) tower; with ``RunOptions.reuse_loaded`` the last one is
    kept for the next call with the same model options in this process."""
    key = (
        cfg.config.model,
        cfg.config.pretrained,
        cfg.run.cache_dir,
        cfg.config.template,
        cfg.config.ensemble,
        tuple(classes),
        str(device),
        cfg.run.compile,
        cfg.config.local,
    )
    if key not in _LOADED or not cfg.run.reuse_loaded:
        _LOADED.clear()
        bundle = load_clip(
            cfg.config.model,
            cfg.config.pretrained,
            classes,
            device=device,
            cache_dir=cfg.run.cache_dir,
            template=cfg.config.template,
            ensemble=cfg.config.ensemble,
        )
        visual = local_mode(cfg.config.local).tower(bundle.visual)
        _LOADED[key] = (bundle, _tower(visual, device, cfg.run.compile))
    return _LOADED[key]


@dataclass
class Stages:
    views: Callable[[PackedBatch], object]  # views for the encoder (what the local mode's encoder takes)
    encoder: Encoder  # or what the local mode wraps it in
    scorer: Scorer
    spec: ViewSpec
    tiling: Tiling | None
    tower_encoder: Encoder  # the image tower's own encoder (the one a graph may run)


def build_stages(cfg: WorkerConfig, bundle, tower, device: torch.device, views_mode: str, tiles_max: int) -> Stages:
    """The views, encoder and scorer stages of a worker: the tower's encoder and views at the
    size of the local mode's view spec, wired by the local mode (``LocalMode.wire``)."""
    mode = local_mode(cfg.config.local)
    spec, tiling = view_spec(cfg, bundle.input_size, bundle.interpolation, bundle.resize_mode)
    size = spec.size
    compile_mode = cfg.run.compile  # resolved by the plan
    fixed = compile_mode != "none"
    tower_encoder = Encoder(
        tower,
        cfg.run.batch_size,
        device,
        cfg.config.precision,
        fixed,
        graph=compile_mode == "cuda-graph",
        static_out=compile_mode in STATIC_OUT,
    )
    tower_encoder.capture(size)  # a compiled tower compiles here
    pad = cfg.run.batch_size if fixed else 0

    def exact(px: int, cut: Tiling | None = None) -> ExactViews:
        maker = ViewMaker(
            px,
            bundle.mean,
            bundle.std,
            interpolation=bundle.interpolation,
            resize_mode=bundle.resize_mode,
            device=device,
            dtype=tower_encoder.in_dtype,
        )
        return ExactViews(maker, cut, pad)

    tower_views: KernelViews | ExactViews
    if views_mode == "kernel":
        tower_views = KernelViews(size, bundle.mean, bundle.std, device, tower_encoder.in_dtype, pad)
    else:
        tower_views = exact(size, tiling)
    wired = mode.wire(
        Wiring(
            cfg.config,
            bundle,
            tower_encoder,
            tower_views,
            exact,
            lambda: Encoder(bundle.visual, cfg.run.batch_size, device, cfg.config.precision),
        )
    )
    scorer = Scorer(
        bundle.text,
        bundle.logit_scale,
        triton=views_mode == "kernel",
        keep_tiles=bool(tiles_max),
        keep_embeddings=cfg.config.keep_embeddings,
        extras=wired.extras,
        blocking_wait=cfg.run.blocking_wait,
    )
    return Stages(wired.views, wired.encoder, scorer, spec, tiling, tower_encoder)


def make_loader(
    cfg: WorkerConfig, store: Store, chunks: list[int], spec: ViewSpec, tiling: Tiling | None, device: torch.device
) -> DataLoader:
    """The decoding workers: packed batches of the given chunks of ``store``, in order
    (pinned on CUDA). The chunks' image ids are read here, one chunk at a time."""
    reader = BatchReader(
        sample_reader(cfg.kind, cfg.root),
        spec,
        tiling,
        exif=cfg.config.exif,
        max_pixels=cfg.config.max_pixels,
        decode=cfg.config.decode,
    )
    bounds = [store.chunk_bounds(k) for k in chunks]
    per_batch = images_per_batch(tiling, cfg.run.batch_size)
    sampler = BatchSampler(chunks, bounds, per_batch, lambda k: store.chunk(k, layout.IDS)[layout.IDS])
    return DataLoader(
        reader,
        batch_size=None,
        sampler=sampler,
        num_workers=cfg.run.loader_workers,
        collate_fn=unbatched,
        pin_memory=device.type == "cuda",
        prefetch_factor=loader_prefetch(per_batch) if cfg.run.loader_workers else None,
        persistent_workers=False,
        worker_init_fn=(
            functools.partial(
                decoding_worker_init, os.getpid(), nice=cfg.run.worker_nice if device.type == "cuda" else 0
            )
            if cfg.run.loader_workers
            else None
        ),
    )


def extract_chunks(
    cfg: WorkerConfig,
    chunks: list[int],
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Fill the given chunks of the store with ``cfg`` as its plan resolved it for this
    device (``plan.ExtractPlan.worker_on``). Returns counters (images, tiles, failed,
    batches) and ``stage_seconds``."""
    started = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    store = Store.open(cfg.store, mode="r+")
    graphs = [dynamo_graphs()]  # torch.compile's graphs so far: before, after the start-up, at the end
    batches, n_batches, bundle, stages = _start(cfg, store, chunks, device)
    graphs.append(dynamo_graphs())
    if store.has(layout.TEXT):  # the same numbers from every worker
        store.array(layout.TEXT)[...] = bundle.text.float().cpu().numpy()
    ready = time.perf_counter()
    loop = _ChunkLoop(cfg, store, chunks, device, result_specs(cfg.config, len(store.classes), bundle.embed_dim))
    counts = loop.run(stages, batches, n_batches, progress or (lambda images, tiles: None))
    if cfg.run.compile not in ("none", "cuda-graph"):  # compiled: one graph at start-up, none after
        graphs.append(dynamo_graphs())
        counts["tower_graphs"] = graphs[1] - graphs[0]  # more than one: graph breaks (0: compiled earlier)
        counts["tower_recompiles"] = graphs[2] - graphs[1]
    out: dict[str, object] = {
        **counts,
        "load_seconds": ready - started,  # loader start, model, text embeddings, graph capture
        "work_seconds": time.perf_counter() - ready,
    }
    del batches  # the decoding workers exit now, their work done
    notes = [stages.tower_encoder.note] if stages.tower_encoder.note else []
    if counts["tower_recompiles"]:
        notes.append(
            f"the compiled image tower was compiled again {counts['tower_recompiles']} times during the run "
            "(its input's shape or layout changed): set TORCH_LOGS=recompiles to see why"
        )
    if notes:
        out["notes"] = notes
    out["model"] = bundle.info  # what was loaded, for the store's attributes (identical in every worker)
    out["stage_seconds"] = {k: round(v, 4) for k, v in loop.times.seconds.items()}
    return out


def _start(cfg: WorkerConfig, store: Store, chunks: list[int], device: torch.device):
    """The decoding workers (started before the model loads where its configuration says
    what they cut), the model and the stages: (batches, their number, bundle, stages)."""
    early = early_view_spec(cfg)

    def start_loader(spec: ViewSpec, tiling: Tiling | None):
        loader = make_loader(cfg, store, chunks, spec, tiling, device)
        return handed_over(loader, "packed batches"), len(loader)

    batches, n_batches = None, 0
    if early is not None:  # the decoding workers start now and fill their queue while the model loads
        batches, n_batches = start_loader(*early)
    try:
        bundle, tower = _loaded(cfg, list(store.classes), device)
        tiles_max = store.array(layout.SIM_TILES).shape[1] if cfg.config.keep_tiles else 0
        stages = build_stages(cfg, bundle, tower, device, cfg.run.views, tiles_max)
        if early is not None and early != (stages.spec, stages.tiling):
            raise RuntimeError(f"the model's preprocess {stages.spec} is not its configuration's {early[0]} (internal)")
    except BaseException:
        del batches  # the workers started early are shut down before the error goes up
        raise
    if batches is None:
        batches, n_batches = start_loader(stages.spec, stages.tiling)
    return batches, n_batches, bundle, stages


class _ChunkLoop:
    """The batches of a worker's chunks through the stages; each chunk's results go to the
    writer thread as soon as its last batch is collected."""

    def __init__(self, cfg: WorkerConfig, store: Store, chunks: list[int], device: torch.device, specs):
        self.cfg, self.store, self.device, self.specs = cfg, store, device, specs
        self.mode = local_mode(cfg.config.local)
        self.n_chunks = len(chunks)
        self.bounds = {k: store.chunk_bounds(k) for k in chunks}
        self.results: dict[int, ChunkResults] = {}  # chunks with batches in flight: memory stays bounded
        self.times = StageTimes(sync=cfg.run.sync_stages)
        self.counts: collections.Counter[str] = collections.Counter()
        self.report: Callable[[int, int], None] = lambda images, tiles: None

    def collect(self, host: HostScores, writer: ChunkWriter) -> None:
        batch, counts = host.batch, self.counts
        scores, tiles, emb = host.wait()
        if batch.chunk not in self.results:
            part = self.mode.chunk_part(self.cfg.config, len(self.store.classes))
            self.results[batch.chunk] = ChunkResults(*self.bounds[batch.chunk], self.specs, part)
        chunk = self.results[batch.chunk]
        counts["tiles"] += chunk.put(batch, scores, tiles, emb, host.extra)
        counts["images"] += batch.n_ok
        counts["failed"] += len(batch.rows) - batch.n_ok
        self.report(len(batch.rows), int(batch.n_tiles[batch.n_views > 0].sum()))
        if chunk.complete:
            writer.submit(batch.chunk, self.results.pop(batch.chunk).all_arrays())
            counts["chunks"] += 1

    def run(self, stages: Stages, batches, n_batches: int, report: Callable[[int, int], None]) -> collections.Counter:
        """Every batch: load, copy, views, encode, score; the host reads a batch's scores
        ``RunOptions.in_flight`` batches later on CUDA (at once on the CPU)."""
        times, counts, mode, self.report = self.times, self.counts, self.mode, report
        to_device: Callable[[PackedBatch], PackedBatch] = ToDevice(self.device, side_stream=self.cfg.run.copy_stream)
        if self.cfg.config.decode == "gpu":  # plain JPEGs are decoded on the device as they arrive
            to_device = DeviceDecode(to_device, self.device, stages.spec, stages.tiling, self.cfg.config)
        lag = self.cfg.run.in_flight if self.device.type == "cuda" else 0
        in_flight: collections.deque = collections.deque()
        writer = ChunkWriter(self.store)
        try:
            for _ in range(n_batches):  # not one call past the last: that one waits for the workers to exit
                batch = times.run("load", next, batches)
                counts["batches"] += 1
                if batch.n_ok:
                    batch = times.run("copy", to_device, batch)
                if batch.n_ok:  # still: a file the device and the host both failed to decode has no views
                    views = times.run("views", stages.views, batch)
                    emb = times.run("encode", stages.encoder, views, batch.n_view_rows)
                    rows = mode.rows_per_image(stages.encoder, batch)
                    in_flight.append(times.run("score", stages.scorer, emb, batch, rows))
                else:
                    in_flight.append(HostScores(batch, torch.zeros(0, 3, 1), None, None))  # all failed
                while len(in_flight) > lag:
                    times.run("collect", self.collect, in_flight.popleft(), writer)
            while in_flight:
                times.run("collect", self.collect, in_flight.popleft(), writer)
        finally:
            writer.close()  # chunks already complete are written even when a later batch failed
        if self.results or counts["chunks"] != self.n_chunks:
            raise RuntimeError(f"{self.n_chunks - counts['chunks']} chunks left incomplete (internal error)")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        counts["crops"] = stages.encoder.rows
        counts["encoder_calls"] = stages.encoder.calls
        return counts
