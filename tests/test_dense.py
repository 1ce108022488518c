"""Dense mode (docs/algorithm.md §4) against references written the way SCLIP's and PIAA's code does it
(tests/dense_reference.py): a random-weight ViT with 4 x 4 patches, real photos and odd images."""

import copy
import json
import os

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from clip_reference import make_checkpoint
from dense_reference import DenseReference, clustered_bank, custom_attn, piaa_bank, piaa_learn, piaa_test
from extract_runs import extract_args

from cdul.cli.extract import main as extract
from cdul.cli.refine import main as refine
from cdul.extractor.clip_model import register_model
from cdul.extractor.dense import last_block

VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
ATOL = 1e-5  # float32 pipeline against float64 reference (as tests/test_extract_reference.py)
K = 8


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    d = tmp_path_factory.mktemp("vit")
    cfg = d / "cdul-test-vit64.json"
    cfg.write_text(json.dumps(VIT))
    arch = register_model(str(cfg))
    model = make_checkpoint(str(d / "vit.pt"), arch, seed=4, logit_scale=100.0)
    return str(cfg), str(d / "vit.pt"), model, arch


def run_extract(root, out, vit, *extra, code=0):
    args = extract_args(root, out, *extra, model=vit[0], pretrained=vit[1], chunk_len=8, workers=0, quiet=True)
    result = CliRunner().invoke(extract, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return zarr.open_group(out, mode="r") if code == 0 else result


@pytest.fixture(scope="module")
def dense_store(voc_root, vit, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stores") / "dense.zarr")
    return run_extract(voc_root, out, vit, "--local", "dense", "--keep-patches", str(K), "--keep-patch-embeddings")


@pytest.fixture(scope="module")
def reference(dense_store, vit):
    return DenseReference(vit[2], vit[3], list(dense_store.attrs["classes"]))


def paths(store):
    root = store.attrs["dataset"]["root"]
    return [os.path.join(root, str(rel)) for rel in store["images/id"][:]]


def close(got, want, name, atol=ATOL):
    worst = np.unravel_index(int(np.abs(got - want).argmax()), got.shape)
    assert np.allclose(got, want, atol=atol, rtol=0), f"{name}{list(worst)}: {got[worst]} vs {want[worst]}"


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_fused_last_block_equals_sclips_explicit_weights(vit, dtype, atol):
    """last_block runs each correlative term as one scaled_dot_product_attention call; the
    block must equal SCLIP's custom_attn, which writes the summed weight matrices out, on
    its patch tokens, and the standard attention on the class token."""
    blk = copy.deepcopy(vit[2].visual.transformer.resblocks[-1]).to(dtype)
    torch.manual_seed(0)
    z = torch.randn(3, 1 + 7 * 7, blk.attn.embed_dim, dtype=dtype)
    with torch.no_grad():
        got = last_block(blk, z)
        lnd = blk.ln_1(z).transpose(0, 1)
        csa = z + custom_attn(blk.attn, lnd, csa=True).transpose(0, 1)
        std = z + custom_attn(blk.attn, lnd, csa=False).transpose(0, 1)
        want = torch.cat([std[:, :1], csa[:, 1:]], dim=1)
        want = want + blk.mlp(blk.ln_2(want))
    assert (got - want).abs().max().item() <= atol


@pytest.mark.gpu
def test_fused_last_block_in_fp16_on_cuda_stays_near_float64():
    """On CUDA the fused form runs flash or memory-efficient attention in fp16: a ViT-B-16-
    shaped block at 448 px against SCLIP's explicit weights in float64."""
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    blk = ResidualAttentionBlock(768, 12, batch_first=True).eval()
    z = torch.randn(4, 1 + 28 * 28, 768)
    with torch.no_grad():
        got = last_block(copy.deepcopy(blk).cuda().half(), z.cuda().half()).double().cpu()
        ref = blk.double()
        lnd = ref.ln_1(z.double()).transpose(0, 1)
        want = torch.cat(
            [
                z[:, :1].double() + custom_attn(ref.attn, lnd, csa=False).transpose(0, 1)[:, :1],
                z[:, 1:].double() + custom_attn(ref.attn, lnd, csa=True).transpose(0, 1)[:, 1:],
            ],
            dim=1,
        )
        want = want + ref.mlp(ref.ln_2(want))
    assert (got - want).abs().max().item() < 5e-2 * want.abs().max().item()


def test_patch_features_and_scores_match_sclip(dense_store, reference):
    for i, path in enumerate(paths(dense_store)):
        ref = reference.dense(path)
        name = os.path.basename(path)
        assert dense_store["images/n_tiles"][i] == 16
        close(dense_store["emb/patches"][i].astype(np.float64), ref["patches"], f"{name} emb/patches", 2e-3)
        for key, arr in [("global", "sim/global"), ("alpha", "sim/alpha"), ("beta", "sim/beta")]:
            close(dense_store[arr][i], ref[key], f"{name} {arr}")


def test_store_records_dense_mode_and_reads_an_older_record(voc_root, vit, dense_store, tmp_path):
    import shutil

    from cdul.cli.report import main as report

    assert dense_store.attrs["tiling"] == {"mode": "dense", "size": 64, "grid": 4}  # no 3 x 3 grid was cut
    assert dense_store.attrs["config"]["tiling"] == {"mode": "grid", "G": 3}  # hashed as the option was given
    url = str(tmp_path / "old.zarr")
    shutil.copytree(dense_store.store.root, url)
    zarr.open_group(url, mode="r+").attrs["tiling"] = {"mode": "grid", "G": 3}  # as stores were written before
    runner = CliRunner()
    verified = runner.invoke(extract, [url, "--out", url, "--verify"])
    assert verified.exit_code == 0 and "dense patches at 64 px" in verified.output, verified.output
    shown = runner.invoke(report, ["--store", url, "--out", str(tmp_path / "rep")])
    assert shown.exit_code == 0, shown.output
    assert "dense patches at 64 px" in open(tmp_path / "rep" / "report.md").read()
    again = run_extract(voc_root, url, vit, "--local", "dense", "--keep-patches", str(K), "--keep-patch-embeddings")
    assert again.attrs["config_hash"] == dense_store.attrs["config_hash"]  # resumed, not refused
    assert again.attrs["tiling"] == dense_store.attrs["tiling"]
    patches = zarr.open_group(url, mode="r+")["images/n_tiles"]
    patches[3] = 15  # an image's patch count that is not the 4 x 4 grid's
    damaged = runner.invoke(extract, [url, "--out", url, "--verify"])
    assert damaged.exit_code == 1 and "without 4^2 patches" in damaged.output, damaged.output


def test_global_scores_equal_the_tiles_mode(voc_root, vit, dense_store, tmp_path):
    tiles = run_extract(voc_root, str(tmp_path / "tiles.zarr"), vit, "--snippet", "3")
    close(dense_store["sim/global"][:], tiles["sim/global"][:], "sim/global", 1e-6)
    assert not np.allclose(dense_store["sim/alpha"][:], tiles["sim/alpha"][:], atol=1e-3)  # other local views


def test_dense_size_resizes_position_embeddings(voc_root, vit, reference, dense_store, tmp_path):
    store = run_extract(
        voc_root,
        str(tmp_path / "d96.zarr"),
        vit,
        "--local",
        "dense",
        "--dense-size",
        "96",
        "--limit",
        "8",
        "--keep-patch-embeddings",
    )
    assert store["emb/patches"].shape[1:] == (36, 32)
    for i, path in enumerate(paths(store)):
        ref = reference.dense(path, size=96)
        close(store["emb/patches"][i].astype(np.float64), ref["patches"], f"{path} emb/patches", 2e-3)
        close(store["sim/alpha"][i], ref["alpha"], f"{path} alpha")
        close(store["sim/beta"][i], ref["beta"], f"{path} beta")
    # the global view still comes from a normal pass at the model's size
    close(store["sim/global"][:], dense_store["sim/global"][:8], "sim/global", 1e-6)


def test_bank_is_piaas_most_confident_patches(dense_store, reference):
    feats, where = [], []
    for i, path in enumerate(paths(dense_store)):
        feats.append(reference.dense(path)["patches"])
        where += [(i, j) for j in range(16)]
    want = piaa_bank(np.concatenate(feats), np.array(where), reference.text.numpy(), K)
    source, score = dense_store["bank/source"][:], dense_store["bank/score"][:]
    for c in range(source.shape[0]):
        got = {tuple(s) for s in source[c] if s[0] >= 0}
        assert got == want.get(c, set()), f"class {c}"
        assert np.all(np.diff(score[c][np.isfinite(score[c])]) >= 0)  # most confident first
    rows, patches = source[..., 0], source[..., 1]
    used = rows >= 0
    np.testing.assert_array_equal(
        dense_store["bank/emb"][:][used], dense_store["emb/patches"][:][rows[used], patches[used]]
    )
    close(dense_store["text/emb"][:].astype(np.float64), reference.text.numpy(), "text/emb")


def test_bank_does_not_depend_on_batches_or_chunks(voc_root, vit, dense_store, tmp_path):
    other = run_extract(
        voc_root,
        str(tmp_path / "b.zarr"),
        vit,
        "--local",
        "dense",
        "--keep-patches",
        str(K),
        "--chunk-len",
        "3",
        "--batch-size",
        "2",
    )
    np.testing.assert_array_equal(other["bank/source"][:], dense_store["bank/source"][:])
    np.testing.assert_allclose(other["bank/score"][:], dense_store["bank/score"][:], atol=1e-6)


def test_gda_round_matches_piaa(dense_store, reference, tmp_path):
    import shutil

    url = str(tmp_path / "g.zarr")
    shutil.copytree(dense_store.store.root, url)
    result = CliRunner().invoke(refine, ["--store", url, "--gda", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store = zarr.open_group(url, mode="r")
    got = store["labels/round_001"][:]
    score = store["bank/score"][:]
    bank = torch.from_numpy(store["bank/emb"][:][np.isfinite(score)].astype(np.float64))
    text = torch.from_numpy(store["text/emb"][:].astype(np.float64))
    W, b = piaa_learn(bank, text)
    cls = torch.from_numpy(np.stack([reference.embed(reference.open(p)) for p in paths(store)]))
    want = piaa_test(cls, torch.from_numpy(store["emb/patches"][:].astype(np.float64)), text, W, b).numpy()
    close(got, want, "labels/round_001")
    assert store["labels/round_001"].attrs["source"] == "cdul-refine --gda"


def saturated_copy(dense_store, url):
    """The dense store with a synthetic bank whose first fit saturates whole classes, text
    embeddings to match, and patches and global scores drawn around them."""
    import shutil

    shutil.copytree(dense_store.store.root, url)
    g = zarr.open_group(url, mode="r+")
    (c, k, d), (n, p) = g["bank/emb"].shape, g["emb/patches"].shape[:2]
    bank, text = clustered_bank(0, c, k, d, 0.3)
    g["bank/emb"][...], g["bank/score"][...], g["text/emb"][...] = bank, np.zeros((c, k), np.float32), text
    r = np.random.default_rng(1)
    patches = text[r.integers(0, c, (n, p))] + 0.3 * r.standard_normal((n, p, d))
    g["emb/patches"][...] = (patches / np.linalg.norm(patches, axis=-1, keepdims=True)).astype(np.float16)
    cls = text[r.integers(0, c, n)] + 0.5 * r.standard_normal((n, d))
    cls = torch.from_numpy(cls / np.linalg.norm(cls, axis=-1, keepdims=True))
    g["sim/global"][...] = torch.softmax(100.0 * cls @ torch.from_numpy(text).double().T, dim=-1).float().numpy()
    return g, cls


def test_gda_on_a_saturated_bank_matches_piaa_in_float32(dense_store, tmp_path):
    url = str(tmp_path / "s.zarr")
    g, cls = saturated_copy(dense_store, url)
    result = CliRunner().invoke(refine, ["--store", url, "--gda", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text, kept = torch.from_numpy(g["text/emb"][:]), []
    W, b = piaa_learn(torch.from_numpy(g["bank/emb"][:].reshape(-1, text.shape[1]).astype(np.float32)), text, kept=kept)
    assert sum(k == n > 1 for _, n, k in kept) >= 10  # classes at probability 1 everywhere: all kept
    want = piaa_test(cls, torch.from_numpy(g["emb/patches"][:].astype(np.float32)), text, W, b).numpy()
    close(zarr.open_group(url, mode="r")["labels/round_001"][:], want, "labels/round_001", 2e-6)
    lost = [dense_store.attrs["classes"][c] for c, n, k in kept if k == 0]
    line = [ln for ln in result.output.splitlines() if "kept no bank entry" in ln]
    assert len(line) == 1 and all(name in line[0] for name in lost), result.output
    robust = CliRunner().invoke(refine, ["--store", url, "--gda", "--gda-keep", "robust", "-q"])
    assert robust.exit_code == 0 and "kept no bank entry" not in robust.output, robust.output


def test_gda_bank_of_another_store_labels_this_one(voc_root, vit, dense_store, reference, tmp_path):
    """PIAA's split: the bank of one store (train), the scores of another (val)."""
    url = str(tmp_path / "val.zarr")
    val = run_extract(voc_root, url, vit, "--local", "dense", "--limit", "6", "--keep-patch-embeddings")
    assert "bank" not in val
    bank_url = dense_store.store.root
    runner = CliRunner()
    result = runner.invoke(refine, ["--store", url, "--gda", "--gda-bank", str(bank_url), "-q"])
    assert result.exit_code == 0, result.output
    got = zarr.open_group(url, mode="r")["labels/round_001"]
    assert got.attrs["bank_store"] == str(bank_url)
    score = dense_store["bank/score"][:]
    text = torch.from_numpy(dense_store["text/emb"][:])
    W, b = piaa_learn(torch.from_numpy(dense_store["bank/emb"][:][np.isfinite(score)].astype(np.float32)), text)
    cls = torch.from_numpy(np.stack([reference.embed(reference.open(p)) for p in paths(val)]))
    want = piaa_test(cls, torch.from_numpy(val["emb/patches"][:].astype(np.float32)), text, W, b).numpy()
    close(got[:], want, "labels/round_001")
    zarr.open_group(url, mode="r+")["text/emb"][0, 0] += 0.01  # as another prompt or model would make them
    one_line_error(runner.invoke(refine, ["--store", url, "--gda", "--gda-bank", str(bank_url)]), "class embeddings")
    one_line_error(runner.invoke(refine, ["--store", str(bank_url), "--gda", "--gda-bank", url]), "--keep-patches")


def one_line_error(result, needle):
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and needle in lines[0], result.output


def test_bad_inputs_are_one_line(voc_root, vit, dense_store, tmp_path):
    runner = CliRunner()
    base = [voc_root, "--out", str(tmp_path / "x.zarr"), "--pretrained", "none", "--gpus", "cpu", "-q"]
    one_line_error(runner.invoke(extract, [*base, "--model", "cdul-tiny-rn", "--local", "dense"]), "ViT")
    one_line_error(runner.invoke(extract, [*base, "--model", vit[0], "--keep-patches", "4"]), "--local dense")
    one_line_error(
        runner.invoke(extract, [*base, "--model", vit[0], "--local", "dense", "--keep-patches", "0"]), "--keep-patches"
    )
    one_line_error(runner.invoke(extract, [*base, "--model", vit[0], "--local", "dense", "--snippet", "2"]), "tiles")
    one_line_error(
        runner.invoke(extract, [*base, "--model", vit[0], "--local", "dense", "--dense-size", "100000"]),
        "--dense-size 100000 makes 6250 x 6250 patches a pass; at most 16384 (--dense-size 2048",
    )
    one_line_error(runner.invoke(extract, [*base, "--model", vit[0], "--snippet", "65"]), "1<=x<=64")
    one_line_error(runner.invoke(extract, [*base, "--model", vit[0], "--tile-px", "8", "--max-tiles", "4097"]), "4096")
    url = str(tmp_path / "plain.zarr")
    run_extract(voc_root, url, vit, "--local", "dense", "--limit", "4")
    one_line_error(runner.invoke(refine, ["--store", url, "--gda", "-q"]), "--keep-patch")
