"""--decode gpu: plain JPEGs travel undecoded to the device, which decodes them into their
reserved regions; every other file, and every file the device cannot decode, is decoded on
the host exactly as with --decode pil. On the CPU the device decoder is replaced by
torchvision's libjpeg-turbo call (PIL's pixels bit for bit), so the whole path must give the
--decode pil store exactly; the real nvJPEG path runs under ``-m gpu``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from bad_images import exif_rotated, jpeg_bytes, png_bytes
from click.testing import CliRunner
from extract_runs import extract_args
from PIL import Image

import cdul.extractor.gpu_decode as gpu_decode
import cdul.extractor.modes as modes
from cdul.cli.extract import main as extract
from cdul.data.decode import decode_image, plain_jpeg_size
from cdul.extractor.config import ExtractConfig
from cdul.extractor.packing import Encoded, ViewSpec, pack
from cdul.extractor.tiling import Tiling
from cdul.kernels.resample.tables import F_IMG
from cdul.sample import write_voc_layout

SPEC, TILING = ViewSpec(16), Tiling.grid(2)


def _photo(rng, h: int, w: int) -> Image.Image:
    """Smooth colours with noise: chroma worth upsampling."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)], -1)
    noise = rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _files() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    plain = [jpeg_bytes(_photo(rng, h, w)) for h, w in ((40, 56), (33, 20), (64, 48))]
    return {
        "plain_a": plain[0],
        "plain_b": plain[1],
        "plain_c": plain[2],
        "png": png_bytes(_photo(rng, 30, 30)),
        "rotated": exif_rotated(),
        "grey": jpeg_bytes(_photo(rng, 24, 36).convert("L")),
        "truncated": plain[2][: len(plain[2]) // 2],  # its header reads: the device is given it
    }


def _encoded(data: bytes) -> Encoded:
    size = plain_jpeg_size(data)
    assert size is not None
    return Encoded(data, *size)


def test_only_plain_jpegs_are_left_for_the_device():
    files = _files()
    plain = {name for name, data in files.items() if plain_jpeg_size(data) is not None}
    assert plain == {"plain_a", "plain_b", "plain_c", "grey", "truncated"}
    assert plain_jpeg_size(files["plain_a"]) == (40, 56)
    assert plain_jpeg_size(files["rotated"], exif=False) == (40, 60)  # nothing to rotate: plain
    assert plain_jpeg_size(files["plain_a"], max_pixels=40 * 56 - 1) is None  # refused on the host
    assert plain_jpeg_size(b"") is None and plain_jpeg_size(b"not an image") is None


def _stage() -> gpu_decode.DeviceDecode:
    return gpu_decode.DeviceDecode(lambda b: b, torch.device("cpu"), SPEC, TILING, ExtractConfig("m", "p"))


def test_files_are_packed_after_the_pixels_and_decoded_into_their_regions():
    f = _files()
    arrays = [decode_image(f[n]) for n in ("plain_a", "png", "plain_b", "grey")]
    ref = pack(0, range(5), [arrays[0], arrays[1], "a reason", arrays[2], arrays[3]], SPEC, TILING)
    png, plain_b = decode_image(f["png"]), decode_image(f["plain_b"])
    items = [_encoded(f["plain_a"]), png, "a reason", plain_b, _encoded(f["grey"])]
    batch = pack(0, range(5), items, SPEC, TILING)
    assert items == [None, None, "a reason", None, None]  # the pixels and files are taken
    # the decoded images first, then the files' regions, past the end of what travels as data
    assert batch.images[1, 0] < batch.images[3, 0] < batch.data.numel() <= batch.images[0, 0] < batch.images[4, 0]
    assert batch.full_bytes == ref.data.numel() == batch.images[4, 0] + 24 * 36 * 3
    rows, blobs = batch.encoded()
    assert rows == [0, 4] and [bytes(b.numpy()) for b in blobs] == [f["plain_a"], f["grey"]]
    assert list(batch.hw[0]) == [40, 56] and batch.n_views[0] == 5 and batch.n_ok == 4
    out = _stage()(batch)
    assert out.jpeg is None and out.data.numel() == ref.data.numel()
    for i in (0, 1, 3, 4):
        assert torch.equal(out.image(i), ref.image(i)), i
    # the same views, each reading its image where this layout put it
    views, ref_views = (b.data[: b.offsets_off].view(torch.int64).view(ref.n_view_rows, -1) for b in (out, ref))
    others = [k for k in range(views.shape[1]) if k != F_IMG]
    assert torch.equal(views[:, others], ref_views[:, others])
    image_of = {int(ref.images[i, 0]): i for i in (0, 1, 3, 4)}
    assert [int(x) for x in views[:, F_IMG]] == [int(out.images[image_of[int(x)], 0]) for x in ref_views[:, F_IMG]]


def test_a_file_no_decoder_reads_becomes_a_failed_image():
    f = _files()
    items = [_encoded(f["plain_a"]), _encoded(f["truncated"]), decode_image(f["png"]), _encoded(f["plain_b"])]
    out = _stage()(pack(3, range(10, 14), items, SPEC, TILING))
    with pytest.raises(Exception) as why:
        decode_image(f["truncated"])
    assert out.errors == ["", str(why.value), "", ""] and "truncated" in out.errors[1]
    assert out.jpeg is None and out.n_ok == 3 and out.n_views[1] == 0 and list(out.rows) == [10, 11, 12, 13]
    for i, name in ((0, "plain_a"), (2, "png"), (3, "plain_b")):
        assert np.array_equal(out.image(i).numpy(), decode_image(f[name])), name


def test_what_the_device_refuses_or_misreads_is_decoded_on_the_host(monkeypatch):
    f = _files()
    real, calls = gpu_decode.device_decode, []

    def flawed(blobs, device):  # refuses plain_b, gives plain_a another size
        calls.append(len(blobs))
        if any(bytes(b.numpy()) == f["plain_b"] for b in blobs):
            raise RuntimeError("nvjpeg: unsupported")
        return [x[:, :-1] if bytes(b.numpy()) == f["plain_a"] else x for b, x in zip(blobs, real(blobs, device))]

    monkeypatch.setattr(gpu_decode, "device_decode", flawed)
    names = ("plain_a", "plain_b", "grey")
    out = _stage()(pack(0, range(3), [_encoded(f[n]) for n in names], SPEC, TILING))
    assert calls == [3, 1, 1, 1] and out.errors == ["", "", ""] and out.jpeg is None
    for i, name in enumerate(names):
        assert np.array_equal(out.image(i).numpy(), decode_image(f[name])), name


def test_a_batch_without_files_goes_to_the_copy_stage():
    batch = pack(0, range(1), [decode_image(_files()["png"])], SPEC, TILING)
    seen = []
    stage = gpu_decode.DeviceDecode(seen.append, torch.device("cpu"), SPEC, TILING, ExtractConfig("m", "p"))
    stage(batch)
    assert seen == [batch] and batch.full_bytes == 0


def _extract_both(root, *extra, **options) -> dict:
    """The split at ``root`` extracted with --decode pil and with --decode gpu (the device's
    decoder emulated on the CPU; one decoding worker, so the files cross processes)."""
    calls: list[int] = []
    real = gpu_decode.device_decode

    def emulated(blobs, device):
        calls.append(len(blobs))
        return real(blobs, torch.device("cpu"))

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu_decode, "device_decode", emulated)
        mp.setattr(modes, "check_decode", lambda decode, device: decode)  # as if the CPU were a GPU
        for decode in ("pil", "gpu"):
            out[decode] = root / f"{decode}{'-'.join(map(str, extra))}.zarr"
            args = extract_args(root, out[decode], "--max-failures", "50%", *extra, decode=decode, **options)
            result = CliRunner().invoke(extract, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
    assert calls and sum(calls) > 4  # the files of each batch in one call, the corrupt one's alone too
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    write_voc_layout(str(root), {name: (data, []) for name, data in _files().items()})
    return root


@pytest.fixture(scope="module")
def stores(mixed):
    return mixed, _extract_both(mixed, workers=1, quiet=True)


@pytest.mark.slow
def test_an_emulated_device_decoder_gives_the_pil_store(stores):
    _, out = stores
    pil, gpu = (zarr.open_group(str(out[d]), mode="r") for d in ("pil", "gpu"))
    for name in ("sim/global", "sim/alpha", "sim/beta", "labels/round_000", "images/hw", "images/status"):
        assert np.array_equal(pil[name][:], gpu[name][:], equal_nan=name.startswith(("sim", "labels"))), name
    assert pil["images/status"].attrs["failures"] == gpu["images/status"].attrs["failures"]
    assert list(gpu["images/status"].attrs["failures"]) == ["JPEGImages/truncated.jpg"]
    assert "decode" not in pil.attrs["config"] and gpu.attrs["config"]["decode"] == "gpu"


@pytest.mark.slow
def test_dense_mode_on_device_decoded_pixels_gives_the_pil_store(mixed):
    out = _extract_both(mixed, "--local", "dense", workers=0, quiet=True, model="cdul-tiny-vit")
    pil, gpu = (zarr.open_group(str(out[d]), mode="r") for d in ("pil", "gpu"))
    assert pil.attrs["tiling"] == gpu.attrs["tiling"] and "dense" in str(pil.attrs["tiling"])
    for name in ("sim/global", "sim/alpha", "sim/beta", "images/status"):
        assert np.array_equal(pil[name][:], gpu[name][:], equal_nan=name.startswith("sim")), name


@pytest.mark.slow
def test_a_gpu_decoded_store_resumes_only_with_gpu_decoding(stores):
    root, out = stores
    args = extract_args(root, out["gpu"], "--max-failures", "50%", quiet=True)
    result = CliRunner().invoke(extract, args)
    assert result.exit_code == 1 and "another configuration (decode: gpu -> pil)" in result.output
    assert len(result.output.strip().splitlines()) == 1 + result.output.count("warning:")


def test_the_cpu_refuses_gpu_decoding_in_one_line(voc_root, tmp_path):
    args = extract_args(voc_root, tmp_path / "s.zarr", decode="gpu", quiet=True, limit=2)
    result = CliRunner().invoke(extract, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [
        "Error: Invalid value for --decode: --decode gpu needs a CUDA device (nvJPEG); "
        "this run's device is cpu: leave --decode at pil"
    ]
    assert "Traceback" not in result.output and not (tmp_path / "s.zarr").exists()


@pytest.mark.gpu
def test_nvjpeg_is_near_pil_and_extracts(tmp_path):
    files = _files()
    blobs = [torch.frombuffer(bytearray(files[n]), dtype=torch.uint8) for n in ("plain_a", "plain_b", "grey")]
    got = gpu_decode.device_decode(blobs, torch.device("cuda:0"))
    for blob, image in zip(blobs, got):
        ref = decode_image(bytes(blob.numpy()))
        diff = np.abs(image.permute(1, 2, 0).cpu().numpy().astype(np.int16) - ref.astype(np.int16))
        assert image.is_cuda and diff.max() <= 10
    write_voc_layout(str(tmp_path), {name: (data, []) for name, data in files.items()})
    options = {"decode": "gpu", "gpus": "0", "views": "exact", "compile": "none", "quiet": True}
    args = extract_args(tmp_path, tmp_path / "s.zarr", "--max-failures", "50%", **options)
    result = CliRunner().invoke(extract, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    # the truncated file: failed where nvJPEG or the host refuses it (nvJPEG may decode what it has)
    assert g.attrs["complete"] is True and g.attrs["summary"]["ok"] >= len(files) - 1
