"""Safe image decoding with Pillow: one file -> one HxWxC uint8 array, or an ImageError.

Every failure is turned into an :class:`ImageError` with a short kind and a one-line reason, so a
broken file becomes an error row and never stops a chunk.  Only an allow-list of decoders is used;
non-regular files (FIFOs, folders) are refused before reading, so a FIFO cannot hang a worker.
"""
from __future__ import annotations

import errno
import io
import os
import stat
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from ..core.specs import PreprocessSpec

Image.init()  # register every plugin now, so the allow-list below can name them
# Our own check (preprocess.max_pixels, default Pillow's limit) replaces Pillow's, so that a user
# may raise the limit for huge scans; Pillow's check would refuse anything over twice its default.
Image.MAX_IMAGE_PIXELS = None
ALLOWED_FORMATS = tuple(f for f in ("JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP") if f in Image.OPEN)
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageError(Exception):
    """A per-image failure: ``kind`` names the class of problem, the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def row_text(self) -> str:
        return f"{self.kind}: {' '.join(str(self).split())}"


@dataclass(frozen=True)
class Geometry:
    """What the model wants: height, width and channels (1 = L, 3 = RGB/BGR)."""

    height: int
    width: int
    channels: int


def _describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    return "is not a regular file"


def open_regular(path: str):
    """Open ``path`` for binary reading only if it is a regular, non-empty file.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError("NotFound", "no such file") from None
    except PermissionError:
        raise ImageError("PermissionDenied", "cannot open the file for reading") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("BadPath", "too many levels of symbolic links") from None
        raise ImageError("ReadError", exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("NotAFile", _describe_mode(st.st_mode))
        if st.st_size == 0:
            raise ImageError("EmptyFile", "the file is empty (0 bytes)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_TURNED = {2: "mirrored", 3: "rotated 180°", 4: "flipped upside down", 5: "transposed", 6: "rotated 90°",
           7: "transversed", 8: "rotated 270°"}  # EXIF orientations other than 1 (as stored = upright)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag from what ``Image.open`` already read (1 when there is none)."""
    if im.format != "TIFF" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: Pillow's decode() would not turn the image either
        return 1
    return value if isinstance(value, int) else 1


def check_header(path: str, max_pixels: int, upright: bool = False) -> None:
    """For graphs that decode paths themselves: a regular file whose header is within max_pixels.

    Only the header is read (Pillow opens lazily).  A file Pillow cannot identify is left to the
    graph's own decoder, which says why it fails; a decompression bomb never reaches it.  With
    ``upright`` (preprocess.exif_transpose), a file whose EXIF orientation is not 1 is refused: the
    graph's decoder ignores EXIF, so it would classify the picture turned.
    """
    fh = open_regular(path)
    try:
        try:
            im = Image.open(fh, formats=ALLOWED_FORMATS)
        except Exception:  # unidentified or unreadable header: the graph's decoder gives the reason
            return
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError("DecompressionBomb",
                             f"{w}x{h} = {w * h} pixels exceeds preprocess.max_pixels={max_pixels}")
        turn = exif_orientation(im) if upright else 1
        if turn in _TURNED:
            raise ImageError("ExifOrientation",
                             f"EXIF orientation {turn} ({_TURNED[turn]}): the graph decodes the file itself and "
                             f"ignores EXIF, so it cannot see the picture upright; use a model with an image-tensor "
                             f"input, or set preprocess.exif_transpose=false to classify it as stored")
    finally:
        fh.close()


def channel_hint(wanted: int) -> str:
    """How to make the decoder give ``wanted`` channels (for the refusal line)."""
    fix = {1: "L", 3: "RGB"}.get(wanted)
    return f"use --set preprocess.mode={fix}" if fix else f"no preprocess.mode gives {wanted} channels"


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def sniff(head: bytes) -> str | None:
    """The image format a file's first bytes claim, if any (to tell corrupt from foreign files)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to L or RGB, scaling 16-bit data and flattening transparency on black."""
    target = "L" if mode == "L" else "RGB"
    if im.mode in _SIXTEEN_BIT:
        arr = np.asarray(im, dtype=np.float32) / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        im = Image.fromarray(np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode != target:
        im = im.convert(target)
    return im


def _central_crop(im: Image.Image, fraction: float) -> Image.Image:
    if fraction >= 1.0:
        return im
    w, h = im.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch))


def decode(path: str | bytes, spec: PreprocessSpec, geometry: Geometry) -> np.ndarray:
    """Decode, orient, convert, crop and resize one image (a file, or a tar member's bytes): (H, W, C) uint8."""
    fh = io.BytesIO(path) if isinstance(path, bytes) else open_regular(path)
    try:
        im = _open_image(fh, spec.max_pixels)
        if getattr(im, "is_animated", False):
            im.seek(0)
        im.load()
        if spec.exif_transpose and (im.format == "TIFF" or "exif" in im.info):
            im = ImageOps.exif_transpose(im)  # only when there is an EXIF block: it costs per image
        im = _to_mode(im, spec.mode)
        im = _central_crop(im, spec.crop)
        if im.size != (geometry.width, geometry.height):
            im = im.resize((geometry.width, geometry.height), _RESAMPLE[spec.resize])
        arr = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("DecompressionBomb", str(exc)) from None
    except MemoryError:
        raise ImageError("DecodeError", "out of memory while decoding") from None
    except Exception as exc:  # every Pillow/codec failure is per-image data
        raise ImageError("DecodeError", f"{type(exc).__name__}: {exc}") from None
    finally:
        fh.close()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if spec.mode == "BGR":
        arr = arr[:, :, ::-1]
    if arr.shape[2] != geometry.channels:
        raise ImageError("DecodeError", f"got {arr.shape[2]} channels, the model wants {geometry.channels} "
                         f"({channel_hint(geometry.channels)})")
    return arr


def _open_image(fh, max_pixels: int) -> Image.Image:
    """Identify the file among the allowed formats and check its size from the header alone."""
    try:
        im = Image.open(fh, formats=ALLOWED_FORMATS)
    except Image.UnidentifiedImageError:
        fh.seek(0)
        looks_like = sniff(fh.read(16))
        if looks_like:
            raise ImageError("DecodeError", f"{looks_like} data is corrupt or truncated") from None
        raise ImageError("UnsupportedFormat",
                         f"not a recognised image (allowed: {' '.join(ALLOWED_FORMATS)})") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError("DecodeError", f"invalid dimensions {w}x{h}")
    if w * h > max_pixels:
        raise ImageError("DecompressionBomb", f"{w}x{h} = {w * h} pixels exceeds preprocess.max_pixels={max_pixels}")
    return im


def normalize(batch_u8: np.ndarray, spec: PreprocessSpec, dtype: np.dtype) -> np.ndarray:
    """(x - mean) / std over a whole batch at once; uint8 models get the raw pixels."""
    if np.dtype(dtype) == np.uint8:
        return batch_u8
    out = batch_u8.astype(np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if np.any(mean != 0):
        out -= mean
    if np.any(std != 1):
        out /= std
    return out.astype(dtype, copy=False)
