"""The benchmark workloads, built on the fly (cached in the work folder between runs).

W1: 20,000 grayscale 28x28 PNGs and a small MNIST-style CNN (2 conv + pool, dense 128, 10 classes).
W2: 2,000 RGB 224x224 JPEGs and MobileNetV2 (tf.keras.applications, weights=None, frozen).
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
}


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
    stamp = os.path.join(folder, "ready.json")
    description = spec["description"].replace(f"{spec['count']:,}", f"{n:,}")
    wl = Workload(name=name, images=images, count=n, model=model, height=spec["size"], width=spec["size"],
                  mode=spec["mode"], description=description)
    if os.path.exists(stamp):
        return wl
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(42)
    for i in range(n):
        sub = os.path.join(images, f"{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        im = _image(rng, spec["size"], spec["mode"])
        target = os.path.join(sub, f"{i:06d}.{spec['ext']}")
        im.save(target, quality=90) if spec["ext"] == "jpg" else im.save(target)
    _build_model(spec["model"], spec["size"], 1 if spec["mode"] == "L" else 3, model)
    import yaml
    card = {"model": {"input": wl.input_name, "output": wl.output_name},
            "preprocess": {"size": [spec["size"]] * 2, "mode": spec["mode"], "mean": 0.0, "std": 255.0}}
    with open(os.path.splitext(model)[0] + ".yaml", "w") as fh:
        yaml.safe_dump(card, fh)
    with open(stamp, "w") as fh:
        json.dump(wl.to_dict(), fh)
    return wl
