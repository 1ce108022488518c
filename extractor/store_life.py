"""The store's life around the workers: prepare (create or resume), finalise (initial
labels, summary, pseudo-label mAP)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

import numpy as np

import cdul
from cdul.data import Dataset
from cdul.kernels import aggregate_local, initial_labels
from cdul.metrics import default_protocol, pseudo_label_map
from cdul.store import Store, StoreError, layout, refuse_damaged, remove_store

from .config import ExtractConfig, WorkerConfig
from .local import local_mode, result_specs


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_NESTED = {"template", "ensemble", "model", "pretrained", "tiling"}  # hashed under prompts, model, tiling
# Fields added after stores were made with what is now their default: hashed only where a
# run sets them otherwise, so that those stores keep their hash and resume.
_HASHED_WHEN_SET = {"decode"}


def extraction_config(cfg: WorkerConfig, dataset: Dataset, chunk_len: int) -> dict:
    """Everything that changes what lands in the store, the encoder's precision included.
    Batch size, devices, the view path (both give PIL's levels) and the like do not; zeta
    and lambda neither (the initial labels are recomputed from S_g, alpha, beta)."""
    config = {
        "format_version": layout.FORMAT_VERSION,
        "dataset": {
            "kind": dataset.kind,
            "root": dataset.root,
            "split": dataset.split,
            "n_images": len(dataset),
            "ids_sha256": _digest(dataset.ids),
        },
        "classes": list(dataset.classes),
        "prompts": {"template": cfg.config.template, "ensemble": cfg.config.ensemble},
        "model": {"name": cfg.config.model, "pretrained": cfg.config.pretrained},
        "tiling": cfg.config.tiling.describe(),
        "chunk_len": chunk_len,
    }
    for f in dataclasses.fields(cfg.config):  # the whole ExtractConfig: a new field is hashed too
        value = getattr(cfg.config, f.name)
        if f.name in _NESTED or f.name in config or (f.name in _HASHED_WHEN_SET and value == f.default):
            continue
        config[f.name] = value
    config["max_tiles"] = cfg.config.max_tiles if cfg.config.keep_tiles else 0
    return config


def _shown(config: Mapping[str, object]) -> dict:
    """A hashed configuration with the fields left out at their default written in, so that
    a difference reads ``decode: gpu -> pil``."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExtractConfig) if f.name in _HASHED_WHEN_SET}
    return {**defaults, **config}


def local_views(cfg: WorkerConfig) -> dict:
    """The root attribute ``tiling``: what the run cuts (its local mode's description)."""
    return local_mode(cfg.config.local).describe(cfg.config)


def _diff(old: Mapping[str, object], new: Mapping[str, object], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {str(a)[:60]} -> {str(b)[:60]}")
    return out


def prepare_store(
    url: str, cfg: WorkerConfig, dataset: Dataset, *, chunk_len: int, overwrite: bool, embed_dim: int = 0
) -> Store:
    """Create the store, or reopen it to resume; refuse a store built with another config."""
    config = extraction_config(cfg, dataset, chunk_len)
    digest = _digest(config)
    attrs = Store.peek(url)
    if attrs and not overwrite and not attrs.get("creating"):  # a create that died early just starts over
        store = Store.open(url, mode="r+")
        if store.attrs.get("config_hash") == digest:
            if store.attrs.get("tiling") != local_views(cfg):  # written before dense mode was recorded
                store.set_attrs(tiling=local_views(cfg))
            return store
        if store.done_flags().any():  # with nothing extracted yet, the store is simply made again
            changes = _diff(_shown(store.section("config")), _shown(config))
            raise StoreError(
                f"{url} was built with another configuration ({'; '.join(changes[:4]) or 'unknown'}); "
                "rerun with the same options to resume, or pass --overwrite to start over"
            )
    remove_store(url)
    if cfg.config.keep_embeddings and embed_dim < 1:
        raise ValueError("keep_embeddings needs the model's embedding width")
    specs = result_specs(cfg.config, len(dataset.classes), embed_dim)
    attrs = {
        "prompts": {"template": cfg.config.template, "ensemble": cfg.config.ensemble},
        "tiling": local_views(cfg),
        "dataset": {
            "kind": dataset.kind,
            "root": dataset.root,
            "split": dataset.split,
            "class_keys": dataset.class_keys,
        },
        "code_version": cdul.__version__,
        "config": config,
        "config_hash": digest,
    }
    return Store.create(
        url,
        ids=dataset.ids,
        classes=dataset.classes,
        specs=specs,
        targets=dataset.targets,
        chunk_len=chunk_len,
        attrs=attrs,
    )


def write_initial_labels(store: Store, zeta: float, lam: float) -> bool:
    """(Re)write round 0 from S_g, alpha, beta unless it already holds these zeta and lambda.
    Returns whether it was written. A store whose later rounds derive from another round 0
    keeps it (and says so)."""
    params = {"zeta": float(zeta), "lam": float(lam)}
    rounds = store.label_rounds()
    if 0 in rounds:
        old = store.round_array(0).attrs.asdict()
        if {"zeta": old.get("zeta"), "lam": old.get("lam")} == params:
            return False
        if len(rounds) > 1:
            raise StoreError(
                f"{store.url}: round 0 was made with zeta={old.get('zeta')}, lambda={old.get('lam')} and training "
                "rounds derive from it; extract to a new store (or --overwrite) to change them"
            )
        store.drop_rounds_after(-1)
    with store.writing_round(0, {**params, "source": "cdul-extract", "epoch": None}) as arr:
        for chunk in store.chunks(layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA):
            arr[chunk.start : chunk.stop] = initial_labels(
                chunk[layout.SIM_GLOBAL], chunk[layout.SIM_ALPHA], chunk[layout.SIM_BETA], zeta, lam
            ).astype(np.float32)
    return True


def summarise(store: Store, zeta: float, lam: float, max_listed: int = 1000, ap: str | None = None) -> dict:
    """Counts, failures and (where targets exist) pseudo-label mAP of S_g, S_ag and y0 under
    the AP protocol ``ap`` (None: the one of the store's dataset kind)."""
    counts = {"images": int(store.n), "ok": 0, "failed": 0, "no_tiles": 0, "tiles": 0}
    failures: dict[str, str] = {}
    for rows in store.chunks(layout.STATUS, layout.N_TILES, layout.ERROR, layout.IDS):
        ok, failed = rows[layout.STATUS] == layout.OK, rows[layout.STATUS] == layout.FAILED
        counts["ok"] += int(ok.sum())
        counts["failed"] += int(failed.sum())
        counts["no_tiles"] += int((ok & (rows[layout.N_TILES] == 0)).sum())
        counts["tiles"] += int(rows[layout.N_TILES][ok].sum())
        for i in np.flatnonzero(failed)[: max(0, max_listed - len(failures))]:
            failures[str(rows[layout.IDS][i])] = str(rows[layout.ERROR][i])
    summary: dict[str, object] = dict(counts)
    if store.has(layout.TARGETS) and counts["ok"]:
        summary["pseudo_label_map"] = initial_label_maps(store, zeta, lam, ap)
    return {"summary": summary, "failures": failures}


def initial_label_maps(store: Store, zeta: float, lam: float, ap: str | None = None) -> dict:
    """mAP (percent) of S_g, S_ag and y0 against the targets, over the images that are OK,
    under the AP protocol ``ap`` (None: the one of the store's dataset kind); read chunk by
    chunk, in bounded memory."""
    names = [layout.SIM_GLOBAL, layout.SIM_ALPHA, layout.SIM_BETA, layout.TARGETS, layout.STATUS]

    def scores(kind: str, s_g, alpha, beta):
        if kind == "global":
            return s_g
        if kind == "aggregated":
            return aggregate_local(alpha, beta, zeta)
        return initial_labels(s_g, alpha, beta, zeta, lam)

    def chunks(kind: str):
        def read():
            for r in store.chunks(*names):
                s = scores(kind, r[layout.SIM_GLOBAL], r[layout.SIM_ALPHA], r[layout.SIM_BETA])
                yield s, r[layout.TARGETS], r[layout.STATUS] == layout.OK

        return read

    c = len(store.classes)
    ap = ap or default_protocol(store.section("dataset").get("kind"))
    out = {kind: pseudo_label_map(chunks(kind), store.n, c, protocol=ap) for kind in ("global", "aggregated", "y0")}
    return {**out, "zeta": zeta, "lam": lam, "ap": ap}


def finalise_store(
    store: Store, zeta: float, lam: float, model: dict | None = None, ap: str | None = None, local: str = "tiles"
) -> dict:
    """Initial labels, what the local mode ``local`` adds, summary and failures; ``model``
    (what the workers loaded) is recorded in the root attributes (a rerun on a finished store
    keeps the one recorded before); the summary's pseudo-label mAPs are under the AP protocol
    ``ap`` (None: the dataset's own)."""
    pending = store.pending_chunks()
    if pending:
        raise StoreError(f"{store.url}: {len(pending)} chunks are not done yet (first: {pending[0]}); rerun to resume")
    refuse_damaged(store)
    write_initial_labels(store, zeta, lam)
    local_mode(local).finalise(store)
    result = summarise(store, zeta, lam, ap=ap)
    store.array(layout.STATUS).attrs.update({"failures": result["failures"]})
    store.set_attrs(summary=result["summary"], complete=True, **({"model": model} if model else {}))
    return result
