"""The extraction stages. Each takes one record and hands one record to the next:

    PackedBatch (loader) -> ToDevice -> views [V, 3, R, R] -> Encoder (encoder.py) -> emb [V, D]
        -> Scorer -> HostScores -> ChunkResults -> ChunkWriter (a thread)

``StageTimes`` times each stage for the runner (``pipeline.extract_chunks``).

A batch is a fixed group of whole images of one chunk (``images_per_batch``), so what the
encoder sees depends only on the chunk, never on how chunks were shared out or resumed.
On a GPU the whole path is per batch: one host-to-device copy (on its own stream), two
launches that cut and resize every view (``--views kernel``), the encoder, one scorer
launch, one copy back; the host reads a batch's scores a few batches later
(``RunOptions.in_flight``), and the store is written by a thread.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cdul.kernels import score_segments
from cdul.kernels.dispatch import require_fused
from cdul.kernels.resample import resample_views
from cdul.store import Store, layout

from .local import ChunkPart
from .packing import PackedBatch
from .tiling import Tiling
from .views import ViewMaker


def images_per_batch(tiling: Tiling | None, batch_size: int) -> int:
    """Whole images per batch, so that their views about fill one encoder batch; when one
    image has more views than a batch (small CPU batches), enough images that the views
    split into full encoder batches (10 views, batch 8: 4 images, 5 full batches)."""
    if tiling is None or tiling.whole_image:
        return max(1, batch_size)
    if tiling.mode != "grid":
        return max(1, batch_size // 16)  # pixel tiles: the count depends on the image size
    views = 1 + tiling.size**2
    if batch_size >= views:
        return batch_size // views
    whole = math.lcm(views, batch_size) // views
    return whole if whole <= 16 else 1


class ToDevice:
    """One host-to-device copy of the packed buffer (from pinned memory: asynchronous).

    On CUDA the copy runs on its own stream, so a batch's copy overlaps the previous
    batches' kernels instead of queueing behind them; the compute stream waits for the copy
    before the batch's first kernel, and the buffer's memory is not reused before the
    compute stream is done with it (``record_stream``)."""

    def __init__(self, device: torch.device, side_stream: bool = True):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" and side_stream else None

    def __call__(self, batch: PackedBatch) -> PackedBatch:
        if batch.data.device == self.device:
            return batch
        if self.stream is None:
            batch.data = batch.data.to(self.device, non_blocking=True)
            return batch
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            data = batch.data.to(self.device, non_blocking=True)
        compute.wait_stream(self.stream)
        data.record_stream(compute)
        batch.data = data
        return batch


class _Grown:
    """A buffer reused from batch to batch, reallocated only when a batch needs more.
    Reuse is safe: every stage runs on one stream, so a batch's kernels finish reading a
    buffer before the next batch's kernels write it."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None

    def get(self, n: int, make) -> torch.Tensor:
        if self.buf is None or self.buf.shape[0] < n:
            self.buf = make(max(n, 1))
        return self.buf


class KernelViews:
    """Every view of a batch in two Triton launches (``cdul.kernels.resample``): PIL's
    8-bit levels exactly, normalised and written in the encoder's dtype and layout."""

    def __init__(self, size: int, mean, std, device: torch.device, dtype: torch.dtype, min_rows: int = 0):
        require_fused("cdul.kernels.resample")  # imports triton: fails here, not at the first batch
        self.size, self.device, self.dtype, self.min_rows = int(size), device, dtype, min_rows
        std32 = torch.tensor(std, dtype=torch.float32)
        mean32 = torch.tensor(mean, dtype=torch.float32)
        # the same float32 numbers as ViewMaker's multiply-add
        self.mul = (1.0 / (255.0 * std32)).tolist()
        self.add = (-mean32 / std32).tolist()
        self.fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self._scratch, self._out = _Grown(), _Grown()

    def __call__(self, batch: PackedBatch) -> torch.Tensor:
        v = batch.n_view_rows
        scratch = self._scratch.get(
            batch.scratch_bytes, lambda n: torch.empty(n, dtype=torch.uint8, device=self.device)
        )
        out = self._out.get(max(v, self.min_rows), self._new_out)
        resample_views(
            batch.data,
            batch.views_off,
            batch.taps_off,
            v,
            batch.max_rows,
            scratch,
            out,
            self.mul,
            self.add,
            backend="triton",
        )
        return out if out.shape[0] == max(v, self.min_rows) else out[: max(v, self.min_rows)]

    def _new_out(self, n: int) -> torch.Tensor:
        # zeros: rows past a batch's views (padding for a compiled encoder) stay finite
        out = torch.zeros(n, 3, self.size, self.size, dtype=self.dtype, device=self.device)
        return out.contiguous(memory_format=self.fmt)


