"""Keras 3 models for grayscale expression images (TensorFlow backend).

- ``compact``: a small VGG-style CNN whose first block works at half resolution (a stride-2 stem), fast on a
  2-core CPU; used by the ``smoke``/``standard`` presets and by the label-error folds.
- ``residual``: a ResNet-style network (pre-activation basic blocks, 64-128-256-512) for the ``full`` GPU
  schedule.

Input: ``(size, size, 1)`` uint8-range floats; the model rescales to [0, 1] itself, so callers feed raw pixels.
On a machine with a GPU, :func:`configure_device` switches Keras to mixed precision (the last layer stays
float32).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def configure_device(seed: int, deterministic: bool = True) -> str:
    """Seed every RNG; deterministic ops; mixed precision on a GPU. Returns "gpu" or "cpu"."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for g in gpus:
            try:
                tf.config.experimental.set_memory_growth(g, True)
            except (ValueError, RuntimeError):
                pass
        keras.mixed_precision.set_global_policy("mixed_float16")
        return "gpu"
    keras.mixed_precision.set_global_policy("float32")
    return "cpu"


def _conv_bn(x, filters, kernel=3, strides=1):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    # momentum 0.9 (not Keras' 0.99): short CPU runs have only a few hundred steps for the moving statistics
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def compact(size: int = 48, n_classes: int = 7, width: int = 32, dropout: float = 0.35):
    import keras
    from keras import layers

    inp = keras.Input((size, size, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    if size > 48:  # bigger datasets: bring them to the resolution the network was tuned for
        x = layers.Resizing(48, 48)(x)
    x = _conv_bn(x, width, 3, 2)                  # 24×24
    x = _conv_bn(x, width * 2)
    x = layers.MaxPooling2D()(x)                  # 12×12
    x = _conv_bn(x, width * 4)
    x = _conv_bn(x, width * 4)
    x = layers.MaxPooling2D()(x)                  # 6×6
    x = _conv_bn(x, width * 8)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inp, out, name="compact")


def residual(size: int = 48, n_classes: int = 7, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2),
             dropout: float = 0.4):
    import keras
    from keras import layers

    inp = keras.Input((size, size, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    if size > 96:
        x = layers.Resizing(96, 96)(x)
    x = _conv_bn(x, widths[0], 3, 1)
    for stage, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            sc = x
            y = layers.BatchNormalization()(x)
            y = layers.ReLU()(y)
            if stride != 1 or x.shape[-1] != w:
                sc = layers.Conv2D(w, 1, strides=stride, use_bias=False)(y)
            y = layers.Conv2D(w, 3, strides=stride, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            y = layers.ReLU()(y)
            y = layers.Conv2D(w, 3, padding="same", use_bias=False)(y)
            x = layers.Add()([sc, y])
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inp, out, name="residual")


def build(kind: str, size: int, n_classes: int, **kw):
    if kind == "compact":
        return compact(size, n_classes, **kw)
    if kind == "residual":
        return residual(size, n_classes, **kw)
    from fer_core.errors import InvalidInput
    raise InvalidInput(f"Unknown model '{kind}'.", "Use compact or residual.")
