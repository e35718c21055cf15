"""A MobileNet v1 with trained weights, made here in minutes: the model the int8 benchmark checks.

Random weights show no quantization damage, and no pretrained ImageNet weights can be downloaded at
run time, so this trains one (seeded) on a task built from the real photographs that scikit-learn
and scikit-image ship in their wheels: the class of a crop is the photo and the half (left or right)
it was cut from.  Crops are random in place, size, aspect and mirroring, so the model learns
textures and shapes of real pictures, with the low margins between classes that make int8 change
answers.  Everything is cached under the bench work folder:

    photo-mobilenet/model.pb + model.yaml   frozen fp32 graph and its card (mean/std 127.5, MobileNet style)
    photo-mobilenet/calib/                  300 JPEG crops for calibration
    photo-mobilenet/check/                  1,000 other crops for quantize's --check
    photo-mobilenet/test/                   1,000 JPEG crops never used for calibration, the check or training

``python -m benchmarks.photomodel [--workdir DIR]`` builds it (about 3-6 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

SIZE = 128
ALPHA = 0.5
TRAIN_CROPS = 4000
EPOCHS = 8
CALIB, CHECK, TEST = 300, 1000, 1000
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle_left", "page", "retina",
                  "rocket", "text", "microaneurysms", "clock")


@dataclass(frozen=True)
class PhotoModel:
    folder: str
    model: str
    calib: str
    check: str
    test: str
    classes: int
    photos: list
    train_accuracy: float
    test_accuracy: float
    train_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 array) of every photograph the two packages ship offline."""
    from sklearn.datasets import load_sample_images
    out = []
    ds = load_sample_images()
    for name, img in zip(ds.filenames, ds.images):
        out.append((os.path.splitext(os.path.basename(name))[0], np.asarray(img, np.uint8)))
    import skimage.data as sd
    for name in SKIMAGE_PHOTOS:
        fn = getattr(sd, name, None)
        if fn is None:
            continue
        try:
            a = np.asarray(fn())
        except Exception:  # a photo this scikit-image version would have to download: skip it
            continue
        if a.dtype != np.uint8:
            a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        out.append((name, a[..., :3]))
    return out


def regions(pics: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    """Two classes per photo: its left and its right half."""
    out = []
    for _, a in pics:
        w = a.shape[1] // 2
        out += [a[:, :w], a[:, w:]]
    return out


def crop(rng: np.random.Generator, a: np.ndarray) -> Image.Image:
    """A random crop (18-60 % of the short side, aspect 3:4-4:3), resized to SIZE, mirrored half the time."""
    h, w = a.shape[:2]
    side = rng.uniform(0.18, 0.6) * min(h, w)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch, cw = int(min(h, side / np.sqrt(aspect))), int(min(w, side * np.sqrt(aspect)))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    im = Image.fromarray(a[y:y + ch, x:x + cw]).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else im


def write_set(folder: str, regs: list[np.ndarray], n: int, seed: int) -> list[int]:
    """``n`` JPEG crops (quality 90) in ``folder``, classes in turn; returns their classes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = []
    for i in range(n):
        c = i % len(regs)
        crop(rng, regs[c]).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
        truth.append(c)
    with open(os.path.join(folder, "truth.csv"), "w") as fh:
        fh.write("path,class_id\n" + "".join(f"{i:05d}.jpg,{c}\n" for i, c in enumerate(truth)))
    return truth


def _decoded(folder: str, n: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(os.path.join(folder, f"{i:05d}.jpg")).convert("RGB")) for i in range(n)])


def train(regs: list[np.ndarray], seed: int = 0):
    """MobileNet v1 (alpha 0.5, 128x128), from scratch, Adam; returns (model, train accuracy, seconds)."""
    from compss_infer.model.session import import_tf
    tf = import_tf(keras=True)
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed + 1)
    n = TRAIN_CROPS
    x = np.stack([np.asarray(crop(rng, regs[i % len(regs)])) for i in range(n)])
    y = np.arange(n) % len(regs)
    k = tf.keras
    inp = k.layers.Input((SIZE, SIZE, 3))
    net = k.applications.MobileNet(input_shape=(SIZE, SIZE, 3), alpha=ALPHA, weights=None, classes=len(regs),
                                   dropout=0.1)
    for layer in net.layers:  # moving statistics that keep up with a short training (default 0.99 lags)
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = 0.9
    model = k.Model(inp, net(inp))
    model.compile(optimizer=k.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xf = x.astype(np.float32) / 127.5 - 1.0
    started = time.perf_counter()
    hist = model.fit(xf, y, batch_size=64, epochs=EPOCHS, shuffle=True, verbose=2)
    # The moving statistics trail the last epochs' weights; with the weights now fixed, forward passes in
    # training mode (no weight update) bring them to this model's own statistics.
    for s in range(0, min(len(xf), 64 * 40), 64):
        model(xf[s:s + 64], training=True)
    return model, float(hist.history["accuracy"][-1]), time.perf_counter() - started


def build(work: str) -> PhotoModel:
    """Build (or reuse) the trained model and its image sets under ``work``."""
    folder = os.path.join(work, "photo-mobilenet")
    stamp = os.path.join(folder, "ready.json")
    if os.path.exists(stamp):
        return PhotoModel(**json.load(open(stamp)))
    os.makedirs(folder, exist_ok=True)
    pics = photos()
    regs = regions(pics)
    calib, check, test = (os.path.join(folder, d) for d in ("calib", "check", "test"))
    write_set(calib, regs, CALIB, seed=101)
    write_set(check, regs, CHECK, seed=303)
    truth = write_set(test, regs, TEST, seed=202)
    model, train_acc, train_s = train(regs)
    from compss_infer.model.freeze import freeze_function, write_graph_def
    from compss_infer.model.session import import_tf
    tf = import_tf()
    gd = freeze_function(lambda x: model(x, training=False),  # x normalized by the card: (p - 127.5) / 127.5
                         tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="images"))
    path = os.path.join(folder, "model.pb")
    write_graph_def(gd, path)
    import yaml
    with open(os.path.join(folder, "model.yaml"), "w") as fh:
        yaml.safe_dump({"model": {"input": "images:0", "output": "probs:0"},
                        "preprocess": {"size": [SIZE, SIZE], "mode": "RGB", "mean": 127.5, "std": 127.5}}, fh)
    xt = _decoded(test, TEST).astype(np.float32) / 127.5 - 1.0
    test_acc = float(np.mean(model.predict(xt, batch_size=64, verbose=0).argmax(1) == np.asarray(truth)))
    pm = PhotoModel(folder=folder, model=path, calib=calib, check=check, test=test, classes=len(regs),
                    photos=[n for n, _ in pics], train_accuracy=round(train_acc, 4),
                    test_accuracy=round(test_acc, 4), train_s=round(train_s, 1))
    with open(stamp, "w") as fh:
        json.dump(pm.to_dict(), fh, indent=1)
    return pm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "compss-infer-bench"))
    a = ap.parse_args()
    pm = build(a.workdir)
    print(json.dumps(pm.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