class ExactViews:
    """The matrix-product path (``ViewMaker``): float64 on the CPU, bit-exact PIL; one image
    at a time."""

    def __init__(self, maker: ViewMaker, tiling: Tiling | None, min_rows: int = 0):
        self.maker, self.tiling, self.min_rows = maker, tiling, min_rows

    def __call__(self, batch: PackedBatch) -> torch.Tensor:
        views = [self.maker.make(batch.image(int(i)), self.tiling)[0] for i in np.flatnonzero(batch.n_views)]
        pad = self.min_rows - batch.n_view_rows
        if pad > 0:
            views.append(torch.zeros(pad, *views[0].shape[1:], dtype=views[0].dtype, device=views[0].device))
        out = torch.cat(views)
        return out.contiguous(memory_format=torch.channels_last) if out.is_cuda else out


@dataclass
class HostScores:
    """A batch's scores on their way to the host; ``wait`` returns numpy arrays."""

    batch: PackedBatch
    scores: torch.Tensor  # [3, B, C] float32: S_g, alpha, beta
    tiles: torch.Tensor | None  # [V - B, C] float16
    emb: torch.Tensor | None  # [B, D] float16
    event: torch.cuda.Event | None = None  # recorded after the copies to the host
    extra: dict = field(default_factory=dict)  # dense mode: patch embeddings, bank candidates

    def wait(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The scores, tiles and embeddings as numpy arrays (``extra``'s become numpy too)."""
        if self.event is not None:
            self.event.synchronize()
        tiles = self.tiles.numpy() if self.tiles is not None else None
        emb = self.emb.numpy() if self.emb is not None else None
        self.extra = {k: v.numpy() for k, v in self.extra.items()}
        return self.scores.numpy(), tiles, emb


class Scorer:
    """One scorer call per batch (``score_segments``; the Triton kernel reads the offsets
    straight from the packed buffer) and one copy of its [3, B, C] result to the host.
    In dense mode every image has ``rows_per_image`` rows (class token, then patches) and
    ``extras(emb, B, text)`` gives what else is kept (``bank.dense_extras``)."""

    def __init__(
        self,
        text: torch.Tensor,
        logit_scale: float,
        *,
        triton: bool,
        keep_tiles: bool,
        keep_embeddings: bool,
        extras=None,
        blocking_wait: bool = True,
    ):
        self.text, self.logit_scale, self.triton = text, float(logit_scale), triton
        self.keep_tiles, self.keep_embeddings, self.extras = keep_tiles, keep_embeddings, extras
        self.blocking_wait = blocking_wait  # RunOptions.blocking_wait
        self._out = _Grown()
        if triton:
            require_fused("cdul.kernels.scoring")  # imports triton: fails here, not at the first batch

    def __call__(self, emb: torch.Tensor, batch: PackedBatch, rows_per_image: int = 0) -> HostScores:
        b = batch.n_ok
        if rows_per_image:
            offsets = torch.arange(0, (b + 1) * rows_per_image, rows_per_image, device=emb.device)
        else:
            offsets = batch.data[batch.offsets_off : batch.offsets_off + 8 * (b + 1)].view(torch.int64)
        if self.text.dtype != emb.dtype:  # one dtype for the fused kernel (tensor cores for fp16)
            self.text = self.text.to(emb.dtype)
        c = self.text.shape[0]
        if self.triton:
            out = self._out.get(b, lambda n: torch.empty(n, 3, c, dtype=torch.float32, device=emb.device))
            out = out[:b]
            sc = score_segments(
                emb, offsets, self.text, self.logit_scale, keep_tiles=self.keep_tiles, backend="triton", out=out
            )
            scores = out
        else:
            sc = score_segments(emb, offsets, self.text, self.logit_scale, keep_tiles=self.keep_tiles)
            scores = torch.stack([sc.global_, sc.alpha, sc.beta], dim=1)
        emb_g = None
        if self.keep_embeddings:
            emb_g = F.normalize(emb[offsets[:-1]].float(), dim=-1).half()
        extra = self.extras(emb, b, self.text) if self.extras else {}
        return _to_host(HostScores(batch, scores, sc.tiles, emb_g, extra=extra), self.blocking_wait)


def _to_host(h: HostScores, blocking: bool) -> HostScores:
    if not h.scores.is_cuda:
        return h
    h.scores = h.scores.to("cpu", non_blocking=True)  # into pinned memory
    h.tiles = h.tiles.to("cpu", non_blocking=True) if h.tiles is not None else None
    h.emb = h.emb.to("cpu", non_blocking=True) if h.emb is not None else None
    h.extra = {k: v.to("cpu", non_blocking=True) for k, v in h.extra.items()}
    h.event = torch.cuda.Event(blocking=blocking)
    h.event.record()
    return h


class ChunkResults:
    """The rows of one chunk, filled batch by batch and written to the store in one piece:
    an array for each per-image spec of ``specs`` (``store.layout.result_specs``), and the
    local mode's ``part`` for what it keeps per chunk."""

    def __init__(self, start: int, stop: int, specs: list[layout.ArraySpec], part: ChunkPart):
        n = stop - start
        self.start, self.left, self.part = start, n, part
        self.arrays: dict[str, np.ndarray] = {
            s.name: np.full((n, *s.trailing), s.fill, dtype=object if s.dtype is str else s.dtype)
            for s in specs
            if s.lead == "image"
        }

    def put(
        self,
        batch: PackedBatch,
        scores: np.ndarray,
        tiles: np.ndarray | None,
        emb: np.ndarray | None,
        extra: dict | None = None,
    ) -> int:
        """Fill the batch's rows; returns the number of tiles recorded."""
        a = self.arrays
        rows = batch.rows - self.start
        ok = batch.n_views > 0
        a[layout.HW][rows] = batch.hw
        a[layout.N_TILES][rows[ok]] = batch.n_tiles[ok]
        a[layout.STATUS][rows] = np.where(ok, layout.OK, layout.FAILED)
        a[layout.ERROR][rows] = np.array(batch.errors, dtype=object)
        good = rows[ok]
        a[layout.SIM_GLOBAL][good], a[layout.SIM_ALPHA][good], a[layout.SIM_BETA][good] = (
            scores[:, 0],
            scores[:, 1],
            scores[:, 2],
        )
        if emb is not None and layout.EMB_GLOBAL in a:
            a[layout.EMB_GLOBAL][good] = emb
        self.part.put(a, batch, good, scores, tiles, extra or {})
        self.left -= len(rows)
        return int(batch.n_tiles[ok].sum())

    @property
    def complete(self) -> bool:
        return self.left == 0

    def all_arrays(self) -> dict:
        """What the chunk writes: its rows, and what its local mode keeps per chunk."""
        return {**self.arrays, **self.part.arrays()}


STAGES = ("load", "copy", "views", "encode", "score", "collect")


@dataclass
class StageTimes:
    """Host seconds per stage; with ``sync`` each stage also waits for its device work."""

    sync: bool = False
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def run(self, name: str, fn, *args):
        t = time.perf_counter()
        if torch._C._autograd._profiler_enabled():  # a named range per stage in profiles
            with torch.profiler.record_function(f"stage:{name}"):
                out = fn(*args)
        else:
            out = fn(*args)
        if self.sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds[name] += time.perf_counter() - t
        return out


class ChunkWriter:
    """Writes finished chunks to the store from a thread (bounded queue), so the device never
    waits for compression or the file system. A write error is raised in the caller at the
    next ``submit`` or at ``close``; chunks written before it stay flagged done."""

    def __init__(self, store: Store, depth: int = 2):
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="cdul-chunk-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.store.write_chunk(*item)
                    self.written += 1
                except BaseException as exc:  # handed to the caller
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, k: int, arrays: dict) -> None:
        self._raise()
        self.queue.put((k, arrays))

    def close(self) -> None:
        """Wait for every submitted chunk, then raise the first write error, if any."""
        self.queue.put(None)
        self.thread.join()
        self._raise()
