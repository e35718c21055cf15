#!/usr/bin/env python3
"""Train the demo digit classifier and write everything the demo needs. Offline and deterministic.

Data: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes; shipped inside the
package, no download).  Each digit is rendered as a 28x28 grayscale PNG; a stratified, seeded 75/25
split gives the training set and the held-out test set that ``images/digits/`` ships.

Writes:
  models/digits_cnn.pb            frozen CNN, input images:0 [N,28,28,1] float (pixel/255), output probs:0 [N,10]
  models/digits_cnn.yaml          its model card (tensor names, preprocessing, accuracy)
  models/digits_cnn_path.pb       the same weights behind an image-path input (image_path:0, decoding in the graph)
  models/digits_cnn_path.yaml     its model card
  models/digits_cnn_int8.tflite   its int8 quantization (compss-infer quantize: calibrated on 300 training
                                  images, checked on the 450 held-out ones) and its card digits_cnn_int8.yaml
  models/digits.labels.txt        class names, line i = class i
  images/digits/<class>/NNNN.png  the held-out test images
  images/digits/truth.csv         path,class_id for them

Usage: python scripts/train_demo_model.py [--root DIR] [--epochs N]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys

import numpy as np
import yaml
from PIL import Image

SEED = 0
SIZE = 28


def render(digit_8x8: np.ndarray) -> np.ndarray:
    """sklearn digit (0..16 floats, 8x8) -> 28x28 uint8, bilinear upscaling (what the PNGs hold)."""
    small = Image.fromarray(np.clip(np.rint(digit_8x8 * 255.0 / 16.0), 0, 255).astype(np.uint8), "L")
    return np.asarray(small.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.uint8)


def build_model(tf):
    k = tf.keras
    return k.Sequential([
        k.layers.Input((SIZE, SIZE, 1)),
        k.layers.Conv2D(16, 3, activation="relu"),
        k.layers.MaxPooling2D(),
        k.layers.Conv2D(32, 3, activation="relu"),
        k.layers.MaxPooling2D(),
        k.layers.Flatten(),
        k.layers.Dropout(0.25),
        k.layers.Dense(64, activation="relu"),
        k.layers.Dense(10, activation="softmax"),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="project root (models/ and images/ are written there)")
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    sys.path.insert(0, os.path.join(args.root, "src"))
    from compss_infer.model.freeze import freeze_function, write_graph_def
    from compss_infer.model.session import import_tf

    tf = import_tf(keras=True)
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    digits = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(digits.target)), test_size=0.25,
                                           random_state=SEED, stratify=digits.target)
    images = np.stack([render(d) for d in digits.images])[..., None]
    x_train = images[idx_train].astype(np.float32) / 255.0
    y_train = digits.target[idx_train]
    x_test = images[idx_test].astype(np.float32) / 255.0
    y_test = digits.target[idx_test]

    model = build_model(tf)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0, shuffle=True)
    keras_acc = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test))

    models_dir = os.path.join(args.root, "models")
    os.makedirs(models_dir, exist_ok=True)
    labels = [str(i) for i in range(10)]
    with open(os.path.join(models_dir, "digits.labels.txt"), "w") as fh:
        fh.write("\n".join(labels) + "\n")

    gd = freeze_function(lambda x: model(x, training=False),
                         tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32, name="images"))
    size_pb = write_graph_def(gd, os.path.join(models_dir, "digits_cnn.pb"))

    def from_path(p):
        img = tf.io.decode_image(tf.io.read_file(p), channels=1, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32), [SIZE, SIZE], method="bilinear", antialias=True)
        return tf.squeeze(model(tf.expand_dims(img / 255.0, 0), training=False), 0)

    gd_path = freeze_function(from_path, tf.TensorSpec([], tf.string, name="image_path"))
    size_path = write_graph_def(gd_path, os.path.join(models_dir, "digits_cnn_path.pb"))

    # Held-out images + ground truth.
    img_dir = os.path.join(args.root, "images", "digits")
    if os.path.isdir(img_dir):
        shutil.rmtree(img_dir)
    truth_rows = []
    for i in idx_test:
        rel = f"{digits.target[i]}/{i:04d}.png"
        path = os.path.join(img_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(images[i, :, :, 0], "L").save(path, optimize=True)
        truth_rows.append((rel, int(digits.target[i])))
    truth_rows.sort()
    with open(os.path.join(img_dir, "truth.csv"), "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "class_id"])
        w.writerows(truth_rows)

    # Accuracy of the frozen graph itself, checked here before anything is published.
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        probs = sess.run("probs:0", {"images:0": x_test})
    frozen_acc = float(np.mean(probs.argmax(1) == y_test))

    common = {
        "labels": "digits.labels.txt",
        "dataset": "scikit-learn load_digits, 8x8 rendered to 28x28, stratified 75/25 split, seed 0",
        "test_images": len(idx_test),
        "test_accuracy": round(frozen_acc, 4),
        "trained_with": {"tensorflow": tf.__version__, "epochs": args.epochs},
    }
    cards = {
        "digits_cnn.yaml": {
            "name": "digits-cnn",
            "description": "Small CNN (2 conv + pool, dense 64) on handwritten digits; input pixel/255.",
            "model": {"input": "images:0", "output": "probs:0", "labels": "digits.labels.txt"},
            "preprocess": {"size": [SIZE, SIZE], "mode": "L", "mean": 0.0, "std": 255.0},
            "tensors": {"images:0": "float32 [N,28,28,1]", "probs:0": "float32 [N,10]"},
            "bytes": size_pb,
            **common,
        },
        "digits_cnn_path.yaml": {
            "name": "digits-cnn-path",
            "description": "The same CNN behind a scalar image-path input; decoding and scaling in the graph.",
            "model": {"input": "image_path:0", "output": "probs:0", "labels": "digits.labels.txt"},
            "tensors": {"image_path:0": "string []", "probs:0": "float32 [10]"},
            "bytes": size_path,
            **common,
        },
    }
    for name, card in cards.items():
        card.pop("labels")
        with open(os.path.join(models_dir, name), "w") as fh:
            fh.write("# Model card written by scripts/train_demo_model.py\n")
            yaml.safe_dump(card, fh, sort_keys=False)

    int8 = quantize_demo(args.root, images[idx_train], models_dir, img_dir)

    print(f"keras test accuracy {keras_acc:.4f}; frozen graph {frozen_acc:.4f}; "
          f"{len(idx_train)} train / {len(idx_test)} test images; "
          f"digits_cnn.pb {size_pb} bytes, digits_cnn_path.pb {size_path} bytes")
    print(f"int8: digits_cnn_int8.tflite {int8.output_bytes} bytes; {int8.verification.line()}")
    return 0 if frozen_acc >= 0.95 else 1


def quantize_demo(root: str, train_images: np.ndarray, models_dir: str, test_dir: str):
    """``compss-infer quantize`` on the frozen CNN: calibrated on training images written as PNGs
    (decoded exactly as run decodes), checked on the held-out set; deterministic, so rebuilds match."""
    import tempfile
    from compss_infer.run.config import build_config
    from compss_infer.model.quantize import quantize_model
    with tempfile.TemporaryDirectory() as calib:
        for i, arr in enumerate(train_images):
            Image.fromarray(arr[:, :, 0], "L").save(os.path.join(calib, f"{i:04d}.png"))
        cfg = build_config(None, {"model": {"path": os.path.join(models_dir, "digits_cnn.pb")},
                                  "run": {"images": calib}})
        return quantize_model(cfg, os.path.join(models_dir, "digits_cnn_int8.tflite"), samples=300,
                              min_agreement=0.99, check_dir=test_dir, overwrite=True)


if __name__ == "__main__":
    sys.exit(main())
