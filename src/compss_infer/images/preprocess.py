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


def _crop_box(w: int, h: int, fraction: float) -> tuple[int, int, int, int]:
    """The central crop of a w x h image: (left, top, right, bottom), whole pixels."""
    if fraction >= 1.0:
        return 0, 0, w, h
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def _central_crop(im: Image.Image, fraction: float) -> Image.Image:
    if fraction >= 1.0:
        return im
    return im.crop(_crop_box(*im.size, fraction))


# How many times the model's size (after the crop) a JPEG must still be when libjpeg decodes it at
# 1/2, 1/4 or 1/8 (DCT scaling), per preprocess.decode; None: never scaled.  safe keeps 4x: measured on
# W3L (3000x2000 photos) with a trained MobileNet, 4x agreed with a full decode on 398/400 images, 2x
# on 393/400 (docs/benchmarks.md).  fast goes down to the model's size.
SAFE_MARGIN = 4.0
_KEEP = {"safe": SAFE_MARGIN, "fast": 1.0, "full": None}
# Pillow's reducing_gap: an integer box reduce inside the resize, down to this margin.  Only fast uses
# it: on the same images a reduce to 2x alone (no DCT scaling) changed 6 answers in 400.
_GAP = {"safe": None, "fast": 1.0, "full": None}
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose turns them


def _orientation(im: Image.Image, spec: PreprocessSpec) -> int:
    """The EXIF orientation decode will apply, read from the header before decoding: 1 when none,
    0 when the block cannot be read (then exif_transpose runs as always and gives the error row)."""
    if not spec.exif_transpose or "exif" not in im.info:
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))  # the same lookup ImageOps.exif_transpose makes
    except Exception:
        return 0
    return value if value in _ORIENT else 1


def _stored_box(box: tuple[int, int, int, int], w: int, h: int, orientation: int) -> tuple[int, ...]:
    """A box of the displayed (oriented, w x h) image, in the file's stored pixel coordinates."""
    def point(x: int, y: int) -> tuple[int, int]:
        return {1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y), 5: (y, x), 6: (y, w - x),
                7: (h - y, w - x), 8: (h - y, x)}[orientation]
    (x0, y0), (x1, y1) = point(box[0], box[1]), point(box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _dct_scale(im: Image.Image, spec: PreprocessSpec, geometry: Geometry, orientation: int) -> int:
    """Decode a JPEG at 1/scale (libjpeg's DCT scaling) when the crop then keeps the margin _KEEP asks.

    Only asked of the header (Image.draft must precede load); returns the scale libjpeg will use.
    """
    keep = _KEEP[spec.decode]
    if keep is None or orientation == 0 or im.format not in ("JPEG", "MPO"):
        return 1
    if spec.decode == "safe" and spec.resize == "nearest":
        return 1  # nearest picks pixels: an average of 8x8 blocks is not what it means
    w, h = im.size[::-1] if orientation in _TRANSPOSED else im.size
    left, top, right, bottom = _crop_box(w, h, spec.crop)
    for scale in (8, 4, 2):
        if (right - left) / scale >= keep * geometry.width and (bottom - top) / scale >= keep * geometry.height:
            break
    else:
        return 1
    mode = "L" if spec.decode == "fast" and spec.mode == "L" and im.mode == "RGB" else im.mode
    width = im.size[0]
    drafted = im.draft(mode, (width // scale, im.size[1] // scale))  # libjpeg takes this very scale
    return round(width / drafted[1][2]) if drafted else 1


def decode(path: str | bytes, spec: PreprocessSpec, geometry: Geometry) -> np.ndarray:
    """Decode, orient, convert, crop and resize one image (a file, or a tar member's bytes): (H, W, C) uint8.

    ``preprocess.decode`` safe/fast shrinks large JPEGs on the way (libjpeg's DCT scaling; fast also
    Pillow's integer reduce inside the resize); the region cropped, the orientation and every check stay.
    """
    fh = io.BytesIO(path) if isinstance(path, bytes) else open_regular(path)
    try:
        im = _open_image(fh, spec.max_pixels)
        if getattr(im, "is_animated", False):
            im.seek(0)
        full_size = im.size
        orientation = _orientation(im, spec)
        scale = _dct_scale(im, spec, geometry, orientation)
        im.load()
        size, gap = (geometry.width, geometry.height), _GAP[spec.decode]
        if scale > 1:  # crop and resize the same region of the scaled image, then turn the small result
            w, h = full_size[::-1] if orientation in _TRANSPOSED else full_size
            box = _stored_box(_crop_box(w, h, spec.crop), w, h, orientation)
            im = _to_mode(im, spec.mode)
            im = im.resize(size[::-1] if orientation in _TRANSPOSED else size, _RESAMPLE[spec.resize],
                           box=tuple(v / scale for v in box), reducing_gap=gap)
            if orientation != 1:
                im = im.transpose(_ORIENT[orientation])
        else:
            if spec.exif_transpose and (im.format == "TIFF" or ("exif" in im.info and orientation != 1)):
                im = ImageOps.exif_transpose(im)  # only when it turns the image: it copies it
            im = _to_mode(im, spec.mode)
            im = _central_crop(im, spec.crop)
            if im.size != size:
                im = im.resize(size, _RESAMPLE[spec.resize], reducing_gap=gap)
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
