"""Tiny Keras models for the freeze tests, built and saved in well under a second each."""
from __future__ import annotations

import numpy as np
from PIL import Image

from compss_infer.model.session import import_tf


def tiny_classifier(h: int = 8, w: int = 8, c: int = 1, classes: int = 4, *, rescale: bool = True,
                    batchnorm: bool = False, seed: int = 0):
    """Conv + dense softmax classifier on [N, h, w, c]; with ``rescale`` it takes raw 0..255 pixels.

    The dense bias is spread so that different images get different classes from random weights.
    """
    tf = import_tf(keras=True)
    k = tf.keras
    k.utils.set_random_seed(seed)
    layers = [k.layers.Input((h, w, c))]
    if rescale:
        layers.append(k.layers.Rescaling(1.0 / 255))
    layers += [k.layers.Conv2D(4, 3, activation="relu", padding="same")]
    if batchnorm:
        layers.append(k.layers.BatchNormalization())
    layers += [k.layers.Flatten(), k.layers.Dense(classes, activation="softmax")]
    model = k.Sequential(layers)
    if batchnorm:  # non-trivial statistics, so folding them is a real change
        bn = model.layers[-3]
        rng = np.random.default_rng(seed)
        gamma, beta, mean, var = (v.numpy() for v in bn.weights)
        bn.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(size=beta.shape),
                        rng.normal(size=mean.shape), rng.uniform(0.5, 2, var.shape)])
    return model


def pixels(paths, mode: str = "L") -> np.ndarray:
    """Images as the run decodes them with preprocess mode/size matching (no resize needed): float32 NHWC."""
    arrays = [np.asarray(Image.open(p).convert(mode), np.float32) for p in paths]
    x = np.stack(arrays)
    return x[..., None] if x.ndim == 3 else x
