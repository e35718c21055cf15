"""The check ``quantize`` runs before writing: top-1 agreement with fp32 on images never calibrated on.

Why it is built this way: a handful of held-out photos can all agree by luck while the model changes
one answer in seven on other crops of the same photos (issue 17).  So:
- the check images are never calibrated on (``--check DIR``, else every 5th calibration image);
- with fewer than ``CHECK_TARGET`` of them, augmented views of each (a random crop, rescale and
  mirror, written to a file and decoded exactly as ``run`` decodes) fill the set up, at most
  ``MAX_VIEWS`` per image, and every figure says so;
- the verdict uses the 95 % Wilson lower bound of the agreement, not the agreement itself, and a set
  too small to show ``--min-agreement`` even if every image agreed is refused before any work.
Views of one photo are not independent samples, so the bound is optimistic when views dominate;
that is why their number is capped per image and printed beside the held-out count.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..core.errors import CompssInferError, ConfigError, InputError
from ..core.yamlfile import load_yaml
from ..images.preprocess import ALLOWED_FORMATS, Geometry, ImageError, decode, normalize, open_regular

CHECK_TARGET = 300  # below this many never-calibrated images, augmented views fill the check up to it
MAX_VIEWS = 20  # views per held-out image, at most
Z95 = 1.959964  # two-sided 95 %
BATCH = 32
VIEW_SEED = 17


class AgreementTooLow(CompssInferError):
    """The int8 model disagrees with fp32 too often: nothing written (exit 1, with the figures)."""

    exit_code = 1
    kind = "AgreementTooLow"


class CheckTooSmall(CompssInferError):
    """The check set cannot show --min-agreement even if every image agreed: refused before any work."""

    kind = "CheckTooSmall"


def wilson_lower(agreeing: int, n: int, z: float = Z95) -> float:
    """The Wilson score interval's lower end: a 95 % lower confidence bound on a proportion."""
    if n <= 0:
        return 0.0
    p = agreeing / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


def images_needed(min_agreement: float) -> int:
    """The fewest check images whose bound can reach ``min_agreement`` when every one agrees."""
    if min_agreement <= 0:
        return 1
    if min_agreement >= 1:
        return 10 ** 9
    n = 1
    while wilson_lower(n, n) < min_agreement:
        n = n * 2 if wilson_lower(n * 2, n * 2) < min_agreement else n + 1
    return n


def views_per_image(held_out: int) -> int:
    """Augmented views of each held-out image: none from CHECK_TARGET images on."""
    if held_out <= 0 or held_out >= CHECK_TARGET:
        return 0
    return min(MAX_VIEWS, math.ceil((CHECK_TARGET - held_out) / held_out))


def refuse_if_too_small(held_out: int, min_agreement: float, source: str) -> None:
    """CheckTooSmall (exit 2) when even full agreement could not show ``min_agreement``."""
    n = held_out * (1 + views_per_image(held_out))
    if min_agreement <= 0 or wilson_lower(n, n) >= min_agreement:
        return
    need = images_needed(min_agreement)
    real = math.ceil(need / (1 + MAX_VIEWS))
    raise CheckTooSmall(
        f"the check set is too small to show --min-agreement {min_agreement:g}: {held_out} {source} "
        f"(+{n - held_out} augmented views) can show a 95% lower bound of at most {wilson_lower(n, n):.4f} even "
        f"if every one agrees; give --check DIR with at least {real} images never used for calibration "
        f"({need} or more for a check without augmented views), or more calibration images")


@dataclass
class Verification:
    """How an int8 model compares with the fp32 graph on the check set."""

    images: int  # check images behind the figures: held-out + views
    agreeing: int
    agreement: float  # top-1 agreement, 0..1
    lower_bound: float  # 95 % Wilson lower bound of the agreement
    held_out: int  # distinct images never calibrated on
    views: int  # augmented views among ``images``
    max_score_diff: float | None  # largest |fp32 - int8| over all scores (None for class-id outputs)
    source: str  # "--check DIR" or "held-out calibration images"
    skipped: int = 0  # check images that failed to decode
    ties: int = 0  # images whose int8 top score is shared by two or more classes

    def sample(self) -> str:
        what = f"images of {self.source}" if self.source.startswith("--check") else self.source
        if not self.views:
            return f"{self.agreeing}/{self.images} {what}"
        return f"{self.agreeing}/{self.images} images: {self.held_out} {what} + {self.views} augmented views of them"

    def line(self) -> str:
        diff = "" if self.max_score_diff is None else f", largest score difference {self.max_score_diff:.4f}"
        ties = f", {self.ties} tied top scores" if self.ties else ""
        return (f"top-1 agreement {self.agreement:.4f} ({self.sample()}), 95% lower bound "
                f"{self.lower_bound:.4f}{diff}{ties}")

    def figures(self) -> dict[str, Any]:
        """The card's numbers."""
        return {"top1_agreement": round(self.agreement, 4), "lower_bound_95": round(self.lower_bound, 4),
                "agreeing": self.agreeing, "check_images": self.images, "held_out_images": self.held_out,
                "augmented_views": self.views, "tied_top_scores": self.ties}


