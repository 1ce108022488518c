"""One extraction worker: decoded images -> views -> full encoder batches -> scores -> chunks.

The data path runs one way: a DataLoader decodes in worker processes; the views are cut,
resized and normalised as tensors on the worker's device (ViewMaker); they are packed
into full batches for the image tower (BatchEncoder); every image whose views are all
encoded is scored by ``cdul.kernels.score_segments``; a chunk's rows are written to the
store in one piece and only then flagged done.

Batches never mix chunks: a chunk's crops are cut into batches the same way whichever
worker runs it and whether or not the run was resumed, so results do not depend on how
the work was distributed.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cdul.data.decode import DEFAULT_MAX_PIXELS
from cdul.kernels import score_segments
from cdul.store import Store, layout

from .clip_model import load_clip
from .reader import ChunkSampler, ImageReader, collate_list
from .tiling import Tiling
from .views import ViewMaker

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class WorkerConfig:
    store: str
    root: str
    model: str
    pretrained: str
    template: str = "a photo of a {}."
    ensemble: bool = False
    cache_dir: str | None = None
    tiling: Tiling = field(default_factory=lambda: Tiling.grid(3))
    batch_size: int = 64
    loader_workers: int = 2
    threads: int | None = None
    precision: str = "auto"
    keep_tiles: bool = False
    max_tiles: int = 0
    keep_embeddings: bool = False
    exif: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    return precision


class ChunkResults:
    """The rows of one chunk, filled image by image and written to the store in one piece."""

    def __init__(self, start: int, stop: int, n_classes: int, tiles_max: int = 0, embed_dim: int = 0):
        n, c = stop - start, n_classes
        self.start, self.left = start, n
        self.arrays = {
            layout.HW: np.zeros((n, 2), np.int32),
            layout.N_TILES: np.zeros(n, np.int32),
            layout.STATUS: np.full(n, layout.PENDING, np.uint8),
            layout.ERROR: np.full(n, "", dtype=object),
            layout.SIM_GLOBAL: np.full((n, c), np.nan, np.float32),
            layout.SIM_ALPHA: np.full((n, c), np.nan, np.float32),
            layout.SIM_BETA: np.full((n, c), np.nan, np.float32),
        }
        if tiles_max:
            self.arrays[layout.SIM_TILES] = np.full((n, tiles_max, c), np.nan, np.float16)
        if embed_dim:
            self.arrays[layout.EMB_GLOBAL] = np.full((n, embed_dim), np.nan, np.float16)

    def fail(self, index: int, hw, reason: str) -> None:
        i = index - self.start
        self.arrays[layout.HW][i] = hw
        self.arrays[layout.STATUS][i] = layout.FAILED
        self.arrays[layout.ERROR][i] = reason
        self.left -= 1

    def put(self, index: int, hw, n_tiles: int, s_g, alpha, beta, tiles=None, emb=None) -> None:
        i = index - self.start
        a = self.arrays
        a[layout.HW][i] = hw
        a[layout.N_TILES][i] = n_tiles
        a[layout.STATUS][i] = layout.OK
        a[layout.SIM_GLOBAL][i], a[layout.SIM_ALPHA][i], a[layout.SIM_BETA][i] = s_g, alpha, beta
        if tiles is not None and layout.SIM_TILES in a:
            keep = min(len(tiles), a[layout.SIM_TILES].shape[1])
            a[layout.SIM_TILES][i, :keep] = tiles[:keep]
        if emb is not None and layout.EMB_GLOBAL in a:
            a[layout.EMB_GLOBAL][i] = emb
        self.left -= 1

    @property
    def complete(self) -> bool:
        return self.left == 0


class BatchEncoder:
    """Packs views of successive images into full batches for the image tower.

    ``add`` stages an image's views (splitting them across batches when they do not fit)
    and runs the tower whenever the staging buffer is full; it returns the keys of images
    whose views are now all encoded, whose [V, D] embeddings ``take`` hands over."""

    def __init__(self, visual: torch.nn.Module, batch_size: int, size: int, device: torch.device, precision: str):
        self.visual = visual
        self.batch_size = int(batch_size)
        self.device = device
        self.autocast = device.type == "cuda" and precision != "fp32"
        self.amp_dtype = PRECISIONS[precision]
        self.in_dtype = self.amp_dtype if self.autocast else torch.float32
        fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.buf = torch.empty(self.batch_size, 3, size, size, dtype=self.in_dtype, device=device)
        self.buf = self.buf.contiguous(memory_format=fmt)
        self.fill = 0
        self.staged: list[tuple[object, int, int, int]] = []  # key, first view, count, buffer row
        self.pending: dict[object, list] = {}  # key -> [embeddings or None, views, views left]
        self.batches = 0
        self.crops = 0

    def add(self, key, views: torch.Tensor) -> list:
        v = views.shape[0]
        self.pending[key] = [None, v, v]
        finished, off = [], 0
        while off < v:
            take = min(v - off, self.batch_size - self.fill)
            self.buf[self.fill:self.fill + take].copy_(views[off:off + take], non_blocking=True)
            self.staged.append((key, off, take, self.fill))
            self.fill += take
            off += take
            if self.fill == self.batch_size:
                finished += self._run()
        return finished

    def flush(self) -> list:
        return self._run() if self.fill else []

    def take(self, key) -> torch.Tensor:
        return self.pending.pop(key)[0]

    @torch.inference_mode()
    def _run(self) -> list:
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.autocast):
            # kept in the tower's output dtype (fp16 under autocast): the scorer reads it as is
            emb = self.visual(self.buf[: self.fill])
        self.batches += 1
        self.crops += self.fill
        finished = []
        for key, first, count, row in self.staged:
            rec = self.pending[key]
            if rec[0] is None:
                rec[0] = emb.new_empty(rec[1], emb.shape[1])
            rec[0][first:first + count] = emb[row:row + count]
            rec[2] -= count
            if rec[2] == 0:
                finished.append(key)
        self.staged.clear()
        self.fill = 0
        return finished


def extract_chunks(cfg: WorkerConfig, chunks: list[int], device: str | torch.device = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Fill the given chunks of the store. Returns counters (images, tiles, failed, batches)."""
    started = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    store = Store.open(cfg.store, mode="r+")
    bundle = load_clip(cfg.model, cfg.pretrained, store.classes, device=device, cache_dir=cfg.cache_dir,
                       template=cfg.template, ensemble=cfg.ensemble)
    store.array(layout.DONE).attrs.update({"model": bundle.info})  # identical from every worker
    precision = resolve_precision(cfg.precision, device)
    visual = bundle.visual
    if device.type == "cuda":
        visual = visual.to(memory_format=torch.channels_last)
    encoder = BatchEncoder(visual, cfg.batch_size, bundle.input_size, device, precision)
    maker = ViewMaker(bundle.input_size, bundle.mean, bundle.std, interpolation=bundle.interpolation,
                      resize_mode=bundle.resize_mode, device=device, dtype=encoder.in_dtype)
    tiles_max = store.array(layout.SIM_TILES).shape[1] if cfg.keep_tiles else 0
    scorer = _Scorer(bundle.text, bundle.logit_scale, keep_tiles=bool(tiles_max),
                     keep_embeddings=cfg.keep_embeddings, lag=1 if device.type == "cuda" else 0)
    reader = ImageReader(cfg.store, cfg.root, exif=cfg.exif, max_pixels=cfg.max_pixels)
    bounds = [store.chunk_bounds(k) for k in chunks]
    loader = DataLoader(reader, batch_size=4, sampler=ChunkSampler(bounds), num_workers=cfg.loader_workers,
                        collate_fn=collate_list, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if cfg.loader_workers else None)
    items = (d for batch in loader for d in batch)
    counts = collections.Counter()
    ready = time.perf_counter()
    report = progress or (lambda images, tiles: None)
    for k, (start, stop) in zip(chunks, bounds):
        results = ChunkResults(start, stop, len(store.classes), tiles_max,
                               bundle.embed_dim if cfg.keep_embeddings else 0)
        for _ in range(stop - start):
            d = next(items)
            if d.image is None:
                results.fail(d.index, d.hw, d.error)
                counts["failed"] += 1
                report(1, 0)
                continue
            views, n = maker.make(d.image, cfg.tiling)
            recorded = 1 if cfg.tiling.whole_image else n
            scorer.meta[d.index] = (d.hw, recorded)
            finished = encoder.add(d.index, views)
            if finished:
                scorer.score(encoder, finished, results, report)
        scorer.score(encoder, encoder.flush(), results, report)
        scorer.drain(results, report)
        if not results.complete:
            raise RuntimeError(f"chunk {k}: {results.left} images left unscored (internal error)")
        store.write_chunk(k, results.arrays)
        counts["chunks"] += 1
    counts["images"] = scorer.images
    counts["tiles"] = scorer.tiles
    counts["batches"] = encoder.batches
    counts["crops"] = encoder.crops
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    counts["load_seconds"] = ready - started  # model, text embeddings, loader start
    counts["work_seconds"] = time.perf_counter() - ready
    return dict(counts)


