"""The benchmark workloads, built on the fly (cached in the work folder between runs).

W1: 20,000 grayscale 28x28 PNGs and a small MNIST-style CNN (2 conv + pool, dense 128, 10 classes).
W2: 2,000 RGB 224x224 JPEGs and MobileNetV2 (tf.keras.applications, weights=None, frozen).
W3: 2,000 JPEGs of about 500x375 (ImageNet-like) and W3L: 400 of about 3000x2000 (camera-like), cut
    from the real photographs scikit-learn and scikit-image ship (random crops, rescales, grain, JPEG
    qualities and chroma subsampling, a quarter portrait, W3L's portraits stored turned with an EXIF
    orientation as cameras do), for MobileNet v1 at 224x224 (weights=None, frozen).
Weights are random (seeded): throughput does not depend on them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Workload:
    name: str
    images: str  # folder
    count: int
    model: str  # frozen .pb (a model card sits beside it)
    height: int
    width: int
    mode: str  # L | RGB
    input_name: str = "images:0"
    output_name: str = "probs:0"
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


SPECS = {
    "W1": dict(count=20_000, size=28, mode="L", ext="png", model="cnn",
               description="20,000 grayscale 28x28 PNGs, MNIST-style CNN (2 conv + pool, dense 128)"),
    "W2": dict(count=2_000, size=224, mode="RGB", ext="jpg", model="mobilenet_v2",
               description="2,000 RGB 224x224 JPEGs, MobileNetV2 (weights=None, frozen)"),
    "W3": dict(count=2_000, size=224, mode="RGB", ext="jpg", model="mobilenet_v1", photo=(500, 375),
               description="2,000 JPEGs of 500x375 cut from real photos, MobileNet v1 224 (weights=None, frozen)"),
    "W3L": dict(count=400, size=224, mode="RGB", ext="jpg", model="mobilenet_v1", photo=(3000, 2000),
                description="400 JPEGs of 3000x2000 cut from real photos, MobileNet v1 224 (weights=None, frozen)"),
}
# The colour photographs the packages ship in their wheels (no download).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")


def _image(rng: np.random.Generator, size: int, mode: str) -> Image.Image:
    """Smooth shapes plus noise: compresses and decodes like real pictures, not like flat fills."""
    y, x = np.mgrid[0:size, 0:size] / size
    chans = 1 if mode == "L" else 3
    a = np.empty((size, size, chans), np.float32)
    for c in range(chans):
        fx, fy, ph = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.28)
        a[..., c] = 127 + 90 * np.sin(fx * 6.28 * x + ph) * np.cos(fy * 6.28 * y)
    a += rng.normal(0, 18, a.shape)
    arr = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if chans == 1 else arr, mode)


def photos() -> list[np.ndarray]:
    """RGB uint8 arrays of scikit-learn's two sample photos and scikit-image's colour photos."""
    from sklearn.datasets import load_sample_images
    out = [np.asarray(a, np.uint8) for a in load_sample_images().images]
    import skimage.data
    return out + [np.asarray(getattr(skimage.data, name)(), np.uint8)[..., :3] for name in SKIMAGE_PHOTOS]


class PhotoCutter:
    """Real-size JPEGs from a few real photos: crop, rescale, grain, quality, subsampling, orientation."""

    def __init__(self, size: tuple[int, int], seed: int = 42):
        self.size, self.rng, self.pics = size, np.random.default_rng(seed), photos()
        w, h = max(size), max(size)  # one grain field, rolled per image (drawing it each time is slow)
        self.grain = self.rng.normal(0, 1, (h, w, 3)).astype(np.float32)

    def save(self, i: int, target: str) -> None:
        rng, a = self.rng, self.pics[i % len(self.pics)]
        w, h = self.size
        portrait = rng.random() < 0.25
        if portrait:
            w, h = h, w
        ph, pw = a.shape[:2]
        side = rng.uniform(0.55, 1.0)  # of the largest crop with the wanted aspect
        ch = int(side * min(ph, pw * h / w))
        cw = int(ch * w / h)
        y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        im = Image.fromarray(a[y:y + ch, x:x + cw]).resize((w, h), Image.Resampling.LANCZOS)
        arr = np.asarray(im, np.float32)
        dy, dx = rng.integers(0, self.grain.shape[0] - h + 1), rng.integers(0, self.grain.shape[1] - w + 1)
        arr += self.grain[dy:dy + h, dx:dx + w] * rng.uniform(1.0, 3.0 if max(w, h) < 1000 else 7.0)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        kw = dict(quality=int(rng.integers(70, 96)), subsampling=0 if rng.random() < 0.2 else 2)
        if portrait and max(w, h) >= 1000:  # cameras store portraits turned, with an EXIF orientation
            exif = Image.Exif()
            exif[0x0112] = 6
            im, kw["exif"] = im.transpose(Image.Transpose.ROTATE_90), exif.tobytes()
        im.save(target, **kw)


def _build_model(kind: str, size: int, channels: int, path: str) -> None:
    from compss_infer.model.freeze import freeze_function, write_graph_def
    from compss_infer.model.session import import_tf
    tf = import_tf(keras=True)
    tf.keras.utils.set_random_seed(0)
    k = tf.keras
    if kind == "cnn":
        model = k.Sequential([
            k.layers.Input((size, size, channels)),
            k.layers.Conv2D(32, 3, activation="relu"), k.layers.MaxPooling2D(),
            k.layers.Conv2D(64, 3, activation="relu"), k.layers.MaxPooling2D(),
            k.layers.Flatten(), k.layers.Dense(128, activation="relu"),
            k.layers.Dense(10, activation="softmax"),
        ])
    elif kind == "mobilenet_v1":
        model = k.applications.MobileNet(weights=None, input_shape=(size, size, channels), classes=1000)
    else:
        model = k.applications.MobileNetV2(weights=None, input_shape=(size, size, channels), classes=1000)
    gd = freeze_function(lambda x: model(x, training=False),
                         tf.TensorSpec([None, size, size, channels], tf.float32, name="images"))
    write_graph_def(gd, path)


def build(name: str, root: str, count: int | None = None) -> Workload:
    """Create (or reuse) workload ``name`` under ``root``; ``count`` overrides the image count."""
    spec = SPECS[name]
    n = count or spec["count"]
    folder = os.path.join(root, f"{name}-{n}")
    images = os.path.join(folder, "images")
    model = os.path.join(folder, f"{spec['model']}.pb")
    if "photo" in spec:  # W3 and W3L share one model (and so its int8 twin)
        model = os.path.join(root, f"{spec['model']}-{spec['size']}.pb")
    stamp = os.path.join(folder, "ready.json")
    description = spec["description"].replace(f"{spec['count']:,}", f"{n:,}")
    wl = Workload(name=name, images=images, count=n, model=model, height=spec["size"], width=spec["size"],
                  mode=spec["mode"], description=description)
    if os.path.exists(stamp):
        return wl
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(42)
    cutter = PhotoCutter(spec["photo"]) if "photo" in spec else None
    for i in range(n):
        sub = os.path.join(images, f"{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        target = os.path.join(sub, f"{i:06d}.{spec['ext']}")
        if cutter:
            cutter.save(i, target)
            continue
        im = _image(rng, spec["size"], spec["mode"])
        im.save(target, quality=90) if spec["ext"] == "jpg" else im.save(target)
    if not os.path.exists(model):
        _build_model(spec["model"], spec["size"], 1 if spec["mode"] == "L" else 3, model)
    import yaml
    card = {"model": {"input": wl.input_name, "output": wl.output_name},
            "preprocess": {"size": [spec["size"]] * 2, "mode": spec["mode"], "mean": 0.0, "std": 255.0}}
    with open(os.path.splitext(model)[0] + ".yaml", "w") as fh:
        yaml.safe_dump(card, fh)
    with open(stamp, "w") as fh:
        json.dump(wl.to_dict(), fh)
    return wl
