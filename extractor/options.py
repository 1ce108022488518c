"""The choices of the extraction options that name a mode, and the default prompt, in one
place (no torch import: the command line reads them for ``--help``)."""

# The prompt of one class (CLIP's zero-shot prompt; ``{}`` is the class name).
PROMPT_TEMPLATE = "a photo of a {}."

VIEW_MODES = ("auto", "kernel", "exact")
COMPILE_MODES = ("auto", "none", "cuda-graph", "default", "reduce-overhead", "max-autotune")
PRECISION_MODES = ("auto", "fp32", "fp16", "bf16")
# pil: every image decoded in the decoding workers, PIL's pixels exactly; gpu: plain JPEGs
# decoded on the device with nvJPEG (gpu_decode.py), whose chroma upsampling differs from
# libjpeg's by a few levels
DECODE_MODES = ("pil", "gpu")

# Sizes that allocate per image, bounded so that a typo is refused before anything is made:
# a grid of at most 64 x 64 tiles (8 px tiles on a 512 px image), at most 4096 tiles kept per
# image (a chunk of 1024 images x 80 classes in float16: 640 MiB), and a dense pass of at
# most 128 x 128 patches (2048 px for 16 px patches).
MAX_SNIPPET = 64
MAX_TILES_KEPT = 4096
MAX_DENSE_PATCHES = 128 * 128

# ``--compile auto``: the tower mode that measured fastest in the pipeline, per device class
# (the first entry whose name is part of the device's name, else its type). The evidence,
# benchmarks/results/NOTES.md (one H200, ViT-B-32, snippet 3, batch 256, fp16): ours 1791
# img/s with the eager tower replayed from a CUDA graph against 488 eager (host-bound); the
# compiled tower alone 3045 img/s against 2254 for the graph, but in the pipeline it reached
# only 311 img/s in a 512-image run, before its calls had one fixed shape and its compile
# moved to start-up; `bash benchmarks/gpu_run.sh` measures it again (extract_bench's
# `tower-best` rows name the fastest mode of each model): a faster mode goes here, by name.
# The CPU: eager (no CUDA graph; a compile costs tens of seconds for a gain the CPU runs
# have not shown).
AUTO_COMPILE = (
    ("cuda", "cuda-graph"),
    ("cpu", "none"),
)
