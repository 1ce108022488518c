"""Nearest neighbours over the stored CLIP image embeddings (faiss): label refinement and search."""

from .faiss_index import IndexSpec, build_index, choose_index, load_or_build, search
from .refine import refine_labels

__all__ = ["IndexSpec", "build_index", "choose_index", "load_or_build", "refine_labels", "search"]
