"""Files that break naive image loaders, written by the tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG header claiming width x height RGB pixels (1.6 billion), with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **{"quality": 90, **kw})
    return buf.getvalue()


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def exif_rotated(width: int = 60, height: int = 40) -> bytes:
    """Stored as width x height, top half red; EXIF orientation 6 says: turn 90 degrees clockwise."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[: height // 2, :, 0] = 255
    arr[height // 2 :, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(Image.fromarray(arr), exif=exif.tobytes())


def gray16(width: int = 50, height: int = 30) -> tuple[bytes, np.ndarray]:
    values = np.linspace(0, 65535, width * height).reshape(height, width).astype(np.uint16)
    return png_bytes(Image.fromarray(values)), values


def bad_files(rng=None) -> dict[str, bytes | None]:
    """id -> file bytes (None: listed but missing). Decodable and undecodable ones mixed."""
    rng = rng or np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    good = jpeg_bytes(rgb)
    return {
        "ok_rgb": good,
        "truncated": good[: len(good) // 2],
        "zero_bytes": b"",
        "text_file": b"this is not an image\n",
        "missing": None,
        "cmyk": jpeg_bytes(rgb.convert("CMYK")),
        "gray16": gray16()[0],
        "palette": png_bytes(rgb.convert("P", palette=Image.ADAPTIVE, colors=16)),
        "rgba": png_bytes(rgb.convert("RGBA")),
        "gray": jpeg_bytes(rgb.convert("L")),
        "exif_rotated": exif_rotated(),
        "one_pixel": png_bytes(Image.new("RGB", (1, 1), (200, 10, 10))),
        "very_tall": png_bytes(Image.fromarray(rng.integers(0, 256, (100_000, 2, 3), dtype=np.uint8))),
        "bomb": bomb_png(),
        "café_狗_ÿ": good,
    }


UNDECODABLE = {"truncated", "zero_bytes", "text_file", "missing", "bomb"}
