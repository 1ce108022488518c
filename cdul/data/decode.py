"""Image decoding to 8-bit RGB, the same for every consumer (extractor, trainer, report).

Policy:
- Every PIL mode becomes RGB the way CLIP's own preprocess does it (``convert("RGB")``:
  alpha is dropped, palettes and CMYK are converted), except 16- and 32-bit integer
  images, which are scaled down to 8 bits instead of being clipped at 255.
- EXIF orientation is applied by default (what a person sees); ``exif=False`` keeps the
  stored pixel order. Global view and tiles come from the same decoded array, so they
  always agree.
- Images above ``max_pixels`` are refused before any pixel is decoded.
- Plain JPEGs are decoded by torchvision's libjpeg-turbo binding, which gives PIL's pixels
  bit for bit and is about twice as fast; every other file goes through PIL.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

_ORIENTATION = 0x0112
_STRIP_PIXELS = 1 << 22  # pixels converted at a time
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb threshold (about 0.5 GB as RGB)
_FAST_MAX_PIXELS = 1 << 24  # larger images take the strip-by-strip path, which bounds memory


class DecodeError(Exception):
    pass


def decode_image(data: bytes, *, exif: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> [H, W, 3] uint8 RGB array. Raises DecodeError with a reason."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked before decoding
            try:
                im: Image.Image = Image.open(io.BytesIO(data))
                w, h = im.size
                if w * h > max_pixels:
                    raise DecodeError(
                        f"image is {w} x {h} = {w * h} pixels, over the limit of {max_pixels} (--max-pixels)"
                    )
                fast = _jpeg_fast(im, data, exif) if w * h <= _FAST_MAX_PIXELS else None
                if fast is not None:
                    return fast
                im.load()
            finally:
                Image.MAX_IMAGE_PIXELS = previous
            if exif and im.getexif().get(_ORIENTATION, 1) != 1:  # transposing copies: only when needed
                im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except DecodeError:
        raise
    except Image.UnidentifiedImageError:  # PIL's own message names a memory address
        raise DecodeError("cannot identify the file as an image of a format PIL reads") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise DecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from None


def _jpeg_fast(im: Image.Image, data: bytes, exif: bool) -> np.ndarray | None:
    """A plain JPEG (YCbCr or grey, no Adobe colour transform, nothing to rotate) decoded by
    torchvision's libjpeg-turbo call, without PIL's buffered tile decoding: the same
    pixels, bit for bit (tests/test_decode.py), in about half the time. None where the file
    is anything else, or where that decoder objects (the PIL path then decodes or reports)."""
    if not _plain_jpeg(im, exif):
        return None
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning (a truncated file, say) means: let PIL decide
            # torchvision 0.29 announces that its decoders will move to TorchCodec; the day
            # they go, the import fails and every file takes the PIL path
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except Exception:
        return None
    if tuple(chw.shape[1:]) != (im.height, im.width):
        return None
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


def _plain_jpeg(im: Image.Image, exif: bool) -> bool:
    """A JPEG in YCbCr or grey, without Adobe's colour transform, with nothing to rotate."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L") or "adobe" in im.info:
        return False
    return not (exif and im.getexif().get(_ORIENTATION, 1) != 1)


def plain_jpeg_size(data: bytes, *, exif: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """(height, width) of a file that ``decode_image`` decodes as a plain JPEG (its fast
    path: any JPEG decoder may decode it instead, to RGB), read from the header alone; None
    for every other file, and for one whose header PIL cannot read (``decode_image`` then
    decodes it, or says why not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > min(max_pixels, _FAST_MAX_PIXELS) or not _plain_jpeg(im, exif):
                return None
    except Exception:  # PIL raises many types for broken files
        return None
    return h, w


def to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.int64)
        if im.mode == "I" and arr.max(initial=0) > 65535:
            shift = 24
        else:
            shift = 8
        gray = (np.clip(arr, 0, None) >> shift).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max(initial=0.0)
        scale = 255.0 if hi <= 1.0 else 1.0
        gray = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    # Converted and copied in strips of rows into one array: a huge image then costs its
    # decoded size plus the array (PIL's own convert + tobytes would hold up to four copies).
    # Every conversion is per pixel, so strips give the same pixels.
    w, h = im.size
    out = np.empty((h, w, 3), dtype=np.uint8)
    step = max(1, _STRIP_PIXELS // max(w, 1))
    for top in range(0, h, step):
        part = im if step >= h else im.crop((0, top, w, min(h, top + step)))
        out[top : top + part.height] = np.asarray(part if part.mode == "RGB" else part.convert("RGB"))
    return out