def _view(src: str, rng: np.random.Generator, out_base: str) -> str:
    """One augmented view of ``src``: crop (40-100 % of each side), rescale (50-100 %), mirror half the time.

    Written as JPEG (quality 95) when the source is a JPEG, else PNG, so ``decode`` meets it as ``run``
    meets real files.
    """
    fh = open_regular(src)
    try:
        im = Image.open(fh, formats=ALLOWED_FORMATS)
        fmt = im.format
        im.load()
    finally:
        fh.close()
    im = ImageOps.exif_transpose(im) if "exif" in im.info else im
    if im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    w, h = im.size
    cw, ch = max(1, round(w * rng.uniform(0.4, 1.0))), max(1, round(h * rng.uniform(0.4, 1.0)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((x, y, x + cw, y + ch))
    s = rng.uniform(0.5, 1.0)
    im = im.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if fmt in ("JPEG", "MPO") and im.mode != "RGBA":
        path = out_base + ".jpg"
        im.save(path, quality=95)
    else:
        path = out_base + ".png"
        im.save(path)
    return path


class CheckSet:
    """Decoded check pixels and the fp32 graph's answers on them, measured once for every candidate."""

    def __init__(self, fp32: Any, cfg: Any, paths: list[str], source: str, progress: Any = None):
        say = progress or (lambda _m: None)
        info = fp32.info
        self.cfg = cfg
        self.source = source
        self.geometry = Geometry(info.height, info.width, info.channels)
        self.output_kind = info.output_kind
        pixels, good, skipped = self._decode(paths)
        self.skipped = skipped
        self.held_out = len(pixels)
        if not pixels:
            raise InputError("none of the check images could be decoded")
        per = views_per_image(self.held_out)
        if per:
            say(f"{self.held_out} never-calibrated images: adding {per} augmented views of each "
                f"(crops, rescales, mirrors; decoded as run decodes)")
            rng = np.random.default_rng(VIEW_SEED)
            with tempfile.TemporaryDirectory(prefix="compss-infer-views-") as tmp:
                views = []
                for j, src in enumerate(good):
                    for v in range(per):
                        try:
                            views.append(decode(_view(src, rng, os.path.join(tmp, f"{j}-{v}")), cfg.preprocess,
                                                self.geometry))
                        except (ImageError, OSError, ValueError):
                            continue
                pixels += views
            self.views = len(views)
        else:
            self.views = 0
        self.pixels = np.stack(pixels)
        self.reference = self.outputs(fp32)

    def _decode(self, paths: list[str]) -> tuple[list[np.ndarray], list[str], int]:
        arrays, good, bad = [], [], 0
        for p in paths:
            try:
                arrays.append(decode(p, self.cfg.preprocess, self.geometry))
                good.append(p)
            except ImageError:
                bad += 1
        return arrays, good, bad

    def __len__(self) -> int:
        return len(self.pixels)

    def outputs(self, predictor: Any, limit: int | None = None) -> np.ndarray:
        """(n, k) outputs of ``predictor`` on the check pixels, normalized as ``run`` does for it."""
        n = len(self.pixels) if limit is None else min(limit, len(self.pixels))
        outs = []
        for s in range(0, n, BATCH):
            x = normalize(self.pixels[s:min(n, s + BATCH)], self.cfg.preprocess, predictor.input_dtype)
            outs.append(np.asarray(predictor.infer(x)).reshape(len(x), -1))
        return np.concatenate(outs)

    def measure(self, predictor: Any) -> Verification:
        """Top-1 agreement of ``predictor`` with the fp32 answers, with its bound."""
        a, b = self.reference, self.outputs(predictor)
        ties = 0
        if self.output_kind == "class_id":
            ids_a, ids_b, diff = a[:, 0], b[:, 0], None
        else:
            ids_a, ids_b = a.argmax(1), b.argmax(1)
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            ties = int(np.sum((b == b.max(1, keepdims=True)).sum(1) > 1))
        agreeing = int(np.sum(ids_a == ids_b))
        n = len(a)
        return Verification(images=n, agreeing=agreeing, agreement=agreeing / n,
                            lower_bound=wilson_lower(agreeing, n), held_out=self.held_out, views=self.views,
                            max_score_diff=diff, source=self.source, skipped=self.skipped, ties=ties)


def card_check(card: str | None) -> dict[str, Any] | None:
    """The check figures a ``quantize`` card records (None for any other card): for the run summary and inspect."""
    if not card or not os.path.isfile(card):
        return None
    try:
        data = load_yaml(card, "model card")  # with the reader's limits: a card is someone else's data
    except ConfigError:
        return None
    ver = data.get("verification") if isinstance(data, dict) else None
    if not isinstance(ver, dict) or "top1_agreement" not in ver:
        return None
    quant = data.get("quantization") if isinstance(data.get("quantization"), dict) else {}
    keys = ("top1_agreement", "lower_bound_95", "check_images", "held_out_images", "augmented_views", "source",
            "full_int8")
    out: dict[str, Any] = {k: ver[k] for k in keys if k in ver}
    out["float_ops"] = list(quant.get("float_ops") or [])
    return out


def card_check_line(d: dict[str, Any]) -> str:
    """``top-1 agreement 0.9733 with fp32, 95% lower bound 0.9500, on 300 images (...)`` from ``card_check``."""
    bound = f", 95% lower bound {d['lower_bound_95']:.4f}" if d.get("lower_bound_95") is not None else ""
    what = f"{d.get('check_images')} images"
    if d.get("augmented_views"):
        what += f": {d.get('held_out_images')} never calibrated on + {d['augmented_views']} augmented views"
    kept = f"; {len(d['float_ops'])} ops kept in float" if d.get("float_ops") else ""
    return f"top-1 agreement {d['top1_agreement']:.4f} with fp32{bound}, on {what}{kept}"
