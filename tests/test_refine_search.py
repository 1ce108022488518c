"""faiss neighbourhoods: exact vs IVF agreement, label refinement, search."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from embedding_stores import clustered, embedding_store
from extract_runs import extract_args

from cdul.cli.extract import main as extract
from cdul.cli.refine import main as refine_cli
from cdul.cli.search import main as search_cli
from cdul.index import choose_index, load_or_build, refine_labels, search
from cdul.index.refine import LabelRows
from cdul.metrics import mean_ap
from cdul.store import Store


def test_auto_choice():
    assert choose_index(1000).kind == "flat"
    spec = choose_index(1_000_000)
    assert spec.kind == "ivf" and spec.nlist == 4000 and spec.nprobe == 16


def test_ivf_agrees_with_exact_search(tmp_path):
    emb, _, _ = clustered(20_000, dim=32, clusters=50, seed=1)
    store = embedding_store(str(tmp_path / "e.zarr"), emb, np.zeros((len(emb), 2)))
    exact = load_or_build(store, choose_index(store.n, "flat"), gpu=False)
    ivf = load_or_build(store, choose_index(store.n, "ivf", nlist=64, nprobe=8), gpu=False)
    queries = emb[::97]
    _, want = search(exact, queries, 10)
    _, got = search(ivf, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)])
    assert recall >= 0.9, f"IVF recall@10 {recall:.3f} (stated bound 0.9)"
    # the exact index finds each query itself first
    assert (want[:, 0] == np.arange(0, len(emb), 97)).mean() > 0.99


def test_refinement_raises_label_map(tmp_path):
    emb, _, targets = clustered(3000, dim=32, clusters=30, classes=6, seed=2)
    rng = np.random.default_rng(3)
    noisy = np.clip(0.35 * (targets == 1) + rng.normal(0.3, 0.25, targets.shape), 0.001, 0.999)
    store = embedding_store(str(tmp_path / "r.zarr"), emb, noisy, targets=targets, failed=[5, 17])
    before = mean_ap(noisy, targets)
    k = refine_labels(store, knn=10, weight=0.7, spec=choose_index(store.n), gpu=False)
    assert k == 1 and store.label_rounds() == [0, 1]
    refined = store.read("labels/round_001")
    ok = np.ones(len(emb), bool)
    ok[[5, 17]] = False
    after = mean_ap(refined, targets, rows=ok)
    assert after > before + 0.15, (before, after)
    assert np.isnan(refined[[5, 17]]).all()  # failed images keep no label and lend none
    attrs = store.round_array(1).attrs.asdict()
    assert attrs["knn"] == 10 and attrs["weight"] == 0.7 and attrs["from_round"] == 0 and attrs["complete"]


def test_label_cache_stays_bounded(tmp_path):
    emb, _, targets = clustered(4096, seed=4)
    store = embedding_store(str(tmp_path / "c.zarr"), emb, np.ones(targets.shape), chunk_len=256)
    rows = LabelRows(store, 0, cache_bytes=3 * 256 * 4 * targets.shape[1])
    rows.rows(np.random.default_rng(0).integers(0, 4096, 5000))
    assert len(rows.cache) <= 3 and rows.reads >= 16


def test_refine_cli_and_trainer_sees_the_round(tmp_path):
    emb, _, targets = clustered(600, seed=5)
    url = str(tmp_path / "cli.zarr")
    embedding_store(url, emb, np.full(targets.shape, 0.5), chunk_len=100)
    r = CliRunner().invoke(refine_cli, ["--store", url, "--knn", "5", "--weight", "0.2", "-q"])
    assert r.exit_code == 0, r.output
    assert "wrote label round 1" in r.output
    assert Store.open(url).latest_round() == 1  # what cdul-train starts from
    assert os.path.exists(os.path.join(url, "_index", "flat-0.faiss"))
    r = CliRunner().invoke(refine_cli, ["--store", str(tmp_path / "none.zarr")])
    assert r.exit_code == 1 and "no cdul store" in r.output


def test_refine_needs_embeddings(voc_root, tmp_path):
    out = str(tmp_path / "noemb.zarr")
    r = CliRunner().invoke(
        extract,
        extract_args(voc_root, out, model="cdul-tiny-vit", quiet=True, workers=0, limit=3),
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(refine_cli, ["--store", out])
    assert r.exit_code == 1 and "--keep-embeddings" in r.output


@pytest.fixture(scope="module")
def search_store(voc_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("search") / "s.zarr")
    # the small random ViT tells images apart (the small random ResNet maps them all alike)
    r = CliRunner().invoke(
        extract,
        extract_args(voc_root, out, model="cdul-tiny-vit", quiet=True, workers=0, keep_embeddings=True, snippet=1),
    )
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow
def test_search_by_image_finds_the_planted_image(voc_root, search_store, tmp_path):
    query = os.path.join(voc_root, "VOCdevkit", "VOC2012", "JPEGImages", "chelsea.jpg")
    out = str(tmp_path / "hits.json")
    r = CliRunner().invoke(search_cli, ["--store", search_store, "--image", query, "-k", "3", "--json", out])
    assert r.exit_code == 0, r.output
    hits = json.load(open(out))["hits"]
    assert hits[0]["id"] == "JPEGImages/chelsea.jpg" and hits[0]["score"] > 0.999
    assert hits[1]["score"] < hits[0]["score"] - 1e-3


@pytest.mark.slow
def test_search_by_text(search_store):
    r = CliRunner().invoke(search_cli, ["--store", search_store, "a photo of a cat", "-k", "5"])
    assert r.exit_code == 0, r.output
    assert r.output.count("JPEGImages/") == 5
    r = CliRunner().invoke(search_cli, ["--store", search_store])
    assert r.exit_code == 2 and "QUERY or --image" in r.output
