"""The choices of the extraction options that name a mode, in one place (no torch import:
the command line reads them for ``--help``)."""

VIEW_MODES = ("auto", "kernel", "exact")
COMPILE_MODES = ("auto", "none", "cuda-graph", "default", "reduce-overhead", "max-autotune")
PRECISION_MODES = ("auto", "fp32", "fp16", "bf16")
