"""The metadata schema of a store, checked every time a store is opened.

Verification (verify.py) checks the chunks' data; this module checks what says how to read
them, before any command relies on it:

- every root attribute cdul writes has its type and range (``n_images`` and ``chunk_len``
  integers >= 1, ``classes`` a non-empty list of distinct names, ``label_rounds`` distinct
  integers >= 0, ``model``, ``dataset``, ``tiling``, ... mappings whose fields have their
  types);
- every array of the layout that is there has readable metadata (its ``zarr.json`` parses),
  is an array, and has the shape the attributes imply: N rows (``image`` axis) in chunks of
  ``chunk_len``, C columns (``class`` axis), one entry per chunk (``chunk`` axis); every
  label round listed is there.

Anything else is one :class:`StoreError` naming the attribute or array and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import zarr

from cdul.data.inputs import FLAG, MAPPING, NAMES, POSITIVE, TEXT, TEXT_OR_NONE, Rule, integer, is_names

from . import layout as L
from .attrs import StoreError

ROUNDS: Rule = (
    (lambda v: isinstance(v, list) and all(integer(0)[0](x) for x in v) and len(set(v)) == len(v)),
    "a list of distinct round numbers",
)
ROOT: dict[str, Rule] = {
    "classes": (lambda v: is_names(v) and bool(v), "a non-empty list of distinct class names"),
    "n_images": integer(1),
    "chunk_len": integer(1),
    "complete": FLAG,
    "label_rounds": ROUNDS,
    "created": TEXT,
    "code_version": TEXT,
    "config_hash": TEXT,
    **dict.fromkeys(("model", "dataset", "config", "tiling", "summary", "prompts"), MAPPING),
}
SECTIONS: dict[str, dict[str, Rule]] = {
    "model": {
        "name": TEXT,
        "arch": TEXT,
        "pretrained": TEXT,
        "weights_file": TEXT_OR_NONE,
        "input_size": integer(1),
        "logit_scale": POSITIVE,
        "embed_dim": integer(1),
    },
    "dataset": {"kind": TEXT, "root": TEXT, "split": TEXT, "class_keys": NAMES},
    "tiling": {
        "mode": ((lambda v: v in ("grid", "pixel", "dense")), "grid, pixel or dense"),
        "G": integer(1),
        "P": integer(1),
        "size": integer(1),  # dense: the pass's size in pixels and its patches per side
        "grid": integer(1),
    },
    "summary": {key: integer(0) for key in ("images", "ok", "failed", "no_tiles", "tiles")},
    "prompts": {"template": TEXT, "ensemble": FLAG},
    "config": {"exif": FLAG},
}


def _bad(url: str, where: str, value: object, kind: str) -> StoreError:
    return StoreError(
        f"{url}: attribute {where} holds {str(value)[:60]!r} where {kind} belongs: the store was edited or not "
        "made by cdul; extract it again (cdul-extract --overwrite)"
    )


def check_attrs(url: str, attrs: Mapping) -> None:
    """The root attributes' types and ranges (those cdul writes; others are left alone)."""
    for key, (ok, kind) in ROOT.items():
        if key in attrs and not ok(attrs[key]):
            raise _bad(url, repr(key), attrs[key], kind)
    for key, fields in SECTIONS.items():
        section = attrs.get(key, {})
        for name, (ok, kind) in fields.items():
            if name in section and not ok(section[name]):
                raise _bad(url, f"{key}.{name}", section[name], kind)
    for key in ("classes", "n_images", "chunk_len"):
        if key not in attrs:
            raise StoreError(f"{url}: attribute {key!r} is missing: extract the store again (cdul-extract --overwrite)")


def _dims() -> dict[str, tuple[tuple[str, ...], str]]:
    """Each array of the layout: its axes (the sizes do not matter here) and the kind of its
    values (numpy's dtype kind; strings are "T", "U" or "O" as zarr gives them back)."""
    specs = L.result_specs(1, tiles_max=1, embed_dim=1, patches=1, bank=1, text_dim=1)
    kind: dict[str, str] = {s.name: "T" if s.dtype is str else np.dtype(s.dtype).kind for s in specs}
    dims: dict[str, tuple[tuple[str, ...], str]] = {s.name: (s.dims, kind[s.name]) for s in specs}
    dims.update(
        {
            L.IDS: (("image",), "T"),
            L.TARGETS: (("image", "class"), "i"),
            L.DONE: (("chunk",), "b"),
            L.IMAGE: (("image",), "T"),
            L.CLASS: (("class",), "T"),
            L.TILE: (("tile",), "i"),
        }
    )
    return dims


REQUIRED = (L.IDS, L.DONE)
KINDS = {"f": "floats", "i": "signed integers", "u": "unsigned integers", "b": "booleans"}


def array_node(group: zarr.Group, url: str, name: str) -> zarr.Array | None:
    """The array ``name``, None where there is none; StoreError where its metadata is unreadable."""
    try:
        node = group[name]
    except KeyError:
        return None
    except Exception as exc:  # zarr raises JSON, value and type errors for damaged metadata
        raise StoreError(
            f"{url}: the metadata of {name} (its zarr.json) cannot be read ({type(exc).__name__}); the store "
            "is damaged: extract it again (cdul-extract --overwrite)"
        ) from None
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{url}: {name} is a group where an array belongs: extract the store again")
    return node


def check_arrays(group: zarr.Group, url: str, n: int, chunk_len: int, n_classes: int, rounds: list[int]) -> None:
    """Every array of the layout present is readable and shaped as the attributes say."""
    sizes = {"image": n, "class": n_classes, "chunk": (n + chunk_len - 1) // chunk_len}
    dims = _dims()
    dims.update({L.round_name(k): (("image", "class"), "f") for k in rounds})
    for name, (axes, kind) in dims.items():
        arr = array_node(group, url, name)
        if arr is None:
            if name in REQUIRED or name.startswith(L.LABELS + "/"):
                raise StoreError(f"{url}: {name} is missing: extract the store again (cdul-extract --overwrite)")
            continue
        want = tuple(sizes.get(axis) for axis in axes)
        if len(arr.shape) != len(axes) or any(w is not None and w != s for w, s in zip(want, arr.shape)):
            expected = " x ".join("?" if w is None else str(w) for w in want)
            raise StoreError(
                f"{url}: {name} has shape {' x '.join(map(str, arr.shape))} where the attributes give {expected} "
                f"({', '.join(axes)}): the store was edited; extract it again (cdul-extract --overwrite)"
            )
        got = getattr(arr.dtype, "kind", "?")
        if got != kind and not (kind == "T" and got in "UO"):
            raise StoreError(
                f"{url}: {name} holds values of type {arr.dtype} where cdul writes "
                f"{'strings' if kind == 'T' else KINDS.get(kind, kind)}: the store was edited; extract it again "
                "(cdul-extract --overwrite)"
            )
        if axes[0] == "image" and arr.chunks[0] != chunk_len:
            raise StoreError(
                f"{url}: {name} is chunked by {arr.chunks[0]} images where chunk_len says {chunk_len}: the store "
                "was edited; extract it again (cdul-extract --overwrite)"
            )


def check_store(group: zarr.Group, url: str, attrs: Mapping) -> tuple[int, int, list[str]]:
    """The whole check; returns (n_images, chunk_len, classes)."""
    check_attrs(url, attrs)
    n, chunk_len, classes = attrs["n_images"], attrs["chunk_len"], list(attrs["classes"])
    check_arrays(group, url, n, chunk_len, len(classes), list(attrs.get("label_rounds", [])))
    return n, chunk_len, classes