class _Scorer:
    """Scores finished images in groups; on a GPU the copy back to the host lags one group
    behind, so the host does not wait for work it has just queued."""

    def __init__(self, text, logit_scale, *, keep_tiles: bool, keep_embeddings: bool, lag: int):
        self.text, self.logit_scale = text, logit_scale
        self.keep_tiles, self.keep_embeddings, self.lag = keep_tiles, keep_embeddings, lag
        self.meta: dict[int, tuple] = {}
        self.queue: collections.deque = collections.deque()
        self.images = self.tiles = 0

    def score(self, encoder: BatchEncoder, keys: list, results: ChunkResults, report) -> None:
        if not keys:
            return
        embs = [encoder.take(k) for k in keys]
        offsets = torch.tensor(np.cumsum([0] + [e.shape[0] for e in embs]))  # on the host: no sync to check
        if embs[0].is_cuda:
            offsets = offsets.pin_memory()  # a copy from pageable memory would wait for the queued work
        emb = torch.cat(embs)
        if self.text.dtype != emb.dtype:  # the fused kernel wants one dtype (tensor cores for fp16)
            self.text = self.text.to(emb.dtype)
        sc = score_segments(emb, offsets, self.text, self.logit_scale, keep_tiles=self.keep_tiles)
        heads = offsets[:-1].to(emb.device, non_blocking=True)
        glob = F.normalize(emb[heads].float(), dim=-1).half() if self.keep_embeddings else None
        self.queue.append((keys, sc, glob, offsets))
        while len(self.queue) > self.lag:
            self._store(self.queue.popleft(), results, report)

    def drain(self, results: ChunkResults, report) -> None:
        while self.queue:
            self._store(self.queue.popleft(), results, report)

    def _store(self, item, results: ChunkResults, report) -> None:
        keys, sc, glob, offsets = item
        s_g, alpha, beta = sc.global_.cpu().numpy(), sc.alpha.cpu().numpy(), sc.beta.cpu().numpy()
        tiles = sc.tiles.cpu().numpy() if sc.tiles is not None else None
        glob = glob.cpu().numpy() if glob is not None else None
        tile_off = offsets.numpy() - np.arange(len(keys) + 1)  # tile rows exclude the heads
        n_tiles = 0
        for i, key in enumerate(keys):
            hw, recorded = self.meta.pop(key)
            t = None
            if tiles is not None:
                t = tiles[tile_off[i]:tile_off[i + 1]]
                if recorded and not len(t):  # a 1 x 1 grid: the tile is the global view
                    t = s_g[i:i + 1].astype(np.float16)
            results.put(key, hw, recorded, s_g[i], alpha[i], beta[i], t, None if glob is None else glob[i])
            n_tiles += recorded
        self.images += len(keys)
        self.tiles += n_tiles
        report(len(keys), n_tiles)
