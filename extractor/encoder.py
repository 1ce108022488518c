"""The encoder stage: the image tower over a batch's views, in pieces of ``batch_size`` rows.

How the tower runs (``--compile``):

- ``none``: eager, under autocast. The host issues every op of the tower (a few hundred
  kernel launches for a ViT) once per batch.
- ``cuda-graph``: the same eager tower, captured once in a CUDA graph for pieces of exactly
  ``batch_size`` rows; a batch is then one copy into the graph's input and one replay.
  The kernels are those of the eager tower, so the numbers are eager's up to the
  libraries' choice of algorithm for the fixed shape.
- ``default``, ``reduce-overhead``, ``max-autotune``: ``torch.compile`` (the tower is
  compiled in ``modes._tower``; here it only gets fixed-shape pieces, and ``capture``
  calls it once, so that it compiles at start-up, not in the first timed batch).

With a fixed shape (a graph or a compiled tower) every piece goes through one static input
buffer of ``batch_size`` rows in the encoder's dtype and layout (channels_last on CUDA): a
piece's rows are copied in, the rows past them are zeros, and the padding's embeddings are
dropped. The tower thus sees one tensor of one shape, dtype and stride in every call, so a
compiled tower's guards hold and it compiles once (a last, short piece of a chunk included).
Compilations are counted (``dynamo_graphs``) so that a run can report recompilations.
"""

from __future__ import annotations

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dynamo_graphs() -> int:
    """Graphs torch.compile has compiled in this process so far (every recompilation and
    every graph break adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class Encoder:
    """[>= n, 3, R, R] views -> [n, D] embeddings of the first n (the tower's dtype)."""

    def __init__(
        self,
        visual: torch.nn.Module,
        batch_size: int,
        device: torch.device,
        precision: str,
        fixed_shape: bool = False,
        graph: bool = False,
        static_out: bool = False,
    ):
        if graph and device.type != "cuda":
            raise ValueError("--compile cuda-graph needs a CUDA device")
        self.visual, self.batch_size, self.device = visual, int(batch_size), device
        self.autocast = device.type == "cuda" and precision != "fp32"
        self.amp_dtype = PRECISIONS[precision]
        self.in_dtype = self.amp_dtype if self.autocast else torch.float32
        self.graph = graph
        self.fixed_shape = fixed_shape or graph
        self.static_out = static_out  # the tower's output is overwritten by its next call (CUDA graphs)
        self.fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.calls = self.rows = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._in: torch.Tensor | None = None  # the static input (fixed shape); a graph's output
        self._out: torch.Tensor | None = None
        self.note = ""  # why the graph was given up, if it was

    def _amp(self, cache: bool = True):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.autocast, cache_enabled=cache)

    @torch.inference_mode()
    def _static_in(self, like: torch.Tensor | None = None, size: int = 0) -> torch.Tensor:
        """The one input buffer of a fixed shape: [batch_size, 3, R, R], zeros."""
        if self._in is None:
            shape = (self.batch_size, *like.shape[1:]) if like is not None else (self.batch_size, 3, size, size)
            x = torch.zeros(shape, dtype=self.in_dtype, device=self.device)
            self._in = x.contiguous(memory_format=self.fmt)
        return self._in

    def capture(self, size: int) -> None:
        """Record the graph for [batch_size, 3, size, size] inputs now, before the loader's
        threads start (a capture must not see another thread's CUDA calls); a compiled tower
        is called once here, so that it compiles now."""
        if not self.fixed_shape:
            return
        static_in = self._static_in(size=size)
        if not self.graph:
            with torch.inference_mode(), self._amp():
                self.visual(static_in)
        elif self._graph is None:
            try:
                with torch.inference_mode():
                    self._capture()
            except Exception as exc:  # a tower that cannot be captured runs eagerly
                self._after_failed_capture()
                self.graph, self._graph, self._in, self._out = False, None, None, None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.note = f"the image tower could not be captured in a CUDA graph ({first}); it runs eagerly"

    def _after_failed_capture(self) -> None:
        """A capture that fails half-way leaves CUDA's random generator in capture mode (a
        later draw on the device raises); one small capture that completes resets it."""
        torch.cuda.synchronize(self.device)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                torch.zeros(1, device=self.device).add_(1)
        except Exception:  # the eager tower does not need it
            pass

    def _capture(self) -> None:
        """Record the tower on the static input (warmed up on a side stream first, as CUDA
        graphs need; autocast's weight cache off, as capture needs)."""
        static_in = self._in
        assert static_in is not None  # made before
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), self._amp(cache=False):
            for _ in range(2):
                self.visual(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (pinning) do not invalidate the capture
        with self._amp(cache=False), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._out = self.visual(static_in)
        self._graph = graph

    def _piece(self, x: torch.Tensor) -> torch.Tensor:
        """The tower on one piece. A graph's output is its static buffer: valid until the
        next replay, which comes after every later kernel of this batch on the one stream."""
        self.calls += 1
        if self.fixed_shape:
            x = self._stage(x)
        if not self.graph:
            if self.static_out:  # a new step for torch.compile's CUDA graphs: no earlier output is in use
                torch.compiler.cudagraph_mark_step_begin()
            with self._amp():
                out = self.visual(x)
            return out.clone() if self.static_out else out
        if self._graph is None:
            self._capture()
        assert self._graph is not None and self._out is not None  # set by _capture
        self._graph.replay()
        return self._out

    def _stage(self, x: torch.Tensor) -> torch.Tensor:
        """A piece of at most ``batch_size`` rows, copied into the static input: its rows
        first, zeros after."""
        static_in = self._static_in(like=x)
        k = x.shape[0]
        static_in[:k].copy_(x)
        if k < self.batch_size:
            static_in[k:].zero_()
        return static_in

    @torch.inference_mode()
    def __call__(self, views: torch.Tensor, n: int) -> torch.Tensor:
        b = self.batch_size
        if views.shape[0] <= b:
            emb = self._piece(views)
        else:
            parts = []
            for i in range(0, n, b):
                part = self._piece(views[i : i + b])
                parts.append(part.clone() if self.graph else part)  # the next replay overwrites it
            emb = torch.cat(parts)
        self.rows += n
        return emb if emb.shape[0] == n else emb[:n]
