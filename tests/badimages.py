"""Build every kind of broken or awkward image file, on the fly, for the reliability tests.

``make_zoo(folder)`` writes one file (or file-system oddity) per case and returns the cases: what
each is, and what the run must do with it: classify it as quadrant ``q`` ("ok") or fail it with an
error row of a given kind.  The good ones are quadrant images, so their right answer is known.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tinymodels import quadrant_image

H = W = 8


@dataclass(frozen=True)
class Case:
    name: str  # file name inside the folder (or the listed path)
    expect: str  # "ok" or an error kind
    quadrant: int | None = None  # the right answer for "ok"
    why: str = ""


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=100, subsampling=0, **kw)
    return buf.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` (8-bit gray) over almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write(folder: str, name: str, data: bytes) -> None:
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(data)


def make_zoo(folder: str, model_mode: str = "L", bomb_side: int = 200) -> list[Case]:
    """Write the zoo into ``folder`` (created); returns the cases in sorted name order.

    ``bomb_side``: a ``bomb_side`` x ``bomb_side`` image that must exceed the run's
    preprocess.max_pixels (tests set it to 10,000).
    """
    os.makedirs(folder, exist_ok=True)
    cases: list[Case] = []

    def ok(name: str, q: int, why: str) -> None:
        cases.append(Case(name, "ok", q, why))

    def bad(name: str, kind: str, why: str) -> None:
        cases.append(Case(name, kind, None, why))

    # --- files that must classify (content decides, modes are converted) ---
    quadrant_image(0, H, W).save(os.path.join(folder, "clean.png"))
    ok("clean.png", 0, "a plain grayscale PNG")
    write(folder, "png_named.jpg", _png_bytes(quadrant_image(1, H, W)))
    ok("png_named.jpg", 1, "a PNG named .jpg: the content decides, not the extension")
    write(folder, "cmyk.jpg", _jpeg_bytes(quadrant_image(2, H, W, mode="RGB").convert("CMYK")))
    ok("cmyk.jpg", 2, "CMYK JPEG, converted")
    arr16 = np.asarray(quadrant_image(3, H, W), np.uint16) * 257
    Image.fromarray(arr16.astype(np.uint16)).save(os.path.join(folder, "gray16.png"))
    ok("gray16.png", 3, "16-bit grayscale PNG, scaled to 8 bits")
    pal = quadrant_image(0, H, W, mode="RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(os.path.join(folder, "palette_transparent.png"), transparency=int(np.asarray(pal)[-1, -1]))
    ok("palette_transparent.png", 0, "palette PNG with a transparent colour, flattened on black")
    rgba = quadrant_image(1, H, W, mode="RGB").convert("RGBA")
    rgba.save(os.path.join(folder, "rgba.png"))
    ok("rgba.png", 1, "RGBA input, alpha flattened")
    quadrant_image(2, H, W, mode="RGB").save(os.path.join(folder, "rgb.png"))
    ok("rgb.png", 2, f"RGB input for a {model_mode} model, converted")
    quadrant_image(3, H, W).save(os.path.join(folder, "gray.bmp"))
    ok("gray.bmp", 3, "BMP")
    quadrant_image(0, H, W).save(os.path.join(folder, "tiff.tiff"))
    ok("tiff.tiff", 0, "TIFF")
    quadrant_image(1, H, W).save(os.path.join(folder, "lossless.webp"), lossless=True)
    ok("lossless.webp", 1, "WebP")
    # EXIF orientation 3 = rotated 180: stored bright quadrant 0 (top-left) displays as 3 (bottom-right).
    exif = Image.Exif()
    exif[0x0112] = 3
    write(folder, "exif_rotated.jpg", _jpeg_bytes(quadrant_image(0, H, W), exif=exif.tobytes()))
    ok("exif_rotated.jpg", 3, "EXIF-rotated photo: displayed orientation decides")
    frames = [quadrant_image(2, H, W, mode="RGB").convert("P"), quadrant_image(1, H, W, mode="RGB").convert("P")]
    frames[0].save(os.path.join(folder, "animated.gif"), save_all=True, append_images=frames[1:], duration=50, loop=0)
    ok("animated.gif", 2, "animated GIF: the first frame")
    for name, q in (("with space.png", 3), ("quote\"s'.png", 0), ("ünï cødé ✓.png", 1), ("comma,name.png", 2)):
        quadrant_image(q, H, W).save(os.path.join(folder, name))
        ok(name, q, "awkward characters in the path")

    # --- files that must become error rows ---
    write(folder, "zero_byte.jpg", b"")
    bad("zero_byte.jpg", "EmptyFile", "zero-byte file")
    full_jpeg = _jpeg_bytes(quadrant_image(0, 64, 64))
    write(folder, "truncated.jpg", full_jpeg[: len(full_jpeg) // 2])
    bad("truncated.jpg", "DecodeError", "truncated JPEG")
    full_png = _png_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)))
    write(folder, "truncated.png", full_png[: len(full_png) // 2])
    bad("truncated.png", "DecodeError", "truncated PNG")
    write(folder, "text.jpg", b"this is a text file, not a photo\n" * 4)
    bad("text.jpg", "UnsupportedFormat", "a text file named .jpg")
    write(folder, "postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    bad("postscript.jpg", "UnsupportedFormat", "EPS named .jpg: its decoder (Ghostscript) is not on the allow-list")
    ico = io.BytesIO()
    quadrant_image(0, 16, 16).save(ico, "ICO")
    write(folder, "icon.png", ico.getvalue())
    bad("icon.png", "UnsupportedFormat", "an ICO named .png: not on the decoder allow-list")
    quadrant_image(0, bomb_side, bomb_side).save(os.path.join(folder, "bomb.png"))
    bad("bomb.png", "DecompressionBomb", "more pixels than preprocess.max_pixels")
    write(folder, "absurd_header.png", png_with_header(65535, 65535))
    bad("absurd_header.png", "DecompressionBomb", "a header claiming 65535x65535 over a few bytes")
    write(folder, "zero_width.png", png_with_header(0, 10))
    bad("zero_width.png", "DecodeError", "a header claiming zero width")
    os.mkfifo(os.path.join(folder, "fifo.png"))
    bad("fifo.png", "NotAFile", "a FIFO named like an image (opening it must not hang)")
    os.symlink("loop.jpg", os.path.join(folder, "loop.jpg"))
    bad("loop.jpg", "BadPath", "a symlink pointing at itself")
    os.symlink("nowhere.png", os.path.join(folder, "dangling.png"))
    bad("dangling.png", "NotFound", "a dangling symlink")
    return sorted(cases, key=lambda c: c.name)


def list_only_cases(folder: str) -> list[Case]:
    """Cases that exist only through a list file: a folder named like an image, a missing file."""
    os.makedirs(os.path.join(folder, "folder.jpg"), exist_ok=True)
    return [Case("folder.jpg", "NotAFile", None, "a directory named like an image"),
            Case("missing.png", "NotFound", None, "a listed file that does not exist")]
