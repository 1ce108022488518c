"""cdul: CLIP-driven unsupervised multi-label image classification."""

__version__ = "0.1.0"
